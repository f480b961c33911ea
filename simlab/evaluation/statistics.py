"""Statistics across seeds and paired comparisons of learners on identical streams.

**Seeds are the unit of inference.** A seed is one independently simulated society (and one
learner initialisation); the waves of one stream are autocorrelated, so they are not
independent replicates and enter only through each seed's mean.

**Intervals across seeds** (:func:`seed_interval`): Student t interval, mean +- t_{n-1} s/sqrt(n),
clipped to the quantity's range (``bounds``: a loss or a count is never below 0).

**Paired comparisons** (:func:`compare`). Every learner of a scenario sees the identical stream
for a given seed, so scores are paired. Per seed, the difference (learner - reference) of the
per-wave score is averaged over the waves both scored (the per-wave score is the metric at the
learner's own scored step count -- the one it predicts with, ``metrics.scored_step`` --
averaged over the shots grid: ``metrics.wave_curve``); the n per-seed
mean differences get a **paired t test** and a 95% t interval, and the **minimum detectable
difference** (two-sided alpha, 80% power: ``(t_{1-alpha/2} + t_{0.8}) s/sqrt(n)``) says how
large a difference this many seeds could have found. Comparisons against one reference are a
family: their p-values are **Holm-adjusted** (Holm 1979) before a verdict.

A verdict ("beats" / "worse") needs at least :data:`MIN_SEEDS` seeds and a Holm-adjusted
p < alpha; below that the outcome is "too few seeds". Measured by ``bench/verdict_calibration.py``
(per-seed effect + AR(1) wave noise, also heavy-tailed and contaminated per-seed effects): the
per-seed t test keeps its level (4-6% false verdicts, 94-96% coverage) from 2 seeds on, but its
80%-power detectable difference is 3.1 seed standard deviations at 3 seeds, 1.7 at 5 and 1.4 at
6, and an exact sign-flip test over seeds (which needs no normality) can reach p < 0.05 only
from 6 seeds (2/2^6 = 0.031). :data:`MIN_SEEDS` = 6 is where the verdict is both calibrated and
checkable without a shape assumption. The earlier Wilcoxon test over seed x wave cells and the
percentile bootstrap over 2-3 seeds gave 14-16% false verdicts on null data and are gone.

**Real surveys** (:func:`corrected_t_test`). On a survey scenario the seeds only re-split the
same respondents, so they are not independent replicates: there the same per-seed means get
the corrected resampled t test of Nadeau & Bengio (2003), its ratio n_query/n_support read from
the stream's ledger (:func:`survey_ratio`); ``Comparison.test`` says which test gave a verdict.
Its false-verdict rate on a null built from the survey is measured by
``bench/survey_verdict_calibration.py``.

**Naive baselines** (:data:`NAIVE`: persistence, group_mean) are baselines; every other learner
is also tested against each (:func:`naive_comparisons`) and flagged when worse.

The comparison metric is the excess loss over the oracle where the stream has one, else the
loss (lower is better for both; on the same responses their paired differences are equal).
Cells where either learner diverged (NaN) are left out of the seed's mean and counted
(``n_dropped``); a seed with no shared finite wave is left out.

The **best baseline** of a scenario is the one of the baselines run (:data:`BASELINES`:
scratch, finetune, partial_pooling, dynamic_mlm, the naive ones, and their ``cpd:`` wrappers)
with the lowest mean comparison metric; the oracle (where there is one) is the ceiling, never a
baseline, and neither is the ``floor`` reference (``REFERENCES``): both are shown, never
compared.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from simlab.evaluation.metrics import (Cube, SummaryOptions, metric_unit, run_cubes, scored_step,
                                      summarize)

#: the naive forecasts everyone must beat: a group's share at its last wave, its mean over
#: the revealed waves (``learners/naive.py``); a learner worse than one is flagged
NAIVE: tuple[str, ...] = ("persistence", "group_mean")
#: the methods survey methodologists already use, and the naive forecasts; ``cpd:NAME`` of one
#: of them is one too
BASELINES: tuple[str, ...] = ("scratch", "finetune", "partial_pooling", "dynamic_mlm", *NAIVE)
ORACLE = "oracle"
#: references, not methods: the oracle (true probabilities) and the attainable floor (the
#: exact Bayes predictor of a known simulated prior, ``learners/floor.py``); never a baseline,
#: never compared as a meta-learner
REFERENCES: tuple[str, ...] = (ORACLE, "floor")


def is_baseline(name: str) -> bool:
    """A baseline learner name (``cpd:`` wrappers of a baseline included)."""
    return name.removeprefix("cpd:") in BASELINES


def is_reference(name: str) -> bool:
    """A reference learner (``REFERENCES``): shown against the others, never compared."""
    return name in REFERENCES


REFERENCE = "partial_pooling"
#: seeds from which the paired test gives a verdict (see the module docstring)
MIN_SEEDS = 6
ALPHA = 0.05
POWER = 0.80
#: run-level summaries shown with intervals on the leaderboard, in this order
LEADERBOARD_COLUMNS: tuple[str, ...] = (
    "mean_excess_loss", "mean_loss", "regret", "auc_steps", "shots_to_target",
    "mean_accuracy", "mean_prevalence_error", "adapt_seconds_total", "meta_fit_seconds_total")
#: the range of each summary (an interval is clipped to it: a loss or a time is never < 0)
BOUNDS: dict[str, tuple[float, float]] = {
    "mean_loss": (0.0, math.inf), "auc_steps": (0.0, math.inf), "mean_brier": (0.0, 2.0),
    "shots_to_target": (0.0, math.inf), "mean_accuracy": (0.0, 1.0), "mean_ece": (0.0, 1.0),
    "mean_prevalence_error": (0.0, 1.0), "mean_prevalence_error_oracle": (0.0, 1.0),
    "adapt_seconds_total": (0.0, math.inf), "meta_fit_seconds_total": (0.0, math.inf),
    "diverged": (0.0, 1.0), "unrecovered": (0.0, math.inf), "recovered": (0.0, math.inf)}


@dataclass(frozen=True)
class Interval:
    """Mean and two-sided interval of a run-level summary across seeds (NaN when n < 2)."""

    mean: float
    lo: float
    hi: float
    n: int


def seed_interval(values: Iterable[float], level: float = 0.95,
                  bounds: tuple[float, float] = (-math.inf, math.inf),
                  ratio: float | None = None) -> Interval:
    """Student t interval of the mean over seeds, clipped to ``bounds`` (the quantity's range:
    a non-negative mean never gets a negative lower end); NaN values (diverged runs) are left
    out. ``ratio`` (a survey's n_query/n_support): widened as the corrected resampled t test
    widens it (:func:`corrected_t_test`), since a survey's seeds re-split one sample."""
    v = np.asarray(list(values), np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(v.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, 1)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    if ratio is not None:
        half *= math.sqrt(1.0 + n * ratio)
    lo, hi = bounds
    return Interval(mean, max(mean - half, lo), min(mean + half, hi), n)


# --------------------------------------------------------------------------- frames from a store

def registry_names(frame: pd.DataFrame, label: str = "learner") -> pd.Series:
    """Each row's registry name (who is a baseline, who is the oracle): the store's
    ``learner_name`` column where present, else its ``label`` column."""
    col = frame["learner_name"] if "learner_name" in frame else frame[label]
    return col.fillna(frame[label]).astype(str)


def label_names(frame: pd.DataFrame, label: str = "label") -> dict[str, str]:
    """``label`` column value -> registry name (see ``registry_names``)."""
    return dict(zip(frame[label].astype(str), registry_names(frame, label)))


def _labelled(runs: pd.DataFrame) -> pd.DataFrame:
    """Adds ``label`` and ``learner_name`` to a runs frame.

    ``label``: the ``learner`` column (the store's label, e.g. ``maml[inner_lr=0.1]`` for a grid
    point), suffixed with a short hash of the hyperparameters when one label was run with
    several settings in a scenario (so they are not pooled by mistake). ``learner_name``: the
    registry name (the store's ``learner_name`` column where present, else ``learner``), which
    decides who is a baseline or the oracle.
    """
    hp = runs["hyperparameters"].fillna("{}").astype(str)
    n_settings = hp.groupby([runs["scenario"], runs["learner"]]).transform("nunique")
    tag = hp.map(lambda s: hashlib.sha1(s.encode()).hexdigest()[:6])
    return runs.assign(label=runs["learner"].where(n_settings <= 1, runs["learner"] + "@" + tag),
                       learner_name=registry_names(runs))


IDENTITY = ["run_id", "scenario", "seed", "learner", "label", "learner_name", "status"]


def run_summaries(runs: pd.DataFrame, metrics: pd.DataFrame, shifts: pd.DataFrame | None = None,
                  options: SummaryOptions | None = None, stored: pd.DataFrame | None = None
                  ) -> pd.DataFrame:
    """One row per run (in ``runs``' order): scenario, seed, learner, label, learner_name,
    status + :func:`metrics.summarize`.

    Runs without records (failed) get only their identity columns. ``stored``: the store's
    ``summaries`` frame (run_id, name, value), which ``evaluate`` wrote from the same
    ``summarize`` of the same records and shifts (so pass it only when ``options`` are the
    sweep's): a run with records and stored rows takes them as they are; only a run with
    records and none is summarised here (reading 10,000 stored runs costs one pivot,
    recomputing them a minute).
    """
    runs = _labelled(runs)
    ident = runs[IDENTITY].reset_index(drop=True)
    recorded = set(pd.unique(metrics["run_id"])) if len(metrics) else set()
    wide = pd.DataFrame(index=pd.Index([], name="run_id"))
    if stored is not None and len(stored):
        st = stored[stored["run_id"].isin(recorded)].drop_duplicates(["run_id", "name"],
                                                                     keep="last")
        wide = st.pivot(index="run_id", columns="name", values="value")
    todo = [rid for rid in ident["run_id"] if rid in recorded and rid not in wide.index]
    if todo:
        by_run = dict(tuple(metrics[metrics["run_id"].isin(todo)].groupby("run_id")))
        by_stream = (dict(tuple(shifts.groupby(["scenario", "seed"])))
                     if shifts is not None and len(shifts) else {})
        stream = ident.set_index("run_id")
        fresh = pd.DataFrame([summarize(by_run[rid], by_stream.get(
            (stream.at[rid, "scenario"], stream.at[rid, "seed"])), options) for rid in todo],
            index=pd.Index(todo, name="run_id"))
        wide = fresh if wide.empty else pd.concat([wide, fresh])
    if wide.empty and not len(wide.columns):
        return ident
    wide.columns.name = None
    return ident.join(wide, on="run_id")


def leaderboard(summaries: pd.DataFrame, columns: Sequence[str] = LEADERBOARD_COLUMNS,
                level: float = 0.95, ratio: float | None = None) -> pd.DataFrame:
    """Per scenario and learner: run counts and, for each summary, mean and t interval over seeds
    (columns ``c``, ``c_lo``, ``c_hi``; ``ratio``: a survey's, see :func:`seed_interval`).
    Sorted by the first available column (lower first)."""
    present = [c for c in columns if c in summaries.columns]
    rows = []
    for (scenario, label), g in summaries.groupby(["scenario", "label"], sort=False):
        row: dict[str, object] = {"scenario": scenario, "label": label,
                                  "learner": g["learner"].iloc[0], "runs": len(g),
                                  "ok": int((g["status"] == "ok").sum()),
                                  "diverged": int((g["status"] == "diverged").sum()),
                                  "failed": int((~g["status"].isin(["ok", "diverged"])).sum())}
        for c in present:
            iv = seed_interval(g[c], level, BOUNDS.get(c, (-math.inf, math.inf)), ratio)
            row.update({c: iv.mean, f"{c}_lo": iv.lo, f"{c}_hi": iv.hi})
        rows.append(row)
    board = pd.DataFrame(rows)
    key = next((c for c in present if board[c].notna().any()), None)
    if key is not None:
        board = board.sort_values(["scenario", key], na_position="last", kind="stable")
    return board.reset_index(drop=True)


def comparison_metric(metrics: pd.DataFrame) -> str:
    """``excess_loss`` when the records hold it (oracle known), else ``loss``."""
    return "excess_loss" if (metrics["metric"] == "excess_loss").any() else "loss"


def wave_scores(runs: pd.DataFrame, metrics: pd.DataFrame, metric: str,
                cubes: dict[object, dict[str, Cube]] | None = None) -> pd.DataFrame:
    """Per-wave scores for paired tests: scenario, seed, label, learner_name, wave, value (one
    row per cell; runs by ascending id, waves ascending).

    Runs without records are skipped; a repeated (scenario, seed, label) keeps its last run.
    Each learner is scored at its own step count (``metrics.scored_step``). ``cubes``:
    :func:`metrics.run_cubes` of ``metrics`` holding ``metric`` and ``scored_steps`` (computed
    when None;
    pass it to share one pass over the records with the figures).
    """
    runs = _labelled(runs).drop_duplicates(["scenario", "seed", "label"], keep="last")
    cols = ["scenario", "seed", "label", "learner_name", "wave", "value"]
    if cubes is None:
        cubes = run_cubes(metrics[metrics["run_id"].isin(runs["run_id"])],
                          [metric, "scored_steps"])
    meta = runs.set_index("run_id")
    ids, waves, values = [], [], []
    for rid in sorted(set(cubes) & set(meta.index)):
        cube = cubes[rid].get(metric)
        if cube is None:
            continue
        ids.append([rid] * cube.waves.size)
        waves.append(cube.waves)
        # each learner at its own scored step count (= metrics.wave_curve)
        values.append(cube.at_steps(scored_step(cubes[rid])).mean(axis=1))
    if not ids:
        return pd.DataFrame(columns=cols)
    rid = [r for part in ids for r in part]
    who = meta.loc[rid, ["scenario", "seed", "label", "learner_name"]].reset_index(drop=True)
    return who.assign(wave=np.concatenate(waves), value=np.concatenate(values))[cols]


# --------------------------------------------------------------------------- paired comparison

def fmt(x: object, digits: int = 3) -> str:
    """The one number format of reports and verdicts: ``digits`` significant digits in
    positional notation (never an exponent, so 0.0000929 and 13.1 read alike), integers as
    integers, "–" for a missing value (None / NaN)."""
    if x is None or (isinstance(x, (float, np.floating)) and not math.isfinite(float(x))):
        return "–" if x is None or math.isnan(float(x)) else ("∞" if x > 0 else "-∞")
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}" if abs(int(x)) >= 10_000 else str(int(x))
    if isinstance(x, (float, np.floating)):
        v = float(x)
        if v == 0:
            return "0"
        if abs(v) >= 10 ** digits:
            return f"{v:,.0f}"
        return np.format_float_positional(v, precision=digits, unique=False, fractional=False,
                                          trim="-")
    return str(x)


def fmt_p(p: float) -> str:
    """A p-value: two significant digits, "< 0.001" below that, "–" when missing."""
    if not math.isfinite(p):
        return "–"
    return "< 0.001" if p < 0.001 else fmt(p, 2)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), NaN kept in place and not counted:
    sort ascending, multiply the i-th smallest by (m - i), take the running maximum, cap at 1."""
    p = np.asarray(p_values, np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if not ok.size:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    adj = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adj, 1.0)
    return out


def seed_means(d: np.ndarray) -> np.ndarray:
    """Per-seed mean of ``d [..., seeds, waves]`` over its finite cells (NaN: none finite)."""
    ok = np.isfinite(d)
    count = ok.sum(-1)
    return np.divide(np.where(ok, d, 0.0).sum(-1), count, out=np.full(count.shape, np.nan),
                     where=count > 0)


def seed_t_test(means: np.ndarray, alpha: float = ALPHA, power: float = POWER
                ) -> dict[str, np.ndarray]:
    """Paired t test of per-seed mean differences ``means [..., seeds]`` (NaN: seed missing),
    vectorised over the leading axes: n, mean, sd, lo, hi (the 1 - alpha t interval), p (two
    sided) and mdd (the difference detectable with ``power`` at level ``alpha``).

    NaN where n < 2; p is 1 (and the interval a point) when every seed's difference is equal.
    """
    m = np.asarray(means, np.float64)
    ok = np.isfinite(m)
    n = ok.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.divide(np.where(ok, m, 0.0).sum(-1), n, out=np.full(n.shape, np.nan),
                         where=n > 0)
        dev = np.where(ok, m - mean[..., None], 0.0)
        sd = np.sqrt(np.divide((dev ** 2).sum(-1), n - 1, out=np.full(n.shape, np.nan),
                               where=n > 1))
        df = np.where(n > 1, n - 1, 1)
        se = sd / np.sqrt(np.maximum(n, 1))
        q = stats.t.ppf(1 - alpha / 2, df)
        t = np.divide(mean, se, out=np.zeros(n.shape), where=se > 0)
        p = np.where(se > 0, 2 * stats.t.sf(np.abs(t), df), np.where(mean == 0, 1.0, 0.0))
        mdd = (q + stats.t.ppf(power, df)) * se
    bad = n < 2
    nan = np.full(n.shape, np.nan)
    return {"n": n, "mean": mean, "sd": np.where(bad, nan, sd),
            "lo": np.where(bad, nan, mean - q * se), "hi": np.where(bad, nan, mean + q * se),
            "p": np.where(bad, nan, p), "mdd": np.where(bad, nan, mdd)}


@dataclass(frozen=True)
class Comparison:
    """A learner against a reference on identical streams (see the module docstring)."""

    scenario: str
    learner: str
    reference: str
    learner_name: str     # registry names: who is a baseline, who is partial pooling
    reference_name: str
    metric: str
    n_pairs: int          # seed x wave cells both scored
    n_seeds: int          # seeds with at least one shared finite wave (the test's n)
    n_dropped: int        # cells left out (either learner diverged / missing)
    mean_learner: float
    mean_reference: float
    mean_diff: float      # mean over seeds of the per-seed mean difference
    ci_lo: float
    ci_hi: float
    p_value: float        # paired t test over seeds, unadjusted
    p_adjusted: float     # Holm-adjusted within the family of comparisons against reference
    n_family: int         # size of that family
    mdd: float            # minimum detectable difference (80% power, alpha)
    outcome: str          # "beats" | "worse" | "no difference" | "too few seeds" | "no data"
    reason: str           # why there is no verdict ("" when there is one)
    verdict: str
    test: str = "seed"    # "seed": paired t over seeds; "survey": corrected resampled t test

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _pct(diff: float, ref: float) -> str | None:
    return f"{abs(diff) / abs(ref):.0%}" if abs(ref) > 1e-12 and np.isfinite(ref) else None


def _verdict(c: dict[str, object], name: str) -> str:
    """One sentence in words, with the numbers that back it."""
    lrn, ref, diff = c["learner"], c["reference"], float(c["mean_diff"])
    if c["outcome"] == "no data":
        return f"No verdict for {lrn} against {ref}: {c['reason']}."
    pct = _pct(diff, float(c["mean_reference"]))
    size = (f"{pct} {'lower' if diff < 0 else 'higher'}" if pct else
            f"{fmt(abs(diff))} {'lower' if diff < 0 else 'higher'}")
    seeds = f"{c['n_seeds']} seed{'s' if c['n_seeds'] != 1 else ''}"
    if c.get("test") == "survey":
        seeds += " (re-splits of one survey: corrected resampled t test)"
    if c["outcome"] == "too few seeds":
        return (f"No verdict for {lrn} against {ref}: {c['reason']} (observed difference "
                f"{fmt(diff)} over {seeds}).")
    p = fmt_p(float(c["p_adjusted"]))
    p = p if p.startswith("<") else f"= {p}"
    adj = (f"Holm-adjusted over {c['n_family']} comparisons p {p}" if int(c["n_family"]) > 1
           else f"p {p}")
    # the losses' unit for a classification target (every shipped scenario; the report's
    # glossary says a regression target's are squared error); a prevalence error is a share
    metric = str(c.get("metric", ""))
    unit = metric_unit(metric, short=True) if metric != "prevalence_error" else ""
    nums = (f"difference {fmt(diff)}{' ' + unit if unit else ''}, 95% CI "
            f"[{fmt(c['ci_lo'])}, {fmt(c['ci_hi'])}] over "
            f"{seeds}, {adj}")
    head = f"{lrn}'s {name} is {size} than {ref}'s ({nums})"
    if c["outcome"] == "beats":
        return f"{head}; it beats {ref}."
    tail = f"; it does not beat {ref}"
    if c["reference_name"] == REFERENCE and not is_baseline(c["learner_name"]) \
            and not is_reference(c["learner_name"]):
        tail += ": it has not earned its place"
    if c["outcome"] == "worse":
        tail += " (it is significantly worse)"
    else:
        tail += (f" (this many seeds detect a difference of {fmt(c['mdd'])} or more with 80% "
                 "power)")
    return head + tail + "."


def _decide(fields: dict[str, object], p_adj: float, n_family: int, alpha: float,
            min_seeds: int) -> Comparison:
    """Outcome and verdict from the test's numbers and the family-adjusted p-value."""
    f = dict(fields, p_adjusted=float(p_adj), n_family=int(n_family))
    if f["outcome"] != "no data":
        if int(f["n_seeds"]) < min_seeds:
            f["outcome"] = "too few seeds"
            f["reason"] = (f"{f['n_seeds']} paired seed{'s' if f['n_seeds'] != 1 else ''}, "
                           f"and the paired test over seeds is calibrated from {min_seeds}; "
                           f"run at least {min_seeds} seeds")
        elif p_adj < alpha and float(f["mean_diff"]) < 0:
            f["outcome"], f["reason"] = "beats", ""
        elif p_adj < alpha and float(f["mean_diff"]) > 0:
            f["outcome"], f["reason"] = "worse", ""
        else:
            f["outcome"], f["reason"] = "no difference", ""
    return Comparison(**f, verdict=_verdict(f, str(f["metric"]).replace("_", " ")))


def _test(scores: pd.DataFrame, learner: str, reference: str, metric: str,
          alpha: float, ratio: float | None = None) -> dict[str, object]:
    """The paired t test's numbers (outcome "no data" with a reason when there are none);
    ``ratio`` (a survey's test/train ratio): the corrected resampled t test instead."""
    scenario = str(scores["scenario"].iloc[0]) if len(scores) else ""
    names = _names(scores)
    base: dict[str, object] = dict(
        scenario=scenario, learner=learner, reference=reference,
        learner_name=names.get(learner, learner), reference_name=names.get(reference, reference),
        metric=metric, n_pairs=0, n_seeds=0, n_dropped=0, mean_learner=math.nan,
        mean_reference=math.nan, mean_diff=math.nan, ci_lo=math.nan, ci_hi=math.nan,
        p_value=math.nan, mdd=math.nan, outcome="no data", reason="",
        test="seed" if ratio is None else "survey")
    mine = scores[scores["label"].isin([learner, reference])]
    have = {lab: set(g["seed"][g["value"].notna()]) for lab, g in mine.groupby("label")}
    for lab in (learner, reference):
        if not have.get(lab):
            base["reason"] = f"{lab} has no scored wave (its runs failed or were not run)"
            return base
    if not have[learner] & have[reference]:
        base["reason"] = (f"the two share no seed ({learner}: seeds "
                          f"{sorted(have[learner])}, {reference}: {sorted(have[reference])})")
        return base
    wide = mine.pivot_table(index=["seed", "wave"], columns="label", values="value",
                            aggfunc="mean", dropna=False)
    both = wide[learner].notna() & wide[reference].notna()
    if not both.any():
        base["reason"] = "the two share no scored wave on any common seed"
        return base
    diff = (wide[learner] - wide[reference]).unstack("wave")          # [seeds, waves]
    d = diff.to_numpy(np.float64)
    per_seed = seed_means(d)
    res = (seed_t_test(per_seed, alpha) if ratio is None
           else corrected_t_test(per_seed, ratio, alpha))
    keep = np.isfinite(per_seed)
    lrn_seed = seed_means(wide[learner].where(both).unstack("wave").to_numpy(np.float64))
    ref_seed = seed_means(wide[reference].where(both).unstack("wave").to_numpy(np.float64))
    return dict(base, n_pairs=int(both.sum()), n_seeds=int(keep.sum()),
                n_dropped=int((~both).sum()), mean_learner=float(np.nanmean(lrn_seed)),
                mean_reference=float(np.nanmean(ref_seed)), mean_diff=float(res["mean"]),
                ci_lo=float(res["lo"]), ci_hi=float(res["hi"]), p_value=float(res["p"]),
                mdd=float(res["mdd"]), outcome="tested")


def compare(scores: pd.DataFrame, learner: str, reference: str, metric: str = "excess_loss",
            *, alpha: float = ALPHA, min_seeds: int = MIN_SEEDS, n_boot: int | None = None,
            seed: int | None = None, ratio: float | None = None) -> Comparison:
    """Paired comparison of ``learner`` against ``reference`` on the seeds both scored (a
    family of one: no adjustment; :func:`compare_all` adjusts across a scenario).

    ``scores``: one scenario's :func:`wave_scores`. Outcome "beats" needs at least
    ``min_seeds`` paired seeds and p < ``alpha`` with a negative mean difference (lower is
    better). ``n_boot`` and ``seed`` are accepted for older callers and unused (the test is
    exact; nothing is resampled). ``ratio``: a real survey's test/train ratio
    (:func:`survey_ratio`), which selects the corrected resampled t test.
    """
    fields = _test(scores, learner, reference, metric, alpha, ratio)
    return _decide(fields, float(fields["p_value"]), 1, alpha, min_seeds)

def _names(scores: pd.DataFrame) -> dict[str, str]:
    """label -> registry name (labels are their own name in frames without the column)."""
    if "learner_name" not in scores:
        return {str(lab): str(lab) for lab in scores["label"].unique()}
    return scores.groupby("label")["learner_name"].first().astype(str).to_dict()


def best_baseline(scores: pd.DataFrame, names: Sequence[str] | None = None) -> str | None:
    """The label with the lowest mean score among learners named in ``names`` (default: the
    baselines, ``is_baseline``), if any was run."""
    lab_names = _names(scores)
    mine = [lab for lab, n in lab_names.items()
            if (is_baseline(n) if names is None else n in names)]
    means = scores[scores["label"].isin(mine)].groupby("label")["value"].mean().dropna()
    return str(means.idxmin()) if len(means) else None


def compare_all(scores: pd.DataFrame, metric: str = "excess_loss", *, alpha: float = ALPHA,
                min_seeds: int = MIN_SEEDS, n_boot: int | None = None,
                seed: int | None = None, ratio: float | None = None) -> list[Comparison]:
    """Every non-baseline, non-oracle learner of every scenario against the best baseline and
    against partial pooling (its best setting when several were run; once when they are the
    same). The comparisons against one reference in one scenario are a family: their p-values
    are Holm-adjusted together. ``n_boot``/``seed``: unused, kept for older callers.
    ``ratio``: a real survey's test/train ratio (the corrected resampled t test)."""
    out: list[Comparison] = []
    for _, sc in scores.groupby("scenario", sort=False):
        refs = [r for r in dict.fromkeys([best_baseline(sc), best_baseline(sc, (REFERENCE,))])
                if r is not None]
        learners = [lab for lab, n in _names(sc).items()
                    if not is_baseline(n) and not is_reference(n)]
        order = {lab: i for i, lab in enumerate(sorted(
            learners, key=list(sc["label"].unique()).index))}
        # one family per reference (:func:`_families`), listed learner by learner
        out += sorted(_families(sc, learners, refs, metric, alpha, min_seeds, ratio),
                      key=lambda c: order[c.learner])
    return out


def overall_verdict(comparisons: Sequence[Comparison], scores: pd.DataFrame,
                    failed: Sequence[str] = (), baselines: Sequence[Comparison] = ()) -> str:
    """The scenario-level sentence: does any meta-learner beat partial pooling? ``failed``:
    labels or registry names of learners whose every run failed (stated, never a crash)."""
    names = _names(scores)
    if REFERENCE not in set(names.values()):
        if REFERENCE in failed or any(f.startswith(REFERENCE) for f in failed):
            return ("No verdict: partial pooling, the reference every meta-learner must beat, "
                    "failed on every seed (see the failed runs), so nothing can be compared "
                    "with it.")
        return ("No verdict: partial pooling was not run in this scenario, so no meta-learner "
                "can be shown to have earned its place; add partial_pooling to the learners.")
    vs_pp = [c for c in comparisons if c.reference_name == REFERENCE]
    if not vs_pp:
        return "No meta-learner was run in this scenario; only baselines are compared."
    judged = [c for c in vs_pp if c.outcome in ("beats", "worse", "no difference")]
    if not judged:
        reasons = sorted({c.reason for c in vs_pp})
        return f"No verdict: {'; '.join(reasons)}."
    winners = [c.learner for c in judged if c.outcome == "beats"]
    worse = [c.learner for c in judged if c.outcome == "worse"]
    unjudged = [c.learner for c in vs_pp if c not in judged]
    best = best_baseline(scores)
    seeds = min(c.n_seeds for c in judged)
    tail = (f" No verdict for {', '.join(unjudged)} (too few shared seeds or no data)."
            if unjudged else "")
    best_txt = _best_baseline_sentence(comparisons, best, names, baselines)
    if not winners:
        worse_txt = (f"; {', '.join(worse)} {'is' if len(worse) == 1 else 'are'} significantly "
                     "worse" if worse else "")
        return (f"No meta-learner beats partial pooling ({len(judged)} compared over "
                f"{seeds}+ seeds, Holm-adjusted): none has earned its place on this "
                f"scenario{worse_txt}.{best_txt}{tail}")
    return (f"{', '.join(winners)} beat{'s' if len(winners) == 1 else ''} partial pooling "
            f"({len(winners)} of {len(judged)} meta-learners, over {seeds}+ seeds, "
            f"Holm-adjusted).{best_txt}{tail}")


def _best_baseline_sentence(comparisons: Sequence[Comparison], best: str | None,
                            names: dict[str, str], baselines: Sequence[Comparison] = ()) -> str:
    """Where the best baseline is not partial pooling, what the meta-learners did against it
    (it is then the stronger reference)."""
    if best is None or names.get(best) == REFERENCE:
        return ""
    best_lead = ""        # the baselines compared with each other (baseline_comparisons)
    for c in baselines:   # best vs partial pooling, or partial pooling vs best (sign flipped)
        flip = c.learner_name == REFERENCE and c.reference == best
        if c.outcome == "no data" or not (flip or (c.learner == best
                                                   and c.reference_name == REFERENCE)):
            continue
        outcome = {"beats": "worse", "worse": "beats"}.get(c.outcome, c.outcome) if flip \
            else c.outcome
        sure = {"beats": "a significant lead", "no difference": "a lead within the noise",
                "worse": "no lead"}.get(outcome, f"no verdict: {outcome}")
        best_lead = (f" (its difference from partial pooling: "
                     f"{fmt(-c.mean_diff if flip else c.mean_diff)}, p {fmt_p(c.p_adjusted)}: "
                     f"{sure})")
        break
    vs = [c for c in comparisons if c.reference == best
          and c.outcome in ("beats", "worse", "no difference")]
    if not vs:
        return f" The best baseline here is {best}{best_lead}."
    beat = [c.learner for c in vs if c.outcome == "beats"]
    worse = [c.learner for c in vs if c.outcome == "worse"]
    said = (f"{', '.join(beat)} beat{'s' if len(beat) == 1 else ''} it" if beat
            else "no meta-learner beats it")
    if worse:
        said += f"; {', '.join(worse)} {'is' if len(worse) == 1 else 'are'} significantly worse"
    return f" The best baseline here is {best}{best_lead}, the stronger reference: {said}."


# --------------------------------------------------------------------------- recovery per shift

def _shift_cols(summaries: pd.DataFrame, key: str) -> list[str]:
    cols = [c for c in summaries.columns if c.startswith(f"{key}[")]
    return sorted(cols, key=lambda c: int(c[len(key) + 1:-1]))


def censored_median(times: np.ndarray, censored: np.ndarray) -> tuple[float, bool]:
    """Median waves to recover over seeds with censored values ranked above every observed one
    (each is "more than its horizon", and no observed recovery can exceed its horizon).
    Returns (median, False), or (NaN, True) when the median falls on a censored value: more
    than half of the seeds did not recover, so the median is only known to exceed the horizon."""
    key = np.sort(np.where(censored, np.inf, times))
    if not key.size:
        return math.nan, False
    mid = key[(key.size - 1) // 2: key.size // 2 + 1]
    return (math.nan, True) if np.isinf(mid).any() else (float(mid.mean()), False)


def shift_effects(summaries: pd.DataFrame) -> pd.DataFrame:
    """One row per shift i of a scenario: ``ceiling_change`` (mean over runs of the shift's
    effect on the ceiling's loss), ``excess_jump`` (median over learners, oracle excluded, of
    their mean peak-minus-before excess loss), ``line`` (the recovery line's mean), ``scored``
    (someone was scored before it hit) and ``negligible``: both effects within the recovery
    line, i.e. the shift moved neither the ceiling nor the learners by more than the tolerance
    that defines "recovered". Without an oracle no shift is marked negligible."""
    rows = []
    learners = summaries[summaries["learner_name"] != ORACLE]
    for col in _shift_cols(summaries, "recovery_censored"):
        i = int(col[len("recovery_censored["):-1])
        row: dict[str, object] = {"shift": i, "scored": bool(summaries[col].notna().any()),
                                  "ceiling_change": math.nan, "excess_jump": math.nan,
                                  "line": math.nan, "negligible": False}
        if f"ceiling_change[{i}]" in summaries:
            jump = learners.groupby("label")[f"excess_jump[{i}]"].mean()
            row.update(ceiling_change=float(summaries[f"ceiling_change[{i}]"].mean()),
                       excess_jump=float(jump.median()) if jump.notna().any() else math.nan,
                       line=float(summaries[f"recovery_line[{i}]"].mean()))
            row["negligible"] = bool(row["scored"] and row["ceiling_change"] <= row["line"]
                                     and row["excess_jump"] <= row["line"])
        rows.append(row)
    return pd.DataFrame(rows, columns=["shift", "scored", "ceiling_change", "excess_jump",
                                       "line", "negligible"])


RECOVERY_COLUMNS = ["shift", "label", "learner_name", "seeds", "recovered", "censored",
                    "horizon", "median", "median_censored", "restricted_mean",
                    "restricted_censored", "peak_excess"]


def _recovery_row(times: np.ndarray, cens: np.ndarray, horizon: np.ndarray) -> dict[str, object]:
    """Counts, censored median and restricted mean (min(T, horizon): a lower bound of the mean
    when some seed is censored) of one learner's recoveries."""
    ok = np.isfinite(cens)
    t, c, h = times[ok], cens[ok] == 1, horizon[ok]
    med, med_c = censored_median(t, c)
    restricted = np.where(c, h, t)
    return {"seeds": int(ok.sum()), "recovered": int((~c).sum()), "censored": int(c.sum()),
            "horizon": int(h.min()) if h.size else 0, "median": med, "median_censored": med_c,
            "restricted_mean": float(restricted.mean()) if restricted.size else math.nan,
            "restricted_censored": bool(c.any())}


def recovery_by_shift(summaries: pd.DataFrame) -> pd.DataFrame:
    """Per shift and learner (the oracle excluded): how many seeds recovered / were censored
    ("not recovered within ``horizon`` waves"), the censored median and the restricted mean of
    the waves to recover, and the mean peak excess. Censored seeds are counted, never dropped."""
    rows = []
    learners = summaries[summaries["learner_name"] != ORACLE]
    for col in _shift_cols(summaries, "recovery_censored"):
        i = int(col[len("recovery_censored["):-1])
        for lab, g in learners.groupby("label", sort=False):
            row = _recovery_row(g[f"recovery_waves[{i}]"].to_numpy(np.float64),
                                g[col].to_numpy(np.float64),
                                g[f"recovery_horizon[{i}]"].to_numpy(np.float64))
            peak = g.get(f"peak_excess[{i}]")
            rows.append({"shift": i, "label": lab, "learner_name": g["learner_name"].iloc[0],
                         **row, "peak_excess": float(peak.mean()) if peak is not None
                         else math.nan})
    return pd.DataFrame(rows, columns=RECOVERY_COLUMNS)


def recovery_overall(summaries: pd.DataFrame, effects: pd.DataFrame) -> pd.DataFrame:
    """Per learner, pooled over the (shift, seed) pairs of the shifts that count (scored and
    not negligible): the same columns as :func:`recovery_by_shift` without ``shift``."""
    keep = effects.loc[effects["scored"] & ~effects["negligible"], "shift"].astype(int).tolist()
    rows = []
    learners = summaries[summaries["learner_name"] != ORACLE]
    for lab, g in learners.groupby("label", sort=False):
        if not keep:
            continue
        stack = [g[f"{k}[{i}]"].to_numpy(np.float64) for k in
                 ("recovery_waves", "recovery_censored", "recovery_horizon") for i in keep]
        n = len(keep)
        times, cens, hor = (np.concatenate(stack[j * n:(j + 1) * n]) for j in range(3))
        rows.append({"label": lab, "learner_name": g["learner_name"].iloc[0],
                     **_recovery_row(times, cens, hor), "shifts": n})
    return pd.DataFrame(rows)


def parse_hyperparameters(text: str | None) -> dict[str, object]:
    """The runs frame's JSON hyperparameters as a dict ({} when empty or not JSON)."""
    try:
        value = json.loads(text) if text else {}
    except (TypeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------- real surveys

#: what the report says about each test (which was used, and why)
TEST_TEXT = {
    "seed": "paired t test over seeds: each seed is an independently simulated society, so "
            "per-seed mean differences are independent replicates",
    "survey": "corrected resampled t test over seeds (Nadeau & Bengio 2003): on a real survey a "
              "seed only re-splits the same respondents into support and query sets, so seeds "
              "are not independent; the variance of the per-seed mean differences is "
              "inflated by (1/J + n_query/n_support) before the t test"}


def corrected_t_test(means: np.ndarray, ratio: float, alpha: float = ALPHA,
                     power: float = POWER) -> dict[str, np.ndarray]:
    """The corrected resampled t test (Nadeau & Bengio 2003, "Inference for the
    generalization error", Machine Learning 52; Bouckaert & Frank 2004) of per-seed mean
    differences ``means [..., J]`` when the J seeds are random re-splits of ONE data set.

    Why this test on a survey: the seeds of a survey scenario draw different support / query
    partitions of the same respondents (and different learner initialisations), so two seeds'
    differences are positively correlated through the shared respondents and the plain t test
    over seeds understates the variance (its tight intervals say nothing about sampling from
    the population). Nadeau & Bengio model that correlation as rho = n_test / (n_train +
    n_test) and replace the variance of the mean, s^2/J, by ``(1/J + ratio) s^2``, ratio =
    n_test / n_train, with J - 1 degrees of freedom. A cluster bootstrap over groups would
    need per-group scores, which the store does not keep; the corrected test needs only the
    per-seed means the seed test already uses, so both tests read the same numbers.

    Returns the fields of :func:`seed_t_test` (n, mean, sd, lo, hi, p, mdd)."""
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio >= 0):
        raise ValueError(f"corrected_t_test: ratio = {ratio!r} must be a finite number >= 0 "
                         "(n_test / n_train of one re-split)")
    res = seed_t_test(means, alpha, power)
    n = res["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        inflate = np.sqrt(1.0 + np.asarray(n, np.float64) * float(ratio))   # se' / se
        df = np.where(n > 1, n - 1, 1)
        se = res["sd"] * inflate / np.sqrt(np.maximum(n, 1))
        q = stats.t.ppf(1 - alpha / 2, df)
        t = np.divide(res["mean"], se, out=np.zeros(np.shape(n)), where=se > 0)
        p = np.where(se > 0, 2 * stats.t.sf(np.abs(t), df), res["p"])
        mdd = (q + stats.t.ppf(power, df)) * se
    bad = n < 2
    nan = np.full(np.shape(n), np.nan)
    return {**res, "lo": np.where(bad, nan, res["mean"] - q * se),
            "hi": np.where(bad, nan, res["mean"] + q * se),
            "p": np.where(bad, nan, p), "mdd": np.where(bad, nan, mdd)}


def survey_ratio(ledger: dict | None) -> float | None:
    """n_test / n_train of one re-split of a survey stream, from its data ledger
    (``meta["ledger"]``, kept in the stored config): the mean query size of a scored cell over
    its support size K. Only the scored cells are re-split from seed to seed (revealed waves
    reach every learner whole, the same on every seed), so this is the ratio of the part that
    is resampled. None without a ledger (not a survey)."""
    if not isinstance(ledger, dict) or "total" not in ledger or not ledger.get("support"):
        return None
    tasks, used = ledger["total"].get("tasks", 0), ledger["total"].get("used", 0)
    k = float(ledger["support"])
    if not tasks:
        return None
    return max(used / tasks - k, 0.0) / k


# --------------------------------------------------------------------------- naive baselines

def naive_comparisons(scores: pd.DataFrame, metric: str = "excess_loss", *,
                      alpha: float = ALPHA, min_seeds: int = MIN_SEEDS,
                      ratio: float | None = None) -> list[Comparison]:
    """Every learner but the naive ones and the references (the oracle, the floor: never
    compared) against each naive baseline run (:data:`NAIVE`), baselines included (a broken
    pooled fine-tune must show), by the same paired test as :func:`compare_all`;
    Holm-adjusted within each naive reference's family."""
    out: list[Comparison] = []
    for _, sc in scores.groupby("scenario", sort=False):
        names = _names(sc)
        refs = [lab for lab, n in names.items() if n in NAIVE]
        others = [lab for lab, n in names.items() if n not in NAIVE and not is_reference(n)]
        out += _families(sc, others, refs, metric, alpha, min_seeds, ratio)
    return out


def baseline_comparisons(scores: pd.DataFrame, metric: str = "excess_loss", *,
                         alpha: float = ALPHA, min_seeds: int = MIN_SEEDS,
                         ratio: float | None = None) -> list[Comparison]:
    """The baselines against partial pooling (the reference): is a baseline's lead over it,
    or the reference's over a baseline, more than noise? Holm-adjusted as one family."""
    out: list[Comparison] = []
    for _, sc in scores.groupby("scenario", sort=False):
        names = _names(sc)
        ref = best_baseline(sc, (REFERENCE,))
        if ref is None:
            continue
        others = [lab for lab, n in names.items() if is_baseline(n) and n not in NAIVE
                  and lab != ref]
        out += _families(sc, others, [ref], metric, alpha, min_seeds, ratio)
    return out


def _families(sc: pd.DataFrame, learners: list[str], refs: Sequence[str], metric: str,
              alpha: float, min_seeds: int, ratio: float | None) -> list[Comparison]:
    """``learners`` against each of ``refs`` (one family per reference, Holm-adjusted)."""
    learners = sorted(learners, key=list(sc["label"].unique()).index)
    out = []
    for ref in refs:
        tests = [_test(sc, lab, ref, metric, alpha, ratio) for lab in learners]
        p = [float(t["p_value"]) if t["outcome"] != "no data"
             and int(t["n_seeds"]) >= min_seeds else math.nan for t in tests]
        adj, family = holm(p), max(int(np.isfinite(p).sum()), 1)
        for t, pa in zip(tests, adj):
            out.append(_decide(t, float(pa) if math.isfinite(pa) else float(t["p_value"]),
                               family, alpha, min_seeds))
    return out


def naive_flags(comparisons: Sequence[Comparison]) -> dict[str, list[str]]:
    """label -> ["worse than persistence", ...]: the naive baselines a learner is
    significantly worse than (Holm-adjusted paired test)."""
    flags: dict[str, list[str]] = {}
    for c in comparisons:
        if c.reference_name in NAIVE and c.outcome == "worse":
            flags.setdefault(c.learner, []).append(f"worse than {c.reference}")
    return flags


NAIVE_TEXT = {"persistence": "each group's share at its last revealed wave",
              "group_mean": "each group's mean over the revealed waves, updated by its K "
                            "support respondents"}


def naive_sentence(comparisons: Sequence[Comparison]) -> str:
    """One sentence naming the learners worse than a naive baseline ("" when none is, or
    none was run)."""
    by_ref: dict[str, list[str]] = {}
    refs: dict[str, str] = {}
    for c in comparisons:
        if c.reference_name in NAIVE:
            refs[c.reference] = c.reference_name
            if c.outcome == "worse":
                by_ref.setdefault(c.reference, []).append(c.learner)
    if not refs:
        return ""
    if not by_ref:
        return (" No learner is significantly worse than the naive baseline"
                f"{'s' if len(refs) > 1 else ''} ({', '.join(refs)}).")
    parts = [f"{', '.join(who)} {'is' if len(who) == 1 else 'are'} significantly worse than "
             f"{ref} ({NAIVE_TEXT.get(refs[ref], 'a naive baseline')})"
             for ref, who in by_ref.items()]
    return " Naive baselines: " + "; ".join(parts) + "."
