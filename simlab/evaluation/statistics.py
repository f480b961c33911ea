"""Statistics across seeds and paired comparisons of learners on identical streams.

**Intervals across seeds** (:func:`seed_interval`): Student t interval, mean +- t_{n-1} s/sqrt(n).
Seeds are few (3-10) and the t interval is exact for normal run-level summaries; a percentile
bootstrap over so few values is known to be too narrow (Efron & Tibshirani 1993, ch. 13).

**Paired comparisons** (:func:`compare`). Every learner of a scenario sees the identical stream
for a given seed, so scores are paired. **Unit of pairing: one (seed, wave) cell** -- the
learner's per-wave score and the reference's on the same respondents; the per-wave score is
the metric at the largest inner-step count of the grid (each learner fully adapted), averaged
over the shots grid (``metrics.wave_curve``). The comparison metric is the excess loss over
the oracle where the stream has one, else the loss (lower is better for both).

* Mean difference (learner - reference) with a 95% **two-stage bootstrap** interval for
  hierarchical data (Davison & Hinkley 1997, sec. 3.8): resample seeds with replacement, then
  within each drawn seed resample its wave series with the **circular block bootstrap**
  (Politis & Romano 1992) with block length ``round(n_waves^(1/3))`` (Hall, Horowitz & Jing
  1995), so that the autocorrelation of consecutive waves is kept. Percentile interval.
* **Wilcoxon signed-rank test** (scipy, two-sided) on the seed x wave differences. It treats
  the cells as independent, which consecutive waves are not, so its p-value is optimistic; a
  verdict therefore needs *both* p < alpha *and* a bootstrap interval that excludes 0.
* Cells where either learner diverged (NaN) are dropped and counted (``n_dropped``); the
  leaderboard reports divergence separately.

The **best baseline** of a scenario is the one of scratch, finetune, partial_pooling with the
lowest mean comparison metric; the oracle is the ceiling, never a baseline to beat.
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

from simlab.evaluation.metrics import SummaryOptions, summarize, wave_curve

BASELINES: tuple[str, ...] = ("scratch", "finetune", "partial_pooling")
ORACLE = "oracle"
REFERENCE = "partial_pooling"
#: run-level summaries shown with intervals on the leaderboard, in this order
LEADERBOARD_COLUMNS: tuple[str, ...] = (
    "mean_excess_loss", "mean_loss", "regret", "auc_steps", "shots_to_target",
    "mean_recovery_waves", "mean_accuracy", "mean_prevalence_error", "adapt_seconds_total",
    "meta_fit_seconds_total")


@dataclass(frozen=True)
class Interval:
    """Mean and two-sided interval of a run-level summary across seeds (NaN when n < 2)."""

    mean: float
    lo: float
    hi: float
    n: int


def seed_interval(values: Iterable[float], level: float = 0.95) -> Interval:
    """Student t interval of the mean over seeds; NaN values (diverged runs) are left out."""
    v = np.asarray(list(values), np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(v.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, 1)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n)


# --------------------------------------------------------------------------- frames from a store

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
    name = runs["learner_name"].fillna(runs["learner"]) if "learner_name" in runs else \
        runs["learner"]
    return runs.assign(label=runs["learner"].where(n_settings <= 1, runs["learner"] + "@" + tag),
                       learner_name=name.astype(str))


def run_summaries(runs: pd.DataFrame, metrics: pd.DataFrame, shifts: pd.DataFrame | None = None,
                  options: SummaryOptions | None = None) -> pd.DataFrame:
    """One row per run: scenario, seed, learner, label, learner_name, status +
    :func:`metrics.summarize`.

    Runs without records (failed) get only their identity columns.
    """
    runs = _labelled(runs)
    by_run = dict(tuple(metrics.groupby("run_id"))) if len(metrics) else {}
    by_stream = (dict(tuple(shifts.groupby(["scenario", "seed"])))
                 if shifts is not None and len(shifts) else {})
    rows = []
    for r in runs.itertuples(index=False):
        row = {"run_id": r.run_id, "scenario": r.scenario, "seed": r.seed, "learner": r.learner,
               "label": r.label, "learner_name": r.learner_name, "status": r.status}
        rec = by_run.get(r.run_id)
        if rec is not None and len(rec):
            row.update(summarize(rec, by_stream.get((r.scenario, r.seed)), options))
        rows.append(row)
    return pd.DataFrame(rows)


def leaderboard(summaries: pd.DataFrame, columns: Sequence[str] = LEADERBOARD_COLUMNS,
                level: float = 0.95) -> pd.DataFrame:
    """Per scenario and learner: run counts and, for each summary, mean and t interval over seeds
    (columns ``c``, ``c_lo``, ``c_hi``). Sorted by the first available column (lower first)."""
    present = [c for c in columns if c in summaries.columns]
    rows = []
    for (scenario, label), g in summaries.groupby(["scenario", "label"], sort=False):
        row: dict[str, object] = {"scenario": scenario, "label": label,
                                  "learner": g["learner"].iloc[0], "runs": len(g),
                                  "ok": int((g["status"] == "ok").sum()),
                                  "diverged": int((g["status"] == "diverged").sum()),
                                  "failed": int((~g["status"].isin(["ok", "diverged"])).sum())}
        for c in present:
            iv = seed_interval(g[c], level)
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


def wave_scores(runs: pd.DataFrame, metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per-wave scores for paired tests: scenario, seed, label, learner_name, wave, value (one
    row per cell).

    Runs without records are skipped; a repeated (scenario, seed, label) keeps its last run.
    """
    runs = _labelled(runs).drop_duplicates(["scenario", "seed", "label"], keep="last")
    parts = []
    for run_id, rec in metrics[metrics["run_id"].isin(runs["run_id"])].groupby("run_id"):
        curve = wave_curve(rec, metric)
        if curve.empty:
            continue
        r = runs.loc[runs["run_id"] == run_id].iloc[0]
        parts.append(pd.DataFrame({"scenario": r["scenario"], "seed": r["seed"],
                                   "label": r["label"], "learner_name": r["learner_name"],
                                   "wave": curve.index.to_numpy(),
                                   "value": curve.to_numpy()}))
    cols = ["scenario", "seed", "label", "learner_name", "wave", "value"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


# --------------------------------------------------------------------------- paired comparison

@dataclass(frozen=True)
class Comparison:
    """A learner against a reference on identical streams (see the module docstring)."""

    scenario: str
    learner: str
    reference: str
    learner_name: str     # registry names: who is a baseline, who is partial pooling
    reference_name: str
    metric: str
    n_pairs: int
    n_seeds: int
    n_dropped: int
    mean_learner: float
    mean_reference: float
    mean_diff: float
    ci_lo: float
    ci_hi: float
    p_value: float
    outcome: str          # "beats" | "worse" | "no difference" | "no data"
    verdict: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def block_bootstrap_means(d: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Two-stage bootstrap replicates of the mean of ``d [seeds, waves]`` (NaN = missing cell):
    seeds with replacement, then circular blocks of waves within each drawn seed."""
    n_s, n_w = d.shape
    length = max(1, round(n_w ** (1 / 3)))
    n_blocks = math.ceil(n_w / length)
    seeds = rng.integers(0, n_s, (n_boot, n_s))
    starts = rng.integers(0, n_w, (n_boot, n_s, n_blocks))
    waves = ((starts[..., None] + np.arange(length)) % n_w).reshape(n_boot, n_s, -1)[..., :n_w]
    sample = d[seeds[..., None], waves].reshape(n_boot, -1)
    ok = np.isfinite(sample)
    count = ok.sum(1)
    return np.divide(np.where(ok, sample, 0.0).sum(1), count,
                     out=np.full(n_boot, np.nan), where=count > 0)


def _pct(diff: float, ref: float) -> str | None:
    return f"{abs(diff) / abs(ref):.0%}" if abs(ref) > 1e-12 and np.isfinite(ref) else None


def _verdict(c: dict[str, object], name: str) -> str:
    """One sentence in words, with the numbers that back it."""
    lrn, ref, diff = c["learner"], c["reference"], float(c["mean_diff"])
    if c["outcome"] == "no data":
        return f"{lrn} and {ref} share no scored seed x wave cells; no comparison is possible."
    pct = _pct(diff, float(c["mean_reference"]))
    size = f"{pct} {'lower' if diff < 0 else 'higher'}" if pct else (
        f"{abs(diff):.3g} {'lower' if diff < 0 else 'higher'}")
    nums = (f"mean difference {diff:+.3g}, 95% CI [{c['ci_lo']:+.3g}, {c['ci_hi']:+.3g}], "
            f"Wilcoxon p = {c['p_value']:.2g}, {c['n_pairs']} seed x wave pairs over "
            f"{c['n_seeds']} seed{'s' if c['n_seeds'] != 1 else ''}")
    head = f"{lrn}'s {name} is {size} than {ref}'s ({nums})"
    if c["outcome"] == "beats":
        return f"{head}; it beats {ref}."
    tail = f"; it does not beat {ref}"
    if c["reference_name"] == REFERENCE and c["learner_name"] not in BASELINES + (ORACLE,):
        tail += ": it has not earned its place"
    if c["outcome"] == "worse":
        tail += " (it is significantly worse)"
    return head + tail + "."


def compare(scores: pd.DataFrame, learner: str, reference: str, metric: str = "excess_loss",
            *, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> Comparison:
    """Paired comparison of ``learner`` against ``reference`` on the cells both scored.

    ``scores``: one scenario's :func:`wave_scores`. Outcome "beats" needs the bootstrap interval
    of the mean difference below 0 *and* Wilcoxon p < ``alpha`` (lower is better).
    """
    scenario = str(scores["scenario"].iloc[0]) if len(scores) else ""
    wide = scores[scores["label"].isin([learner, reference])].pivot_table(
        index=["seed", "wave"], columns="label", values="value", aggfunc="mean", dropna=False)
    names = _names(scores)
    base = dict(scenario=scenario, learner=learner, reference=reference,
                learner_name=names.get(learner, learner),
                reference_name=names.get(reference, reference), metric=metric)
    if learner not in wide.columns or reference not in wide.columns:
        empty = dict(base, n_pairs=0, n_seeds=0, n_dropped=0, mean_learner=math.nan,
                     mean_reference=math.nan, mean_diff=math.nan, ci_lo=math.nan,
                     ci_hi=math.nan, p_value=math.nan, outcome="no data")
        return Comparison(**empty, verdict=_verdict(empty, metric.replace("_", " ")))
    diff = (wide[learner] - wide[reference]).rename("d")
    ok = diff.notna()
    d = diff.unstack("wave").to_numpy(np.float64)
    cells = diff[ok].to_numpy()
    rng = np.random.default_rng(seed)
    if cells.size:
        boot = block_bootstrap_means(d, n_boot, rng)
        lo, hi = (float(x) for x in np.nanpercentile(boot, [100 * alpha / 2,
                                                             100 * (1 - alpha / 2)]))
        p = float(stats.wilcoxon(cells).pvalue) if np.any(cells != 0) else 1.0
    else:
        lo = hi = p = math.nan
    mean_diff = float(cells.mean()) if cells.size else math.nan
    if not cells.size:
        outcome = "no data"
    elif hi < 0 and p < alpha:
        outcome = "beats"
    elif lo > 0 and p < alpha:
        outcome = "worse"
    else:
        outcome = "no difference"
    fields = dict(base, n_pairs=int(cells.size),
                  n_seeds=int(diff[ok].index.get_level_values("seed").nunique()),
                  n_dropped=int((~ok).sum()),
                  mean_learner=float(wide.loc[ok, learner].mean()) if cells.size else math.nan,
                  mean_reference=float(wide.loc[ok, reference].mean()) if cells.size
                  else math.nan,
                  mean_diff=mean_diff, ci_lo=lo, ci_hi=hi, p_value=p, outcome=outcome)
    return Comparison(**fields, verdict=_verdict(fields, metric.replace("_", " ")))


def _names(scores: pd.DataFrame) -> dict[str, str]:
    """label -> registry name (labels are their own name in frames without the column)."""
    if "learner_name" not in scores:
        return {str(lab): str(lab) for lab in scores["label"].unique()}
    return scores.groupby("label")["learner_name"].first().astype(str).to_dict()


def best_baseline(scores: pd.DataFrame, names: Sequence[str] = BASELINES) -> str | None:
    """The label with the lowest mean score among learners named in ``names`` (default: the
    baselines scratch, finetune, partial_pooling), if any was run."""
    lab_names = _names(scores)
    mine = [lab for lab, n in lab_names.items() if n in names]
    means = scores[scores["label"].isin(mine)].groupby("label")["value"].mean().dropna()
    return str(means.idxmin()) if len(means) else None


def compare_all(scores: pd.DataFrame, metric: str = "excess_loss", *, n_boot: int = 2000,
                alpha: float = 0.05, seed: int = 0) -> list[Comparison]:
    """Every non-baseline, non-oracle learner of every scenario against the best baseline and
    against partial pooling (its best setting when several were run; once when they are the
    same)."""
    out: list[Comparison] = []
    for _, sc in scores.groupby("scenario", sort=False):
        refs = [r for r in dict.fromkeys([best_baseline(sc), best_baseline(sc, (REFERENCE,))])
                if r is not None]
        learners = [lab for lab, n in _names(sc).items() if n not in BASELINES + (ORACLE,)]
        for lab in sorted(learners, key=list(sc["label"].unique()).index):
            for ref in refs:
                out.append(compare(sc, lab, ref, metric, n_boot=n_boot, alpha=alpha, seed=seed))
    return out


def overall_verdict(comparisons: Sequence[Comparison], scores: pd.DataFrame) -> str:
    """The scenario-level sentence: does any meta-learner beat partial pooling?"""
    if REFERENCE not in set(_names(scores).values()):
        return ("Partial pooling was not run in this scenario, so no meta-learner can be shown "
                "to have earned its place; add partial_pooling to the learners.")
    vs_pp = [c for c in comparisons if c.reference_name == REFERENCE]
    if not vs_pp:
        return "No meta-learner was run in this scenario; only baselines are compared."
    winners = [c.learner for c in vs_pp if c.outcome == "beats"]
    best = best_baseline(scores)
    vs_best = {c.learner for c in comparisons if c.reference == best and c.outcome == "beats"}
    if not winners:
        return (f"No meta-learner beats partial pooling ({len(vs_pp)} compared): none has "
                "earned its place on this scenario.")
    both = [w for w in winners if w in vs_best]
    extra = (f" {', '.join(both)} also beat{'s' if len(both) == 1 else ''} the best baseline "
             f"({best})." if both and _names(scores).get(best) != REFERENCE else "")
    return (f"{', '.join(winners)} beat{'s' if len(winners) == 1 else ''} partial pooling "
            f"({len(winners)} of {len(vs_pp)} meta-learners).{extra}")


def parse_hyperparameters(text: str | None) -> dict[str, object]:
    """The runs frame's JSON hyperparameters as a dict ({} when empty or not JSON)."""
    try:
        value = json.loads(text) if text else {}
    except (TypeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
