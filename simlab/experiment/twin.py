"""The simulated twin of a real survey: a society shaped like the survey, where the truth is known.

A user who wants to know which few-shot method to trust on a real survey rehearses on a
simulated scenario of the same shape, runs both, and asks whether the ranking of methods on
the twin (where the oracle is known) carries over to the survey
(:mod:`simlab.report.twin`). :func:`make_twin` matches, from a
:class:`~simlab.experiment.survey_scenario.SurveyScenario`:

* **groups and waves**: one community per survey group (a planted-partition graph, Holland,
  Laskey & Leinhardt 1983), one survey wave per time value, ``every`` ticks apart (the median
  gap between time values, e.g. 2 for biennial GSS years);
* **respondents per cell**: the survey's support size K and its typical query size Q;
* **features**: the same number, and the same split into 0/1 and continuous columns: observed
  traits and ego-network answers first, then irrelevant distractors (``survey.distractors``,
  ``survey.binary_distractors`` with each P(1) taken from a survey indicator column);
* **target**: a binary survey target -> the opinion family (Hegselmann-Krause bounded
  confidence with Friedkin-Johnsen anchoring) with a logistic response; a numeric target ->
  its continuous (Gaussian) response;
* **prevalence per wave and per group**: on the link scale (logit for binary) the intercept of
  community g in wave w is ``a_g + b_w`` (plus its own trend, below); ``a_g`` is set at
  tick 1 by a regime shock that never switches (so it is the initial condition, not a
  shift), and each later wave gets an abrupt shock adding ``b_w - b_{w-1}``;
* **signal strength**: the behaviour coefficients and the opinion effect are scaled by one
  factor s so that a pooled (logistic) regression on the twin's tasks explains as much as on
  the survey's (McFadden's pseudo-R^2 for binary targets, McFadden 1974; R^2 for numeric).

* **effect heterogeneity**: how far the features' effects differ between groups
  (:func:`effect_spread`: per-group least-squares coefficients, their between-group variance
  less the sampling variance, as in a method-of-moments random-coefficients estimate, Swamy
  1970), matched by the population's ``heterogeneity``;
* **group x time trends**: each group's fitted change of prevalence over the survey's span
  (:func:`group_trends`: least squares on the cells, Cochran's Q that the groups' slopes are
  equal, their between-group spread net of sampling). Community g gets its own trend c_g on
  the link scale (the wave shocks then carry one delta per community), calibrated to the
  survey's slopes shrunk towards the common one (:func:`target_trends`), so parallel trends
  measured with noise give a twin whose groups move alike. When the survey's groups diverge
  and a twin misses them (``match_trends=False``, an old twin file), :func:`trend_flag` words
  the caution the side-by-side report puts first in its verdict;
* **design**: which groups each wave surveys (``survey.wave_groups``: held-out groups of a
  ``new_groups`` survey, cells the survey lacks); a ``replicates`` survey's waves are
  exchangeable, so the twin holds one level in every wave.

Calibration alternates: generate the twin's stream, compare the expected prevalence (mean of
the oracle over query respondents) per wave and per group, the groups' trends, the pooled R^2
and the effect spread with the survey's, correct ``b_w`` (level and time), ``a_g`` (deviations
between groups), c_g, s and the heterogeneity, for ``rounds`` rounds.
:meth:`TwinFit.fidelity` then lists every matched quantity, survey vs twin, with its
tolerance, and flags the misses; they are written in the twin's file and shown in the
side-by-side report.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from simlab import DEFAULT_DB
from simlab.tasks.stream import safe_name

if TYPE_CHECKING:  # pragma: no cover
    from simlab.experiment.config import Scenario
    from simlab.experiment.survey_scenario import SurveyScenario
    from simlab.tasks.task import TaskStream

# The scenario and simulation layers are imported inside the functions that use them, so that
# `simlab --help` (which builds this command's arguments) stays fast.

#: observed traits and ego answers a twin uses, in the order they are taken
CONTINUOUS_TRAITS: tuple[str, ...] = ("education", "income", "age", "religiosity")
CONTINUOUS_EGO: tuple[str, ...] = ("share_friends_support", "n_friends")
BINARY_TRAITS: tuple[str, ...] = ("female", "urban")
BINARY_TRAIT_SHARE: dict[str, float] = {"female": 0.5, "urban": 0.6}
OPINION_EFFECT = 2.0          # the opinion family's default logit effect of opinion (scale 1)
BURN_IN = 50
GROUP_SIZE_FACTOR = 4         # agents per community = this x (K + Q), at least MIN_GROUP_SIZE
MIN_GROUP_SIZE = 200
PREVALENCE_CLIP = 1e-3        # keeps logits finite for a wave or group with 0% or 100%
#: tolerances of the fidelity table: prevalence (absolute; x the target's sd for a numeric
#: target), and (absolute, relative) for the pooled R^2 and the effect spread
TOL_LEVEL = 0.02
TOL_SIGNAL = (0.01, 0.15)
TOL_SPREAD = (0.01, 0.25)


# --- the survey's shape ---------------------------------------------------------------------------
@dataclass
class SurveyShape:
    """What a twin matches, measured on the survey (data and its seed-0 stream)."""

    name: str
    target: str
    group_names: list[str]
    times: list[Any]
    every: int
    support: int
    query: int
    kinds: list[str]                   # "binary" / "continuous" per feature column
    binary_means: list[float]          # P(1) of each binary feature column (data, raw)
    wave_level: np.ndarray             # [W] observed prevalence (binary) / mean (numeric)
    group_level: np.ndarray            # [G] the same per group, pooled over waves
    signal: float                      # pooled R^2 of the features on the stream
    target_sd: float                   # within-wave sd of a numeric target (1 for binary)
    skipped_cells: int
    spread: float = 0.0                # between-group spread of effects (effect_spread)
    design: str = "waves"
    wave_groups: list[list[int]] | None = None   # communities per wave, None = all in all
    cell_level: np.ndarray | None = None   # [G, W] observed prevalence per cell (nan: none)
    cell_var: np.ndarray | None = None     # [G, W] its sampling variance
    trends: GroupTrends | None = None      # group x time trends (group_trends)

    @property
    def n_groups(self) -> int:
        return len(self.group_names)

    @property
    def n_waves(self) -> int:
        return len(self.times)

    @property
    def n_features(self) -> int:
        return len(self.kinds)


def survey_shape(survey: SurveyScenario, seed: int = 0) -> SurveyShape:
    """Measure a survey scenario's shape (reads the data and builds its ``seed`` stream)."""
    from simlab.tasks.survey_data import encode, feature_kinds, prepared_rows, respondents

    spec = survey.data
    if spec.target_kind == "multiclass":
        raise ValueError(f"{survey.name}: data.target_kind = 'multiclass' has no twin yet: the "
                         "twin's opinion society answers a binary or numeric question; recode "
                         "the target to 0/1 (target_kind = 'binary') to rehearse on a twin")
    stream = survey.stream(seed, cache=False)
    frame = survey.frame()
    resp = respondents(frame, spec, seed)
    times = list(stream.meta["times"])
    names = sorted({str(t.info["group"]) for t in stream.tasks()})
    y, w = resp["y"].to_numpy(np.float64), resp["w"].to_numpy(np.float64)
    time_col = resp["time"].astype(str).to_numpy()
    group = resp["group"].to_numpy()
    wave_level = np.array([_wmean(y, w, time_col == str(t)) for t in times])
    group_level = np.array([_wmean(y, w, group == g) for g in names])
    if spec.design == "replicates":            # exchangeable waves: one level throughout
        wave_level = np.full(len(times), _wmean(y, w, np.ones(len(y), bool)))
    df, rows, _ = prepared_rows(frame, spec, seed)
    raw = encode(df[rows.kept].reset_index(drop=True), spec).x   # unscaled: 0/1 stay 0/1
    kinds = feature_kinds(raw)
    binary_means = [float(np.nanmean(raw[:, j])) for j, k in enumerate(kinds) if k == "binary"]
    within_sd = float(np.sqrt(np.mean([np.var(y[time_col == str(t)]) for t in times])))
    surveyed = [[names.index(str(t.info["group"])) for t in wave] for wave in stream.waves]
    full = all(len(g) == len(names) for g in surveyed)
    cell_level, cell_var = survey_cells(resp, names, times, spec.target_kind == "binary")
    trends = None if spec.design == "replicates" else group_trends(cell_level, cell_var, times)
    return SurveyShape(
        name=survey.name, target=spec.target_kind, group_names=names, times=times,
        every=_every(times), support=spec.support,
        query=int(round(float(np.median([t.n_query for t in stream.tasks()])))),
        kinds=kinds, binary_means=binary_means, wave_level=wave_level,
        group_level=group_level, signal=pooled_r2(stream),
        target_sd=within_sd if spec.target_kind == "regression" else 1.0,
        skipped_cells=len(stream.meta.get("skipped_cells", [])),
        spread=effect_spread(stream), design=spec.design,
        wave_groups=None if full else surveyed, cell_level=cell_level, cell_var=cell_var,
        trends=trends)


def effect_spread(stream: TaskStream, ridge: float = 1e-3) -> float:
    """How far the features' effects differ between groups: per group (its tasks pooled over
    waves) least-squares coefficients b_g with sampling variances s_g^2; per feature the
    between-group variance ``max(0, var_g(b_g) - mean_g(s_g^2))`` (method of moments, Swamy
    1970); returns the root of its mean over the features that vary in every group. Linear
    (probability) scale for every target kind, so the survey and its twin are measured alike."""
    by_group: dict[Any, list[Any]] = {}
    for task in stream.tasks():
        by_group.setdefault(task.info["group"], []).append(task)
    if len(by_group) < 2:
        return 0.0
    coefs, variances, varies = [], [], []
    for tasks in by_group.values():
        x = np.concatenate([np.concatenate([t.x_support, t.x_query]) for t in tasks]
                           ).astype(np.float64)
        y = np.concatenate([np.concatenate([t.y_support, t.y_query]) for t in tasks]
                           ).astype(np.float64)
        x1 = np.column_stack([np.ones(len(x)), x])
        gram = x1.T @ x1 + ridge * len(x) * np.diag([0.0] + [1.0] * x.shape[1])
        inv = np.linalg.inv(gram)
        beta = inv @ x1.T @ y
        dof = max(len(y) - x1.shape[1], 1)
        sigma2 = float(np.sum((y - x1 @ beta) ** 2)) / dof
        coefs.append(beta[1:])
        variances.append(sigma2 * np.diag(inv)[1:])
        varies.append(x.std(axis=0) > 1e-6)
    coefs, variances = np.array(coefs), np.array(variances)
    ok = np.all(varies, axis=0)
    if not ok.any():
        return 0.0
    between = coefs[:, ok].var(axis=0, ddof=1) - variances[:, ok].mean(axis=0)
    return float(np.sqrt(np.mean(np.maximum(between, 0.0))))


def _wmean(y: np.ndarray, w: np.ndarray, mask: np.ndarray) -> float:
    return float(np.sum(y[mask] * w[mask]) / np.sum(w[mask]))


def _every(times: Sequence[Any]) -> int:
    """Ticks between waves: the median gap of numeric time values (1 otherwise), in 1..10."""
    try:
        gaps = np.diff(np.asarray(times, dtype=np.float64))
    except (TypeError, ValueError):
        return 1
    if len(gaps) == 0 or not np.all(np.isfinite(gaps)) or np.median(gaps) <= 0:
        return 1
    return int(np.clip(round(float(np.median(gaps))), 1, 10))


# --- group x time trends --------------------------------------------------------------------------
#: significance of Cochran's Q test that the groups' trends differ ("the survey diverges")
TREND_ALPHA = 0.05
#: tolerance of a group's trend (change of prevalence over the survey's span): this absolute
#: floor (x the target's sd for a numeric target) or 2 standard errors of the survey's, if wider
TOL_TREND = 0.03


@dataclass
class GroupTrends:
    """Each group's linear trend of prevalence (mean) over the waves, and how far they differ.

    ``change[g]``: the least-squares slope of group g's cell prevalences on time, times the
    survey's span (last minus first time value): the fitted change over the survey. ``spread``:
    the between-group sd of those changes less their sampling variance (method of moments, as
    :func:`effect_spread`), so parallel trends measured with noise give about 0. Cochran's Q
    (1954) tests that every group has the same slope (``p`` small = the trends diverge).
    ``level_spread[w]``: the between-group sd of prevalence in wave w (net of sampling), and
    ``spread_change`` its fitted change over the span (> 0: the groups drift apart)."""

    change: np.ndarray                 # [G] fitted change over the span (nan: < 2 waves)
    se: np.ndarray                     # [G] its standard error (sampling)
    spread: float
    q: float
    p: float
    level_spread: np.ndarray           # [W]
    spread_change: float
    span: tuple[Any, Any]              # first and last time value

    @property
    def diverging(self) -> bool:
        """The groups' trends differ beyond sampling noise (Cochran's Q, ``TREND_ALPHA``)."""
        return bool(self.p < TREND_ALPHA)


def trend_positions(times: Sequence[Any]) -> np.ndarray:
    """Where each wave lies in time: the numeric time values, else 0, 1, 2, ..."""
    try:
        x = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError):
        return np.arange(len(times), dtype=np.float64)
    return x if np.all(np.isfinite(x)) and np.ptp(x) > 0 else np.arange(len(x), dtype=float)


def group_trends(level: np.ndarray, var: np.ndarray, times: Sequence[Any]
                 ) -> GroupTrends | None:
    """Trends of a [G, W] table of cell prevalences (nan = cell not surveyed) with their
    sampling variances ``var``; None when fewer than two groups span two waves or more."""
    x = trend_positions(times)
    span = float(x[-1] - x[0])
    g_n = level.shape[0]
    change, se = np.full(g_n, np.nan), np.full(g_n, np.nan)
    for g in range(g_n):
        ok = np.isfinite(level[g]) & np.isfinite(var[g])
        if ok.sum() < 2 or np.ptp(x[ok]) == 0:
            continue
        xc = x[ok] - x[ok].mean()
        sxx = float(np.sum(xc ** 2))
        change[g] = float(np.sum(xc * level[g, ok]) / sxx) * span
        se[g] = math.sqrt(float(np.sum(xc ** 2 * var[g, ok])) / sxx ** 2) * abs(span)
    has = np.isfinite(change)
    if has.sum() < 2:
        return None
    c, s2 = change[has], np.maximum(se[has] ** 2, 1e-12)
    weights = 1.0 / s2
    common = float(np.sum(weights * c) / np.sum(weights))
    q = float(np.sum(weights * (c - common) ** 2))
    from scipy.stats import chi2

    p = float(chi2.sf(q, len(c) - 1))
    spread = math.sqrt(max(0.0, float(c.var(ddof=1) - s2.mean())))
    level_spread = np.full(level.shape[1], np.nan)
    for w in range(level.shape[1]):
        ok = np.isfinite(level[:, w]) & np.isfinite(var[:, w])
        if ok.sum() >= 2:
            between = float(level[ok, w].var(ddof=1) - var[ok, w].mean())
            level_spread[w] = math.sqrt(max(0.0, between))
    okw = np.isfinite(level_spread)
    spread_change = math.nan
    if okw.sum() >= 2 and np.ptp(x[okw]) > 0:
        xc = x[okw] - x[okw].mean()
        spread_change = float(np.sum(xc * level_spread[okw]) / np.sum(xc ** 2)) * span
    return GroupTrends(change=change, se=se, spread=spread, q=q, p=p,
                       level_spread=level_spread, spread_change=spread_change,
                       span=(times[0], times[-1]))


def survey_cells(resp: Any, names: Sequence[str], times: Sequence[Any], binary: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """[G, W] observed prevalence (weighted mean) per group and wave of the survey's
    respondents, and its sampling variance (Kish effective n); nan where no cell."""
    level = np.full((len(names), len(times)), np.nan)
    var = np.full_like(level, np.nan)
    index = {str(t): w for w, t in enumerate(times)}
    gi = {str(g): k for k, g in enumerate(names)}
    for (t, g), cell in resp.groupby([resp["time"].astype(str), resp["group"].astype(str)]):
        if t not in index or g not in gi:
            continue
        y, w = cell["y"].to_numpy(np.float64), cell["w"].to_numpy(np.float64)
        m = float(np.sum(w * y) / np.sum(w))
        n_eff = float(np.sum(w) ** 2 / np.sum(w ** 2))
        v = m * (1 - m) if binary else float(np.sum(w * (y - m) ** 2) / np.sum(w))
        level[gi[g], index[t]] = m
        var[gi[g], index[t]] = max(v, 1e-6) / n_eff
    return level, var


def twin_cells(stream: TaskStream, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """[G, W] expected prevalence (mean oracle over query respondents) of a twin's cells and
    its sampling variance over the respondents drawn; nan where a wave skips a group."""
    level = np.full((n_groups, len(stream.waves)), np.nan)
    var = np.full_like(level, np.nan)
    for w, wave in enumerate(stream.waves):
        for task in wave:
            o = np.asarray(task.oracle_query, dtype=np.float64)
            g = int(task.info["group"])
            level[g, w] = float(o.mean())
            var[g, w] = max(float(o.var()), 1e-9) / len(o)
    return level, var


def trend_rows(shape: SurveyShape, twin: GroupTrends | None) -> list[dict[str, Any]]:
    """Survey vs twin for the group x time trends: each group's change over the span
    (tolerance ``TOL_TREND`` or 2 survey standard errors), the spread of those changes and
    the change of the between-group spread (absolute + relative tolerance: ``TOL_SPREAD`` and,
    for the noisier change of the spread, ``TOL_TREND`` + ``TOL_SPREAD``'s relative part)."""
    real = shape.trends
    if real is None or twin is None:
        return []
    what = "prevalence" if shape.target == "binary" else "mean"
    unit = 1.0 if shape.target == "binary" else shape.target_sd
    first, last = real.span
    rows = []
    for g, name in enumerate(shape.group_names):
        o, a, se = real.change[g], twin.change[g], real.se[g]
        if np.isfinite(o) and np.isfinite(a):
            rows.append((f"{what} trend {first}-{last}, group {name}", o, a,
                         max(TOL_TREND * unit, 2 * se)))
    rows.append((f"spread of the groups' trends {first}-{last}", real.spread, twin.spread,
                 TOL_SPREAD[0] * unit + TOL_SPREAD[1] * real.spread))
    if np.isfinite(real.spread_change) and np.isfinite(twin.spread_change):
        rows.append((f"change of the between-group spread {first}-{last}", real.spread_change,
                     twin.spread_change,
                     TOL_TREND * unit + TOL_SPREAD[1] * abs(real.spread_change)))
    return [{"quantity": q, "survey": float(o), "twin": float(a), "tolerance": float(tol),
             "ok": bool(abs(a - o) <= tol), "check": math.nan, "trend": True}
            for q, o, a, tol in rows]


def trend_flag(shape: SurveyShape, rows: Sequence[Mapping[str, Any]]) -> str | None:
    """The warning for a survey whose group trends diverge when the twin does not follow
    them (a trend row of the fidelity table outside tolerance); None otherwise."""
    real = shape.trends
    if real is None or not real.diverging:
        return None
    missed = [r for r in rows if r.get("trend") and not r["ok"]]
    if not missed:
        return None
    what = "prevalence" if shape.target == "binary" else "mean"
    has = np.isfinite(real.change)
    lo, hi = int(np.nanargmin(real.change)), int(np.nanargmax(real.change))
    first, last = real.span
    twin_trend = [r for r in rows if r.get("trend") and "trend" in r["quantity"]
                  and "group" in r["quantity"]]
    twin_range = (f"{min(r['twin'] for r in twin_trend):+.2f} to "
                  f"{max(r['twin'] for r in twin_trend):+.2f}" if twin_trend else "n/a")
    return (f"Caution: the twin does not follow the survey's diverging group trends. On the "
            f"survey the groups' {what} trends differ (Cochran's Q = {real.q:.1f} on "
            f"{int(has.sum()) - 1} df, p = {real.p:.2g}): from {real.change[lo]:+.2f} "
            f"({shape.group_names[lo]}) to {real.change[hi]:+.2f} ({shape.group_names[hi]}) "
            f"over {first}-{last}, a spread of {real.spread:.2f}; on the twin they run from "
            f"{twin_range}, and {len(missed)} trend quantit"
            f"{'y is' if len(missed) == 1 else 'ies are'} outside tolerance. A learner's rank "
            "on the twin therefore says nothing about how it follows groups that move apart; "
            "recalibrate the twin (`simlab twin`, which matches group trends) before trusting "
            "the agreement below.")


def pooled_r2(stream: TaskStream, ridge: float = 1e-3) -> float:
    """How much the features explain, pooled over every task of the stream (support and
    query): McFadden's pseudo-R^2 ``1 - LL(model) / LL(intercept)`` of a (slightly ridge
    penalised) logistic regression for a binary target, the OLS R^2 for a numeric one."""
    from scipy.optimize import minimize
    from scipy.special import expit

    tasks = stream.tasks()
    x = np.concatenate([np.concatenate([t.x_support, t.x_query]) for t in tasks]).astype(
        np.float64)
    y = np.concatenate([np.concatenate([t.y_support, t.y_query]) for t in tasks]).astype(
        np.float64)
    x = np.column_stack([np.ones(len(x)), x])
    if tasks[0].target == "regression":
        beta, *_ = np.linalg.lstsq(x, y, rcond=None)
        sst = float(np.sum((y - y.mean()) ** 2))
        return 1.0 - float(np.sum((y - x @ beta) ** 2)) / sst if sst > 0 else 0.0

    def nll(beta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = x @ beta
        loss = np.mean(np.logaddexp(0.0, eta) - y * eta) + ridge * np.sum(beta[1:] ** 2)
        grad = x.T @ (expit(eta) - y) / len(y)
        grad[1:] += 2 * ridge * beta[1:]
        return float(loss), grad

    fit = minimize(nll, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B")
    p = float(np.clip(y.mean(), 1e-9, 1 - 1e-9))
    null = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    model = float(np.mean(np.logaddexp(0.0, x @ fit.x) - y * (x @ fit.x)))
    return max(0.0, 1.0 - model / null)


# --- the twin's config ----------------------------------------------------------------------------
@dataclass
class TwinFeatures:
    """Which columns the twin asks, and its distractors."""

    traits: list[str]
    features: list[str]
    distractors: int
    binary_distractors: list[float]


def twin_features(shape: SurveyShape) -> TwinFeatures:
    """The same number of 0/1 and continuous columns as the survey: informative traits and ego
    answers first, distractors for the rest. The binary traits stand in for the survey's
    indicator columns closest to their share; the others' shares set the distractors'."""
    n_cont = shape.kinds.count("continuous")
    n_bin = shape.kinds.count("binary")
    cont = list(CONTINUOUS_TRAITS + CONTINUOUS_EGO)[:n_cont]
    binary = list(BINARY_TRAITS)[:n_bin]
    means = list(shape.binary_means)
    for trait in binary:                       # drop the survey column each trait stands for
        share = BINARY_TRAIT_SHARE[trait]
        means.pop(int(np.argmin([abs(m - share) for m in means])))
    traits = [t for t in cont if t in CONTINUOUS_TRAITS] + binary
    ego = [t for t in cont if t in CONTINUOUS_EGO]
    return TwinFeatures(traits=traits, features=traits + ego, distractors=n_cont - len(cont),
                        binary_distractors=[round(float(m), 4) for m in means])


@dataclass
class Levels:
    """The calibrated quantities: group intercepts a_g, wave offsets b_w (b_0 = 0), signal s,
    and each group's own trend c_g (link scale per time unit, mean 0 over groups: the common
    trend is in b_w), so community g's intercept in wave w is a_g + b_w + c_g (x_w - mean x)."""

    group: np.ndarray
    wave: np.ndarray
    scale: float
    heterogeneity: float = 0.5
    trend: np.ndarray | None = None

    def trend_terms(self, times: Sequence[Any]) -> np.ndarray:
        """[G, W] the group-trend part c_g (x_w - mean x) of each cell's intercept."""
        x = trend_positions(times)
        if self.trend is None:
            return np.zeros((len(self.group), len(x)))
        return np.outer(self.trend, x - x.mean())


def twin_config(survey: SurveyScenario, shape: SurveyShape, levels: Levels) -> dict[str, Any]:
    """The simulated scenario (a TOML-able dict) for the given calibrated levels."""
    from simlab.society.population import DEFAULT_COEF

    feats = twin_features(shape)
    s = levels.scale
    n_ticks = BURN_IN + shape.n_waves * shape.every
    terms = levels.trend_terms(shape.times)
    start = _rounded(levels.group + terms[:, 0])
    shocks: list[dict[str, Any]] = [{
        "kind": "regime", "name": "group_levels", "target": "intercept", "start": 1,
        "period": n_ticks, "values": [start, start]}]
    for w in range(1, shape.n_waves):
        step = levels.wave[w] - levels.wave[w - 1] + terms[:, w] - terms[:, w - 1]
        delta: float | list[float] = _rounded(step)
        if np.ptp(delta) == 0:                 # every group moves alike: one number
            delta = delta[0]
        if delta != 0.0:
            shocks.append({"kind": "abrupt", "name": f"wave_{w}_{_label(shape.times[w])}",
                           "target": "intercept", "at": BURN_IN + w * shape.every + 1,
                           "delta": delta})
    evaluation = survey.evaluation.model_dump(mode="json")
    evaluation["learners"] = [*evaluation["learners"], "oracle"]
    params: dict[str, Any] = {"opinion_effect": round(OPINION_EFFECT * s, 4),
                              "response": "binary" if shape.target == "binary" else "continuous"}
    if shape.target == "regression":
        params["response_sd"] = round(shape.target_sd * math.sqrt(max(1 - shape.signal, 0.05)),
                                      4)
    survey_table: dict[str, Any] = {"every": shape.every, "waves": shape.n_waves,
                                    "support": shape.support, "query": shape.query,
                                    "features": feats.features}
    if feats.distractors:
        survey_table["distractors"] = feats.distractors
    if feats.binary_distractors:
        survey_table["binary_distractors"] = feats.binary_distractors
    if shape.wave_groups is not None:
        survey_table["wave_groups"] = shape.wave_groups
    return {
        "name": f"{safe_name(shape.name)}_twin",    # also its file name: no ../
        "description": f"Simulated twin of {shape.name}: {shape.n_groups} groups x "
                       f"{shape.n_waves} waves ({shape.design}), K={shape.support}, "
                       f"Q={shape.query}, {shape.n_features} features, matched prevalence",
        "burn_in": BURN_IN,
        "dynamics": {"family": "opinion", "params": params},
        "graph": {"kind": "planted_partition", "n_groups": shape.n_groups,
                  "group_size": max(MIN_GROUP_SIZE,
                                    GROUP_SIZE_FACTOR * (shape.support + shape.query)),
                  "mean_degree": 10.0, "homophily": 0.8},
        "population": {"heterogeneity": round(float(levels.heterogeneity), 4),
                       "traits": feats.traits,
                       "coef": {t: round(DEFAULT_COEF[t] * s, 4) for t in feats.traits},
                       "intercept": round(float(np.mean(start)), 4)},
        "survey": survey_table,
        "shocks": shocks,
        "evaluation": evaluation,
        "learners": {k: dict(v) for k, v in survey.learners.items()},
    }


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in values]


def _label(value: Any) -> str:
    return "".join(c if c.isalnum() else "_" for c in str(value))


# --- calibration ----------------------------------------------------------------------------------
@dataclass
class TwinFit:
    """A calibrated twin: its config, the survey's shape, and achieved vs observed levels."""

    config: dict[str, Any]
    shape: SurveyShape
    achieved_wave: np.ndarray          # expected prevalence per wave on the calibration seed
    achieved_group: np.ndarray
    signal: float                      # the twin's pooled R^2 on the calibration seed
    check_wave: np.ndarray             # per-wave prevalence on another seed (out of sample)
    seed: int
    history: list[float] = field(default_factory=list)   # max |wave gap| after each round
    spread: float = 0.0                # the twin's effect spread on the calibration seed
    trends: GroupTrends | None = None  # the twin's group x time trends (calibration seed)

    def fidelity(self) -> list[dict[str, Any]]:
        """Every matched quantity: survey vs twin (calibration seed), its tolerance, and
        whether it is met (see :func:`fidelity_rows` and :func:`trend_rows`)."""
        return fidelity_rows(self.shape, self.achieved_wave, self.achieved_group, self.signal,
                             self.spread, self.check_wave) + trend_rows(self.shape, self.trends)

    def trend_flag(self) -> str | None:
        """The warning when the survey's group trends diverge and this twin misses them."""
        return trend_flag(self.shape, self.fidelity())

    def misses(self) -> list[dict[str, Any]]:
        """The matched quantities outside their tolerance."""
        return [row for row in self.fidelity() if not row["ok"]]

    def table(self) -> list[tuple[str, float, float, float]]:
        """(label, observed, achieved on the calibration seed, on the check seed) rows."""
        rows = [(f"wave {w} ({t})", float(o), float(a), float(c)) for w, (t, o, a, c) in
                enumerate(zip(self.shape.times, self.shape.wave_level, self.achieved_wave,
                              self.check_wave))]
        rows += [(f"group {g}", float(o), float(a), math.nan) for g, o, a in
                 zip(self.shape.group_names, self.shape.group_level, self.achieved_group)]
        return rows

    def summary(self) -> str:
        """Plain-text account: shape, then observed vs achieved levels."""
        sh = self.shape
        n_bin = sh.kinds.count("binary")
        scale = self.config["dynamics"]["params"]["opinion_effect"] / OPINION_EFFECT
        het = self.config["population"]["heterogeneity"]
        lines = [f"twin of {sh.name}: {sh.n_groups} groups x {sh.n_waves} waves (every "
                 f"{sh.every} ticks, design {sh.design}), K={sh.support}, Q={sh.query}, "
                 f"{sh.n_features} features ({n_bin} binary, {sh.n_features - n_bin} "
                 f"continuous), target {sh.target}",
                 f"effects scaled by {scale:.3g}, heterogeneity {het:.3g}",
                 f"matched quantity: survey | twin seed {self.seed} (calibrated) | tolerance | "
                 f"twin seed {self.seed + 1} (check)"]
        for row in self.fidelity():
            check = "-" if math.isnan(row["check"]) else f"{row['check']:.4f}"
            flag = "ok" if row["ok"] else "MISS"
            lines.append(f"  {row['quantity']:<48} {row['survey']:.4f} | {row['twin']:.4f} | "
                         f"+-{row['tolerance']:.4f} {flag:<4} | {check}")
        misses = self.misses()
        gaps = np.abs(self.achieved_wave - sh.wave_level)
        lines.append(f"largest per-wave gap {gaps.max():.4f} (calibration seed), "
                     f"{np.abs(self.check_wave - sh.wave_level).max():.4f} (check seed); "
                     + (f"{len(misses)} quantit{'y' if len(misses) == 1 else 'ies'} outside "
                        "tolerance: " + ", ".join(m["quantity"] for m in misses)
                        + " (more --rounds may help)" if misses else
                        "every matched quantity within tolerance"))
        if sh.wave_groups is not None:
            lines.append(f"the twin surveys the same groups in each wave as the survey "
                         f"({sum(map(len, sh.wave_groups))} cells of "
                         f"{sh.n_groups * sh.n_waves})")
        if sh.design == "replicates":
            lines.append("the survey's waves are random replicates (exchangeable): the twin "
                         "holds one level in every wave")
        if sh.trends is not None:
            follows = "per-group" if any(isinstance(k.get("delta"), list)
                                         for k in self.config["shocks"]) else "common"
            lines.append(f"group trends: the survey's differ with Cochran's Q = "
                         f"{sh.trends.q:.1f}, p = {sh.trends.p:.2g} ("
                         f"{'diverging' if sh.trends.diverging else 'parallel within noise'});"
                         f" the twin's 'wave_*' shocks carry {follows} deltas")
        flag = self.trend_flag()
        if flag:
            lines.append(flag)
        return "\n".join(lines)


def fidelity_rows(shape: SurveyShape, wave: np.ndarray, group: np.ndarray, signal: float,
                  spread: float, check_wave: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Survey vs twin for each matched quantity: prevalence (mean) per wave and per group
    (tolerance ``TOL_LEVEL``; 5 x that x the sd of a numeric target), the pooled R^2 and
    the effect spread (absolute + relative tolerance); ``ok`` when within it."""
    what = "prevalence" if shape.target == "binary" else "mean"
    tol_level = TOL_LEVEL if shape.target == "binary" else 5 * TOL_LEVEL * shape.target_sd
    check = check_wave if check_wave is not None else np.full(len(wave), np.nan)
    rows = [(f"{what}, wave {w} ({t})", o, a, tol_level, c) for w, (t, o, a, c) in
            enumerate(zip(shape.times, shape.wave_level, wave, check))]
    rows += [(f"{what}, group {g}", o, a, tol_level, math.nan)
             for g, o, a in zip(shape.group_names, shape.group_level, group)]
    rows.append(("pooled R^2 of the features", shape.signal, signal,
                 TOL_SIGNAL[0] + TOL_SIGNAL[1] * shape.signal, math.nan))
    rows.append(("effect spread between groups", shape.spread, spread,
                 TOL_SPREAD[0] + TOL_SPREAD[1] * shape.spread, math.nan))
    return [{"quantity": q, "survey": float(o), "twin": float(a), "tolerance": float(tol),
             "ok": bool(abs(a - o) <= tol), "check": float(c)} for q, o, a, tol, c in rows]


def measure_twin(shape: SurveyShape, twin: Scenario, seed: int = 0) -> list[dict[str, Any]]:
    """The fidelity table of an existing twin scenario, measured on its ``seed`` stream."""
    from simlab.society.run import generate_stream

    stream = generate_stream(twin, seed)
    wave, group = achieved_levels(stream, shape.n_groups)
    return fidelity_rows(shape, wave, group, pooled_r2(stream), effect_spread(stream)) + \
        trend_rows(shape, group_trends(*twin_cells(stream, shape.n_groups), shape.times))


def _link(kind: str) -> tuple[Any, Any]:
    from scipy.special import expit, logit

    if kind == "binary":
        return (lambda p: logit(np.clip(p, PREVALENCE_CLIP, 1 - PREVALENCE_CLIP)), expit)
    return (lambda m: np.asarray(m, dtype=np.float64), lambda e: e)


def achieved_levels(stream: TaskStream, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Expected prevalence (mean oracle over query respondents) per wave and per group."""
    waves = np.array([np.mean(np.concatenate([t.oracle_query for t in wave]))
                      for wave in stream.waves])
    per_group: list[list[np.ndarray]] = [[] for _ in range(n_groups)]
    for task in stream.tasks():
        per_group[int(task.info["group"])].append(task.oracle_query)
    return waves, np.array([np.mean(np.concatenate(g)) for g in per_group])


def fit_twin(survey: SurveyScenario, seed: int = 0, rounds: int = 4,
             heterogeneity: float = 0.5, match_spread: bool = True,
             match_trends: bool = True) -> TwinFit:
    """Calibrate a twin of ``survey`` on the twin stream of ``seed`` (see the module docstring).

    ``heterogeneity``: the population's spread of communities (trait means and behaviour
    coefficients; 0 = every community the same task): the starting value, calibrated to the
    survey's effect spread unless ``match_spread`` is False (then kept as given).
    ``match_trends``: give each community its own trend, calibrated to the survey's group
    trends shrunk towards the common one (:func:`target_trends`); False moves every group
    alike each wave (the fidelity table still measures the trends and flags a miss).
    """
    from simlab.society.run import generate_stream

    if rounds < 1:
        raise ValueError(f"rounds={rounds} must be >= 1")
    if heterogeneity < 0:
        raise ValueError(f"heterogeneity={heterogeneity} must be >= 0 (0.5 is moderate)")
    shape = survey_shape(survey, seed)
    to_link, _ = _link(shape.target)
    target_w, target_g = to_link(shape.wave_level), to_link(shape.group_level)
    target_c = target_trends(shape) if match_trends else None
    levels = Levels(group=target_g - target_g.mean() + target_w[0],
                    wave=target_w - target_w[0], scale=1.0, heterogeneity=heterogeneity,
                    trend=target_c)
    history = []
    for r in range(rounds):
        stream = generate_stream(_twin_scenario(survey, shape, levels), seed)
        ach_w, ach_g = achieved_levels(stream, shape.n_groups)
        trend = levels.trend
        if target_c is not None and trend is not None:
            got = link_slopes(*twin_cells(stream, shape.n_groups), shape.times, shape.target)[0]
            seen = np.isfinite(got)
            d_c = np.where(seen, target_c - np.where(seen, got, 0.0), 0.0)
            trend = trend + d_c - (d_c[seen].mean() * seen if seen.any() else 0.0)
        history.append(float(np.abs(ach_w - shape.wave_level).max()))
        d_w, d_g = target_w - to_link(ach_w), target_g - to_link(ach_g)
        # the last round keeps scale and spread, so its level correction is made at them
        last = r == rounds - 1
        scale = levels.scale if last else _rescale(levels.scale, shape.signal,
                                                   pooled_r2(stream))
        het = levels.heterogeneity if last or not match_spread else _respread(
            levels.heterogeneity, shape.spread, effect_spread(stream))
        levels = Levels(group=levels.group + d_g - d_g.mean() + d_w[0],
                        wave=levels.wave + d_w - d_w[0], scale=scale, heterogeneity=het,
                        trend=trend)
    twin = _twin_scenario(survey, shape, levels)
    stream = generate_stream(twin, seed)
    ach_w, ach_g = achieved_levels(stream, shape.n_groups)
    history.append(float(np.abs(ach_w - shape.wave_level).max()))
    check_w, _ = achieved_levels(generate_stream(twin, seed + 1), shape.n_groups)
    return TwinFit(config=twin_config(survey, shape, levels), shape=shape, achieved_wave=ach_w,
                   achieved_group=ach_g, signal=pooled_r2(stream), check_wave=check_w,
                   seed=seed, history=history, spread=effect_spread(stream),
                   trends=group_trends(*twin_cells(stream, shape.n_groups), shape.times))


def link_slopes(level: np.ndarray, var: np.ndarray, times: Sequence[Any], kind: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per group: the least-squares slope of its cells' prevalence on the link scale (logit
    for binary, delta-method variances) per time unit, and its standard error; nan for a
    group seen in fewer than two waves."""
    to_link, _ = _link(kind)
    clipped = np.clip(level, PREVALENCE_CLIP, 1 - PREVALENCE_CLIP)
    lvar = var / (clipped * (1 - clipped)) ** 2 if kind == "binary" else var
    link = np.where(np.isfinite(level), to_link(np.nan_to_num(level, nan=0.5)), np.nan)
    x = trend_positions(times)
    slope, se = np.full(len(level), np.nan), np.full(len(level), np.nan)
    for g in range(len(level)):
        ok = np.isfinite(link[g]) & np.isfinite(lvar[g])
        if ok.sum() < 2 or np.ptp(x[ok]) == 0:
            continue
        xc = x[ok] - x[ok].mean()
        sxx = float(np.sum(xc ** 2))
        slope[g] = float(np.sum(xc * link[g, ok]) / sxx)
        se[g] = math.sqrt(float(np.sum(xc ** 2 * lvar[g, ok]))) / sxx
    return slope, se


def target_trends(shape: SurveyShape) -> np.ndarray | None:
    """The group trends a twin is calibrated to (link scale per time unit, mean 0): each
    group's slope shrunk towards the precision-weighted common slope by tau^2 / (tau^2 +
    se_g^2), tau^2 the between-group slope variance net of sampling (method of moments; the
    empirical-Bayes estimate of a random-slopes model), so that parallel trends measured with
    noise give a twin without group trends rather than one that copies the noise. None when
    the survey has no group trends to match (fewer than two groups over two waves, or no
    between-group variance beyond sampling)."""
    if shape.trends is None or shape.cell_level is None or shape.cell_var is None:
        return None
    slope, se = link_slopes(shape.cell_level, shape.cell_var, shape.times, shape.target)
    has = np.isfinite(slope)
    if has.sum() < 2:
        return None
    s2 = np.maximum(se[has] ** 2, 1e-12)
    common = float(np.sum(slope[has] / s2) / np.sum(1 / s2))
    tau2 = max(0.0, float(slope[has].var(ddof=1) - s2.mean()))
    if tau2 == 0.0:                     # parallel within noise: every group moves alike
        return None
    shrunk = np.zeros(len(slope))
    shrunk[has] = tau2 / (tau2 + s2) * (slope[has] - common)
    return shrunk - shrunk[has].mean() * has


def _respread(het: float, wanted: float, got: float) -> float:
    """The heterogeneity update: the effect spread grows about linearly with it, so multiply
    by wanted / got, damped to a factor in [1/3, 3] per round (0 stays reachable: a survey
    without spread drives it towards 0)."""
    if got <= 1e-6:
        return max(het, 0.05) * 3.0 if wanted > 1e-6 else het
    return float(het * np.clip(wanted / got, 1 / 3, 3.0))


def _twin_scenario(survey: SurveyScenario, shape: SurveyShape, levels: Levels) -> Scenario:
    from simlab.experiment.config import Scenario

    return Scenario.from_dict(twin_config(survey, shape, levels), f"twin of {survey.name}")


def _rescale(scale: float, wanted: float, got: float) -> float:
    """The effect-size update: R^2 grows about as s^2 for modest effects, so multiply s by
    sqrt(wanted / got), damped to a factor in [1/3, 3] per round."""
    if got <= 1e-6:
        return scale * 3.0
    return float(scale * np.clip(math.sqrt(max(wanted, 1e-6) / got), 1 / 3, 3.0))


def make_twin(survey: SurveyScenario, seed: int = 0, rounds: int = 4,
              heterogeneity: float = 0.5) -> dict[str, Any]:
    """A simulated scenario config (TOML-able dict) matched to ``survey``'s shape."""
    return fit_twin(survey, seed, rounds, heterogeneity).config


# --- writing --------------------------------------------------------------------------------------
def write_twin(path_in: str | Path, path_out: str | Path | None = None, seed: int = 0,
               rounds: int = 4, heterogeneity: float = 0.5) -> Path:
    """Load a survey scenario, calibrate its twin, write it as TOML; returns the path written
    (default: ``<name>_twin.toml`` next to the survey's file)."""
    survey = load_survey(path_in)
    return write_fit(survey, fit_twin(survey, seed, rounds, heterogeneity), path_out)


def write_fit(survey: SurveyScenario, fit: TwinFit, path_out: str | Path | None = None) -> Path:
    """Write a calibrated twin, with its calibration table as comments, and check it loads."""
    from simlab.experiment.config import load_scenario

    folder = survey.source.parent if survey.source is not None else Path.cwd()
    out = Path(path_out) if path_out is not None else \
        folder / f"{safe_name(fit.config['name'])}.toml"
    header = [f"Simulated twin of {_shown(survey.source, out) if survey.source else survey.name}"
              ", written by `simlab twin`.",
              "Regenerate rather than edit: the numbers below are calibrated to the survey.",
              "",
              "Groups are matched in sorted order: community g is survey group",
              *[f"  {g}: {name}" for g, name in enumerate(fit.shape.group_names)],
              "The regime shock 'group_levels' sets each community's intercept at tick 1 (it",
              "never switches, so it is the initial condition); each 'wave_*' shock moves",
              "every intercept before that wave, as the survey's prevalence moved.",
              "",
              *fit.summary().splitlines()]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dumps_toml(fit.config, header), encoding="utf-8")
    load_scenario(out)   # what was written must load as a valid scenario
    return out


def _shown(path: Path, out: Path) -> str:
    """``path`` relative to the twin's folder when it lies below it, else its file name."""
    try:
        return str(Path(path).resolve().relative_to(out.parent.resolve()))
    except ValueError:
        return Path(path).name


def load_survey(path: str | Path | SurveyScenario) -> SurveyScenario:
    from simlab.experiment.config import ScenarioError, load_scenario
    from simlab.experiment.survey_scenario import SurveyScenario

    sc = load_scenario(path)
    if not isinstance(sc, SurveyScenario):
        raise ScenarioError(f"{sc.source or path}: a twin is made from a survey scenario (a "
                            "file with a [data] section, e.g. scenarios/gss_happiness.toml); "
                            f"{sc.name!r} is already simulated")
    return sc


def dumps_toml(data: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """TOML text for a scenario dict: scalars and arrays, tables, arrays of tables (what the
    scenario schema uses); ``header`` lines become leading comments."""
    lines = [f"# {h}".rstrip() for h in header]
    if lines:
        lines.append("")
    _table(data, [], lines)
    return "\n".join(lines).rstrip() + "\n"


def _table(data: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in data.items()
               if v is not None and not _is_table(v) and not _is_table_array(v)}
    for key, value in scalars.items():
        lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in data.items():
        if _is_table(value) and value:
            sub = [*path, key]
            if any(not _is_table(v) for v in value.values()):
                lines += ["", f"[{'.'.join(map(_key, sub))}]"]
            _table(value, sub, lines)
    for key, value in data.items():
        if _is_table_array(value):
            for item in value:
                lines += ["", f"[[{'.'.join(map(_key, [*path, key]))}]]"]
                _table(item, [*path, key], lines)


def _is_table(v: Any) -> bool:
    return isinstance(v, Mapping)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(i, Mapping) for i in v)


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() \
        else json.dumps(key)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            raise ValueError(f"cannot write the non-finite number {v!r} to TOML")
        return repr(float(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        items = [_value(i) for i in v]
        text = "[" + ", ".join(items) + "]"
        return text if len(text) <= 90 else "[\n" + "".join(f"  {i},\n" for i in items) + "]"
    if v is None:
        raise ValueError("TOML has no null; leave the key out instead")
    raise TypeError(f"cannot write {type(v).__name__} {v!r} to TOML")


# --- survey and twin, side by side ---------------------------------------------------------------
@dataclass
class TwinRun:
    """The survey and its twin after both were run into ``db`` (``report.twin`` reports it)."""

    real: SurveyScenario
    sim: Scenario
    twin_path: Path
    db: Path
    summaries: list[Any] = field(default_factory=list)   # one SweepSummary per scenario


def run_twin(survey: str | Path | SurveyScenario, twin: str | Path | None = None, *,
             learners: Sequence[str] | None = None, seeds: int | Sequence[int] | None = None,
             db: str | Path = DEFAULT_DB, executor: str | None = None,
             jobs: int | None = None, quiet: bool = False, scheduler: str | None = None,
             device: str = "cpu") -> TwinRun:
    """Run the survey and its twin with the same learners and seeds (cells already in ``db``
    are skipped); the side-by-side report is ``simlab.report.twin.compare_twin``'s job.

    ``twin``: the twin's scenario file (default: ``<name>_twin.toml`` next to the survey's
    file, written first when missing). The oracle is added to the twin's learners (the
    ceiling there; it is left out of the rank agreement).
    """
    from simlab.experiment.config import ScenarioError, load_scenario
    from simlab.experiment.survey_scenario import SurveyScenario
    from simlab.experiment.sweep import run_sweep

    real = load_survey(survey)
    folder = real.source.parent if real.source is not None else Path.cwd()
    twin_path = Path(twin) if twin is not None else folder / f"{safe_name(real.name)}_twin.toml"
    if twin is None and not twin_path.exists():
        write_fit(real, fit_twin(real), twin_path)
    sim = load_scenario(twin_path)
    if isinstance(sim, SurveyScenario):
        raise ScenarioError(f"{twin_path}: the twin must be a simulated scenario, but it has a "
                            "[data] section; pass the file `simlab twin` wrote")
    names = list(learners) if learners is not None else list(real.evaluation.learners)
    sim_names = names if "oracle" in names else [*names, "oracle"]
    run = TwinRun(real, sim, twin_path, Path(db))
    for sc, who in ((real, names), (sim, sim_names)):
        run.summaries.append(run_sweep([sc], who, seeds, db, executor=executor, jobs=jobs,
                                       quiet=quiet, scheduler=scheduler, device=device))
    return run


__all__ = ["GroupTrends", "SurveyShape", "TwinFit", "TwinRun", "load_survey", "run_twin",
           "dumps_toml", "effect_spread", "fidelity_rows", "fit_twin", "group_trends",
           "link_slopes", "make_twin", "measure_twin", "pooled_r2", "survey_shape",
           "target_trends", "trend_flag", "trend_rows", "twin_config", "twin_features",
           "write_fit", "write_twin"]
