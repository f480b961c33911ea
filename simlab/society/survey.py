"""Survey waves: sample respondents per group and turn them into few-shot tasks.

At each wave every group (community) is surveyed: agents are contacted in random order and
respond with a propensity that may depend on their traits (non-response, Groves & Couper
1998: the young, urban, less educated and men respond less), until ``support + query``
respondents are in; the first ``support`` form the support set. Features are the observed
traits a questionnaire asks (optionally with measurement noise) plus ego-network answers
("how many friends do you have", "what share of them support X"). All transforms are fixed
(traits are stored standardised, counts -> log1p, shares kept), never fitted on the data,
so a feature means the same thing in every task and wave.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
from pydantic import ConfigDict, Field
from scipy.special import expit

from simlab.schema import StrictModel
from simlab.society.population import TRAITS
from simlab.tasks.task import Cells, Task

if TYPE_CHECKING:  # pragma: no cover
    from simlab.society.view import SocietyView


class CeilingFn(Protocol):
    """An observable-ceiling estimator (``simlab.society.diagnostics.ceiling``'s
    ``CeilingEstimator``): per group, the ceiling of the query respondents and its estimation
    error."""

    def __call__(self, society: SocietyView, x_query: list[np.ndarray],
                 query_idx: list[np.ndarray], features: list[str], noise_sd: float,
                 rng: np.random.Generator) -> tuple[list[np.ndarray], list[float]]: ...

NONRESPONSE_INDEX: dict[str, float] = {"age": 0.5, "education": 0.5, "female": 0.3,
                                       "urban": -0.5, "income": 0.2, "religiosity": 0.2}
"""Weights of the response-propensity index (per stored trait unit; binary traits centred)."""
BASE_RESPONSE_LOGIT = 1.0
"""Logit of the response probability of an average person when ``nonresponse > 0``."""


class SurveyDesign(StrictModel):
    """How the society is surveyed (embedded in scenario files)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every: int = Field(1, ge=1, description="ticks between waves; wave w follows tick "
                                            "(w + 1) * every")
    waves: int = Field(20, ge=1, description="number of waves")
    support: int = Field(10, ge=1, description="max K respondents per group kept as support")
    query: int = Field(50, ge=1, description="Q respondents per group scored as query")
    nonresponse: float = Field(0.0, ge=0.0, description="strength of trait-dependent "
                                                        "non-response (0 = none)")
    noise_sd: float = Field(0.0, ge=0.0, description="measurement noise sd on features "
                                                     "(stored-scale units)")
    features: list[str] | None = Field(None, description="observed traits and ego answers "
                                                         "to ask; None = all")
    distractors: int = Field(0, ge=0, description="irrelevant N(0, 1) noise features appended "
                                                  "(a twin matching a real survey's width)")
    ceiling: bool = Field(False, description="estimate the observable ceiling E[y | features, "
                                             "group, wave] per query respondent (costs a "
                                             "small fit per wave; see "
                                             "society/diagnostics/ceiling.py)")
    binary_distractors: list[float] = Field(
        default_factory=list, description="irrelevant 0/1 features appended, one per entry: "
                                          "its P(1) in [0, 1]")
    population_cells: int = Field(
        64, ge=0, description="agents per group (at most) whose observed features are the "
                               "group's population cells each wave, what learners' predictions "
                               "are poststratified to (MRP); 0 = none (prevalence from the "
                               "sample). See survey.population_cells")
    wave_groups: list[list[int]] | None = Field(
        None, description="community ids surveyed in each wave (one list per wave; None = "
                          "every community every wave): a twin's copy of a survey design with "
                          "held-out groups or missing cells")

    @property
    def n_ticks(self) -> int:
        """Ticks the society must run for all waves."""
        return self.every * self.waves

    def wave_tick(self, wave: int) -> int:
        """The tick after which wave ``wave`` is taken."""
        return (wave + 1) * self.every


def feature_names(society: SocietyView, design: SurveyDesign) -> list[str]:
    """Column names of the task features, in order; a clear error for unknown names."""
    available = list(society.pop.observed_names) + list(
        society.ego_answers(np.zeros(1, dtype=np.int64)))
    if design.features is None:
        return available + distractor_names(design)
    unknown = [f for f in design.features if f not in available]
    if unknown or not design.features or len(set(design.features)) != len(design.features):
        raise ValueError(f"survey.features={design.features!r}: give distinct names from "
                         f"{', '.join(available)} (unknown: {unknown})")
    return list(design.features) + distractor_names(design)


def distractor_names(design: SurveyDesign) -> list[str]:
    """Names of the irrelevant columns appended after the asked features."""
    bad = [p for p in design.binary_distractors if not 0.0 <= p <= 1.0]
    if bad:
        raise ValueError(f"survey.binary_distractors={design.binary_distractors!r}: each entry "
                         f"is a probability in [0, 1] (bad: {bad})")
    return ([f"distractor_{i + 1}" for i in range(design.distractors)]
            + [f"binary_distractor_{i + 1}" for i in range(len(design.binary_distractors))])


def check_design(society: SocietyView, design: SurveyDesign) -> None:
    """Every group must hold at least ``support + query`` agents (and features must exist)."""
    feature_names(society, design)
    need = design.support + design.query
    sizes = society.social.group_sizes()
    small = np.flatnonzero(sizes < need)
    if len(small):
        g = int(small[0])
        raise ValueError(f"group {society.social.group_names[g]!r} has {sizes[g]} agents but "
                         f"the survey asks support={design.support} + query={design.query} = "
                         f"{need} respondents per group ({len(small)} group(s) too small); "
                         f"lower survey.support/query or use larger groups")


def sample_wave(society: SocietyView, design: SurveyDesign, wave: int,
                rng: np.random.Generator, ceiling: CeilingFn | None = None,
                ceiling_rng: np.random.Generator | None = None,
                cells_rng: np.random.Generator | None = None) -> list[Task]:
    """One task per group, surveyed now (at ``society.tick``), in group order. With a
    ``ceiling`` estimator (and its own generator, so the survey's draws do not change) every
    task also carries ``ceiling_query``, the observable ceiling of its query respondents. With
    ``design.population_cells > 0`` every task carries its group's population ``cells``
    (:func:`population_cells`, drawn from ``cells_rng``, again not the survey's generator)."""
    names = feature_names(society, design)
    check_design(society, design)
    need = design.support + design.query
    chosen = [_respondents(society, g, need, design.nonresponse, rng)
              for g in range(society.social.n_groups)]
    idx = np.concatenate(chosen)
    x = features_of(society, idx, [n for n in names if not n.startswith(DISTRACTORS)],
                  design.noise_sd, rng)
    y = society.respond(idx, rng)
    oracle = society.oracle(idx)
    asked = x
    x = _with_distractors(x, design, rng)
    tasks = [_task(society, wave, g, x, y, oracle, slice(g * need, (g + 1) * need),
                   design.support) for g in range(society.social.n_groups)]
    if design.population_cells:
        cells = population_cells(society, design, names, cells_rng if cells_rng is not None
                                 else np.random.default_rng(0))
        tasks = [replace(t, cells=c) for t, c in zip(tasks, cells)]
    if ceiling is None:
        return tasks
    rows = [slice(g * need + design.support, (g + 1) * need) for g in range(len(chosen))]
    values, se = ceiling(society, [asked[r] for r in rows], [c[design.support:] for c in chosen],
                         [n for n in names if not n.startswith(DISTRACTORS)], design.noise_sd,
                         ceiling_rng if ceiling_rng is not None else np.random.default_rng(0))
    return [replace(t, ceiling_query=np.asarray(v, np.float32),
                    info={**t.info, "ceiling_se": s})
            for t, v, s in zip(tasks, values, se)]


def _task(society: SocietyView, wave: int, g: int, x: np.ndarray, y: np.ndarray,
          oracle: np.ndarray, rows: slice, k: int) -> Task:
    xs, ys, os = x[rows], y[rows], oracle[rows]
    return Task(x_support=xs[:k], y_support=ys[:k], x_query=xs[k:], y_query=ys[k:],
                target=society.target, n_classes=society.n_classes,
                oracle_query=np.asarray(os[k:], dtype=np.float32),
                info={"wave": wave, "tick": society.tick, "group": g,
                      "group_name": society.social.group_names[g], "family": society.family})


def population_cells(society: SocietyView, design: SurveyDesign, names: list[str],
                     rng: np.random.Generator) -> list[Cells]:
    """Each group's population cells now: at most ``M = design.population_cells`` members'
    observed features, equal shares, and the group's exact true prevalence (mean oracle over
    *all* members).

    The features are continuous, so a cell is one agent's feature row. Poststratifying to every
    member is exactly the population mean of the predicted probabilities, but costs ``N x D``
    floats per task in the stream file (10x the respondents at 500 agents per group), so a
    group larger than M is represented by a systematic sample of M members ordered by their
    true probability (by the expected class for multiclass): implicit stratification, i.e.
    systematic sampling from a sorted list (Cochran 1977, ch. 8). Every learner predicts the
    same cells, and their own mean true probability is within about ``range / M`` of the
    group's (mean gap 0.0036 at M = 64 on opinion_shift), so the reference, the group's exact
    prevalence, is not blurred by a simple random subsample's error (``~sd / sqrt(M)``: 0.027).
    Features are the questionnaire's without measurement noise (a census value); distractor
    columns are drawn fresh from ``rng``. Nothing here is shown to learners.
    """
    asked = [n for n in names if not n.startswith(DISTRACTORS)]
    picks, truths = [], []
    for g in range(society.social.n_groups):
        members = society.social.members(g)
        truth = np.asarray(society.oracle(members), np.float64)
        truths.append(truth.mean(0))
        m = min(design.population_cells, len(members))
        if m == len(members):
            picks.append(members)
            continue
        key = truth if truth.ndim == 1 else truth @ np.arange(truth.shape[1])
        step = len(members) / m
        pos = np.floor(rng.uniform(0.0, step) + step * np.arange(m)).astype(np.int64)
        picks.append(members[np.argsort(key, kind="stable")][pos])
    x = _with_distractors(features_of(society, np.concatenate(picks), asked, 0.0, rng), design,
                          rng)
    bounds = np.cumsum([len(p) for p in picks])[:-1]
    return [Cells(cx, np.full(len(cx), 1.0 / len(cx)), t if t.ndim else float(t), "population")
            for cx, t in zip(np.split(x, bounds), truths)]


def response_propensity(society: SocietyView, idx: np.ndarray, strength: float) -> np.ndarray:
    """P(contacted agent responds): ``sigmoid(1 + strength * index(traits))``."""
    pop = society.pop
    index = np.zeros(len(idx))
    for name, weight in NONRESPONSE_INDEX.items():
        if name in pop.observed_names:
            col = pop.observed[idx, pop.column(name)].astype(np.float64)
            index += weight * (col - 0.5 if TRAITS[name].binary else col)
    return expit(BASE_RESPONSE_LOGIT + strength * index)


def _respondents(society: SocietyView, g: int, need: int, strength: float,
                 rng: np.random.Generator) -> np.ndarray:
    """``need`` respondents of group g in contact order (random), drawn without replacement."""
    members = society.social.members(g)
    if strength == 0.0:  # everyone responds: a simple random sample, in random order
        return members[rng.choice(len(members), size=need, replace=False)]
    contacted = members[rng.permutation(len(members))]
    responds = rng.random(len(contacted)) < response_propensity(society, contacted, strength)
    got = np.flatnonzero(responds)
    if len(got) < need:
        raise ValueError(f"group {society.social.group_names[g]!r}: only {len(got)} of its "
                         f"{len(members)} agents responded at survey.nonresponse={strength}, "
                         f"but {need} respondents are needed; lower survey.nonresponse or "
                         f"survey.support/query, or use larger groups")
    return contacted[got[:need]]


def features_of(society: SocietyView, idx: np.ndarray, names: list[str], noise_sd: float,
                rng: np.random.Generator) -> np.ndarray:
    """Feature matrix ``[n, len(names)]`` float32 with the fixed transforms and noise (the
    ceiling and headroom diagnostics "survey" agents through it too)."""
    pop = society.pop
    ego = society.ego_answers(idx)
    cols = []
    for name in names:
        if name in pop.observed_names:
            col = pop.observed[idx, pop.column(name)].astype(np.float64)
            binary = TRAITS[name].binary if name in TRAITS else False
            cols.append(_noisy(col, noise_sd, rng, binary=binary))
        elif name.startswith("n_"):
            cols.append(_noisy(np.log1p(np.asarray(ego[name], dtype=np.float64)), noise_sd,
                               rng))
        elif name.startswith("share_"):
            share = _noisy(np.asarray(ego[name], dtype=np.float64), noise_sd, rng)
            cols.append(np.clip(share, 0.0, 1.0))
        else:
            cols.append(_noisy(np.asarray(ego[name], dtype=np.float64), noise_sd, rng))
    return np.column_stack(cols).astype(np.float32)


DISTRACTORS = ("distractor_", "binary_distractor_")
"""Name prefixes of the features that carry no signal (no agent trait is read for them)."""


def _with_distractors(x: np.ndarray, design: SurveyDesign, rng: np.random.Generator
                      ) -> np.ndarray:
    """Append the design's irrelevant columns, drawn fresh for every respondent (drawn after
    the responses, so a design without distractors consumes the generator exactly as before)."""
    n_bin = len(design.binary_distractors)
    if design.distractors == 0 and n_bin == 0:
        return x
    noise = rng.standard_normal((len(x), design.distractors))
    coins = rng.random((len(x), n_bin)) < np.asarray(design.binary_distractors)
    return np.concatenate([x, noise, coins], axis=1).astype(np.float32)


def _noisy(col: np.ndarray, sd: float, rng: np.random.Generator,
           binary: bool = False) -> np.ndarray:
    """Add N(0, sd^2) measurement error; a 0/1 answer is re-dichotomised at 0.5 (misreport)."""
    if sd == 0.0:
        return col
    noisy = col + sd * rng.standard_normal(len(col))
    return (noisy > 0.5).astype(np.float64) if binary else noisy
