"""Per-wave metrics of few-shot predictions and the run-level summaries built from them.

Everything here is numpy/pandas only (no torch), so the report can recompute summaries from a
results store without importing the learners.

Aggregation, everywhere: a wave's value is the **mean over groups (tasks) of the survey-weighted
mean within each group** -- each community counts once, as in a survey analyst's table of group
estimates; within a group, respondents count by their survey weight (padding has weight 0).

Per-respondent scores (``pred`` is P(y=1), class probabilities or E[y]):

* ``loss``: log loss (binary, multiclass; probabilities clipped to ``[EPS, 1-EPS]``) or squared
  error (regression).
* ``accuracy``: ``1[p > 0.5] == y`` (binary), ``argmax p == y`` (multiclass); classification only.
* ``brier``: ``(p - y)^2`` (binary), ``sum_c (p_c - 1[y=c])^2`` (multiclass; Brier 1950,
  "Verification of forecasts expressed in terms of probability"); classification only.
* ``ece``: binned expected calibration error (Naeini, Cooper & Hauskrecht 2015; Guo et al. 2017,
  "On calibration of modern neural networks"): ``sum_b W_b/W |mean y_b - mean p_b|`` over
  ``ECE_BINS`` equal-width bins of P(y=1) (binary) or of the top-label confidence against
  correctness (multiclass). Pooled over every query respondent of the wave (a group's 10-30
  respondents are too few to fill bins), survey-weighted. Classification only.
* ``excess_loss``: loss minus the oracle's loss on the same responses (the oracle predicts the
  simulated true P(y=1) / class probabilities / E[y]), in nats of log loss per respondent
  (squared error for regression; :func:`metric_unit`). Absent -- not zero -- without an oracle.
* ``prevalence_error``: ``|weighted mean prediction - weighted mean observed response|`` of each
  group's query set (the Hajek estimate a survey reports); for multiclass the total-variation
  distance ``1/2 sum_c |p_c - y_c|`` between predicted and observed class shares.
* ``prevalence_error_oracle``: the same against the oracle's (true) group prevalence/mean.
* ``adapt_seconds``: wall time of one ``adapt`` + ``predict`` call on the wave for one K (it
  produces every step count at once, so it is recorded once, at the largest step count).
* ``meta_fit_seconds``: wall time of the ``meta_fit`` call that follows the wave (shots=steps=0;
  the warm-up call is recorded at wave ``warmup - 1``).
* ``adapt_cpu_seconds`` / ``meta_fit_cpu_seconds``: the same calls' CPU seconds
  (``time.process_time``: every thread of the process), recorded next to the wall times.
* ``excess_loss_reachable``: loss minus the loss of the *observable ceiling* (E[y | observed
  features, group, wave], estimated from the simulator: ``Task.ceiling_query``, see
  ``simlab/society/diagnostics/ceiling.py``) on the same responses; absent without a ceiling.
  This is the part of the excess loss a learner could still remove; ``excess_loss`` minus it is
  what no survey could reach (the unobserved agent state).
* ``scored_steps``: the inner-step count the learner predicts with (``Learner.scored_steps``;
  one row at the first scored wave, shots 0, steps = value). Every run summary, per-wave
  comparison and recovery reads the metrics at that count (:func:`scored_step`).
* ``diverged``: 1 if the predictions for that step count were non-finite (then every other
  metric of the cell is NaN), or if the learner's ``meta_fit`` diverged earlier, or if the loss
  blew up past ``protocol.DIVERGENCE_MULTIPLE`` times the support base-rate predictor's loss
  on the same queries (then the finite metrics are kept); 0 otherwise.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from simlab.errors import ScenarioError
from simlab.evaluation.result import RECORD_COLUMNS, SHIFT_COLUMNS

METRICS: tuple[str, ...] = (
    "loss", "accuracy", "brier", "ece", "excess_loss", "prevalence_error",
    "prevalence_error_oracle", "adapt_seconds", "meta_fit_seconds", "diverged",
    "adapt_cpu_seconds", "meta_fit_cpu_seconds",
    "excess_loss_reachable", "scored_steps",
)
#: metrics scored per (wave, shots, steps) from predictions
SCORED: tuple[str, ...] = METRICS[:7] + ("excess_loss_reachable",)
EPS = 1e-7
ECE_BINS = 10

StepsSel = int | Literal["max", "all"]


# --------------------------------------------------------------------------- per-wave scoring

def metric_unit(metric: str, classification: bool = True, short: bool = False) -> str:
    """The unit a metric is reported in, for captions, table headers and verdicts ("" for a
    metric without one). Losses are natural-log log loss (nats) per respondent -- each
    group's weighted mean over its query respondents, then the mean over groups -- or squared
    error for a regression target (``classification`` False); the excess losses are that above
    the oracle / the observable ceiling; prevalence error is in proportion units (0-1)."""
    loss = ("nats" if short else "nats of log loss") if classification else "squared error"
    per = "/respondent" if short else " per respondent"
    return {"loss": f"{loss}{per}",
            "excess_loss": f"{loss}{per} above the oracle",
            "excess_loss_reachable": f"{loss}{per} above the observable ceiling",
            "regret": f"{loss}{per} above the oracle, summed over the scored waves",
            "prevalence_error": "proportion, 0-1" if short else
            "absolute difference in group prevalence, as a proportion (0-1)"}.get(metric, "")


def _group_mean(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean over the query axis (last of ``w``), then mean over groups: ``[S]``."""
    tot = w.sum(-1)
    per = np.divide((v * w).sum(-1), tot, out=np.full(np.broadcast_shapes(v.shape, w.shape)[:-1],
                                                       np.nan), where=tot > 0)
    return np.nanmean(per, axis=-1) if per.shape[-1] else np.full(per.shape[:-1], np.nan)


def _onehot(y: np.ndarray, n_classes: int) -> np.ndarray:
    return (y[..., None] == np.arange(n_classes)).astype(np.float64)


def _respondent_loss(p: np.ndarray, y: np.ndarray, target: str) -> np.ndarray:
    """Per-respondent loss of predictions ``p`` (broadcast over a leading step axis)."""
    if target == "regression":
        return (p - y) ** 2
    q = np.clip(p, EPS, 1 - EPS)
    if target == "binary":
        return -(y * np.log(q) + (1 - y) * np.log1p(-q))
    picked = np.take_along_axis(q, np.broadcast_to(y[..., None], q.shape[:-1] + (1,)), -1)
    return -np.log(picked[..., 0])


def _prevalence_gap(p: np.ndarray, ref: np.ndarray, w: np.ndarray, target: str) -> np.ndarray:
    """Mean over groups of |weighted mean of p - weighted mean of ref| (TV for multiclass)."""
    tot = w.sum(-1)
    if target == "multiclass":
        wc = w[..., None]
        mp = (p * wc).sum(-2)
        mr = (ref * wc).sum(-2)
        gap = 0.5 * np.abs(mp - mr).sum(-1)
    else:
        gap = np.abs((p * w).sum(-1) - (ref * w).sum(-1))
    per = np.divide(gap, tot, out=np.full(gap.shape, np.nan), where=tot > 0)
    return np.nanmean(per, axis=-1)


def expected_calibration_error(conf: np.ndarray, hit: np.ndarray, w: np.ndarray,
                               bins: int = ECE_BINS) -> np.ndarray:
    """Binned ECE of ``conf [S, N]`` against outcomes ``hit [S, N]`` with weights ``w [N]``.

    One ``bincount`` over (step, bin) pairs: no loop over steps or bins.
    """
    s = conf.shape[0]
    b = np.minimum((conf * bins).astype(np.int64), bins - 1).clip(0)
    idx = (b + bins * np.arange(s)[:, None]).ravel()
    ww = np.broadcast_to(w, conf.shape).ravel()
    wsum = np.bincount(idx, ww, s * bins).reshape(s, bins)
    csum = np.bincount(idx, ww * conf.ravel(), s * bins).reshape(s, bins)
    hsum = np.bincount(idx, ww * hit.ravel(), s * bins).reshape(s, bins)
    total = wsum.sum(-1)
    gap = np.abs(hsum - csum).sum(-1)          # sum_b W_b |mean hit_b - mean conf_b|
    return np.divide(gap, total, out=np.full(s, np.nan), where=total > 0)


def score_predictions(pred: np.ndarray, y: np.ndarray, weight: np.ndarray, target: str,
                      n_classes: int = 2, oracle: np.ndarray | None = None,
                      ceiling: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Score one wave x K: every metric for every step count.

    ``pred`` ``[S, B, Q]`` (``[S, B, Q, C]`` multiclass); ``y`` ``[B, Q]``; ``weight`` ``[B, Q]``
    survey weight times the query mask (0 on padding); ``oracle`` ``[B, Q]`` / ``[B, Q, C]`` or
    None; ``ceiling`` the same shape as ``oracle`` (the observable ceiling) or None. Returns
    metric -> ``[S]``; a step count whose real predictions are not all finite gets
    NaN everywhere and ``diverged`` 1.
    """
    pred = np.asarray(pred, np.float64)
    w = np.asarray(weight, np.float64)
    real = w > 0
    cls_axis = (-1,) if target == "multiclass" else ()
    finite_resp = np.isfinite(pred).all(axis=cls_axis) if cls_axis else np.isfinite(pred)
    finite = (finite_resp | ~real).reshape(pred.shape[0], -1).all(-1)          # [S]
    safe = 1.0 / n_classes if target == "multiclass" else (0.5 if target == "binary" else 0.0)
    keep = finite_resp & real
    p = np.where(keep[..., None] if cls_axis else keep, pred, safe)
    yi = np.asarray(y, np.int64 if target == "multiclass" else np.float64)
    if target == "multiclass":
        yi = np.where(real, yi, 0)
    loss = _respondent_loss(p, yi, target)
    out: dict[str, np.ndarray] = {"loss": _group_mean(loss, w)}
    if target == "binary":
        out["accuracy"] = _group_mean(((p > 0.5) == (yi > 0.5)).astype(np.float64), w)
        out["brier"] = _group_mean((p - yi) ** 2, w)
        out["ece"] = expected_calibration_error(p.reshape(p.shape[0], -1),
                                                np.broadcast_to(yi, p.shape).reshape(
                                                    p.shape[0], -1), w.ravel())
        observed = yi
    elif target == "multiclass":
        onehot = _onehot(yi, n_classes)
        top = p.argmax(-1)
        out["accuracy"] = _group_mean((top == yi).astype(np.float64), w)
        out["brier"] = _group_mean(((p - onehot) ** 2).sum(-1), w)
        out["ece"] = expected_calibration_error(p.max(-1).reshape(p.shape[0], -1),
                                                (top == yi).reshape(p.shape[0], -1)
                                                .astype(np.float64), w.ravel())
        observed = onehot
    else:
        observed = yi
    out["prevalence_error"] = _prevalence_gap(p, observed, w, target)
    if oracle is not None:
        o = np.asarray(oracle, np.float64)
        o = np.where(real[..., None] if cls_axis else real, o, safe)
        out["excess_loss"] = _group_mean(loss - _respondent_loss(o, yi, target), w)
        out["prevalence_error_oracle"] = _prevalence_gap(p, o, w, target)
    # --- observable ceiling (society issue 10): excess over the reachable E[y | x, g, w]
    if ceiling is not None:
        r = np.asarray(ceiling, np.float64)
        r = np.where(real[..., None] if cls_axis else real, r, safe)
        out["excess_loss_reachable"] = _group_mean(loss - _respondent_loss(r, yi, target), w)
    for k in out:
        out[k] = np.where(finite, out[k], np.nan)
    out["diverged"] = (~finite).astype(np.float64)
    return out


# --------------------------------------------------------------------------- run summaries

@dataclass(frozen=True)
class SummaryOptions:
    """Knobs of the run-level summaries (defaults are what ``evaluate`` and the report use).

    Recovery after a shift (see :func:`shift_response`): the excess loss is back within
    ``rel_tol`` x the ceiling's loss + ``abs_tol`` of the ceiling, for ``sustain`` consecutive
    scored waves. ``window``: scored waves before a shift that give its pre-shift level (the
    shift's effect, and the own-level rule used without an oracle). ``target_loss``: the
    absolute loss of ``shots_to_target``; None means "within ``target_rel`` of the oracle's".
    """

    window: int = 3
    rel_tol: float = 0.10
    abs_tol: float = 0.01
    sustain: int = 2
    target_loss: float | None = None
    target_rel: float = 0.10

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ScenarioError(f"SummaryOptions.window={self.window} must be >= 1 (pre-shift "
                                "waves)")
        if self.sustain < 1:
            raise ScenarioError(f"SummaryOptions.sustain={self.sustain} must be >= 1 (waves a "
                                "recovery must last)")
        if self.rel_tol < 0 or self.abs_tol < 0 or self.target_rel < 0:
            raise ScenarioError(f"SummaryOptions tolerances must be >= 0, got {self}")


@dataclass(frozen=True)
class Cube:
    """One metric of one run as a dense ``values [waves, shots, steps]`` array (NaN = missing
    cell or divergence), so summaries are numpy reductions instead of pandas group-bys."""

    waves: np.ndarray
    shots: np.ndarray
    steps: np.ndarray
    values: np.ndarray

    def at_steps(self, steps: StepsSel = "max") -> np.ndarray:
        """``[waves, shots]`` at the largest step count, a given one, or all ``[W, K, S]``."""
        if steps == "max":
            return self.values[:, :, -1]
        if steps == "all":
            return self.values
        hit = np.flatnonzero(self.steps == steps)
        if not hit.size:
            raise ValueError(f"steps={steps} is not in the records' step grid {list(self.steps)}")
        return self.values[:, :, hit[0]]


def scored_step(cs: dict[str, Cube]) -> StepsSel:
    """The step count a run is scored at: the ``scored_steps`` record the protocol writes (the
    learner's own count, ``Learner.scored_steps``), or the grid's largest ("max") for records
    without one (runs made before it was recorded)."""
    cube = cs.get("scored_steps")
    if cube is None or not np.isfinite(cube.values).any():
        return "max"
    return int(np.nanmax(cube.values))


def cubes(records: pd.DataFrame) -> dict[str, Cube]:
    """Every metric of one run's records (``RECORD_COLUMNS``) as a :class:`Cube`."""
    out: dict[str, Cube] = {}
    codes, names = pd.factorize(records["metric"])
    cols = {c: records[c].to_numpy() for c in ("wave", "shots", "steps")}
    value = records["value"].to_numpy(np.float64)
    for i, name in enumerate(names):
        sel = codes == i
        axes, idx = zip(*(np.unique(cols[c][sel], return_inverse=True)
                          for c in ("wave", "shots", "steps")))
        cube = np.full(tuple(a.size for a in axes), np.nan)
        cube[idx] = value[sel]
        w, k, s = (a.astype(np.int64) for a in axes)
        out[str(name)] = Cube(w, k, s, cube)
    return out


def run_cubes(records: pd.DataFrame, names: Sequence[str] | None = None
              ) -> dict[Any, dict[str, Cube]]:
    """:func:`cubes` of every run in ``records`` (``run_id`` + ``RECORD_COLUMNS``) at once:
    run id (ascending; every run of ``records``, an empty dict where it lacks the metrics) ->
    metric -> :class:`Cube`, only the metrics in ``names`` (None: all).

    One dense ``[runs, waves, shots, steps]`` scatter per metric instead of a group-by per run,
    so a 10,000-run store costs a few array passes; each run keeps its own grid (the axis
    values it has rows for), so the cubes equal :func:`cubes` of the run's records.
    """
    run = records["run_id"].to_numpy()
    out: dict[Any, dict[str, Cube]] = {r: {} for r in np.unique(run).tolist()}
    codes, metric_names = pd.factorize(records["metric"])
    cols = [records[c].to_numpy() for c in ("wave", "shots", "steps")]
    value = records["value"].to_numpy(np.float64)
    for i, name in enumerate(metric_names):
        if names is not None and name not in names:
            continue
        sel = codes == i
        rids, ri = np.unique(run[sel], return_inverse=True)
        axes, idx = zip(*(np.unique(c[sel], return_inverse=True) for c in cols))
        axes = tuple(a.astype(np.int64) for a in axes)
        dense = np.full((rids.size,) + tuple(a.size for a in axes), np.nan)
        dense[(ri, *idx)] = value[sel]
        has = np.zeros(dense.shape, bool)
        has[(ri, *idx)] = True
        # per run and axis: which of the metric's axis values the run has rows for
        own = [np.asarray(has.any(axis=tuple(j for j in (1, 2, 3) if j != ax)))
               for ax in (1, 2, 3)]
        complete = np.logical_and.reduce([o.all(1) for o in own])
        for j, rid in enumerate(rids.tolist()):
            if complete[j]:
                cube = Cube(axes[0], axes[1], axes[2], dense[j])
            else:
                m = [o[j] for o in own]
                w, k, s = (a[keep] for a, keep in zip(axes, m))
                cube = Cube(w, k, s, dense[j][np.ix_(*m)])
            out[rid][str(name)] = cube
    return out


def _curve(cube: Cube, steps: StepsSel = "max", shots: int | None = None) -> pd.Series:
    grid = cube.at_steps(steps)                      # [W, K] or [W, K, S]
    if shots is not None:
        grid = grid[:, cube.shots == shots]
    return pd.Series(grid.reshape(grid.shape[0], -1).mean(axis=1),
                     index=pd.Index(cube.waves, name="wave"))


def wave_curve(records: pd.DataFrame | dict[str, Cube], metric: str = "excess_loss",
               steps: StepsSel | None = None, shots: int | None = None) -> pd.Series:
    """One value per scored wave: ``metric`` at ``steps`` (None, the default: the run's scored
    step count, :func:`scored_step`, i.e. the predictions the method makes), averaged over the
    shots grid (or at ``shots``).

    NaN cells (divergence) propagate, so a wave where the learner diverged is NaN. Empty when
    the records lack the metric.
    """
    cs = records if isinstance(records, dict) else cubes(records)
    if metric not in cs:
        return pd.Series([], index=pd.Index([], name="wave", dtype="int64"), dtype="float64",
                         name=metric)
    return _curve(cs[metric], scored_step(cs) if steps is None else steps, shots).rename(metric)


def normalised_trapezoid(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Trapezoid area under ``y`` (last axis) over grid ``x``, divided by the grid's width, so
    the result is in the units of ``y`` (a constant curve c has area c); one point -> itself."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.size == 1:
        return y[..., 0]
    area = (0.5 * (y[..., 1:] + y[..., :-1]) * np.diff(x)).sum(-1)
    return area / (x[-1] - x[0])


def auc_steps(records: pd.DataFrame | dict[str, Cube], metric: str = "loss") -> dict[int, float]:
    """Area under the adaptation curve (``metric`` vs inner steps), normalised by the step range,
    per shots K, averaged over waves. Lower is better for a loss: a learner that is good already
    at 0 steps and improves fast has a small area."""
    cs = records if isinstance(records, dict) else cubes(records)
    if metric not in cs:
        return {}
    c = cs[metric]
    per_k = normalised_trapezoid(c.steps, c.values).mean(axis=0)      # [W, K] -> [K]
    return {int(k): float(v) for k, v in zip(c.shots, per_k)}


def shots_to_target(records: pd.DataFrame | dict[str, Cube], target: float | None = None,
                    target_rel: float = 0.10, steps: StepsSel = "max") -> float:
    """Smallest K of the shots grid whose mean loss (over waves, at ``steps``) is <= ``target``.

    ``target`` None: within ``target_rel`` of the reachable ceiling's mean loss on the same
    responses (``(1 + target_rel) * mean(loss - excess_loss_reachable)``) when the stream has an
    observable ceiling, else of the oracle's (``loss - excess_loss``; the latent oracle is
    often out of reach of any survey). NaN if no K reaches it (or there is neither a target
    nor an oracle).
    """
    cs = records if isinstance(records, dict) else cubes(records)
    if "loss" not in cs or steps == "all":
        return math.nan
    loss = cs["loss"].at_steps(steps)
    if target is None:
        ref = next((m for m in ("excess_loss_reachable", "excess_loss") if m in cs), None)
        if ref is None:
            return math.nan
        oracle_loss = loss - cs[ref].at_steps(steps)
        if not np.isfinite(oracle_loss).any():
            return math.nan
        target = (1 + target_rel) * float(np.nanmean(oracle_loss))
    per_k = loss.mean(axis=0)
    hit = cs["loss"].shots[per_k <= target]
    return float(hit[0]) if hit.size else math.nan


#: record metrics of the excess loss over a ceiling, preferred first: the reachable ceiling
#: (E[y | observed features, group, wave], added by the society layer) when the records have
#: it, else the latent oracle
CEILING_METRICS: tuple[str, ...] = ("excess_loss_reachable", "excess_loss")


def ceiling_metric(names: Sequence[str] | dict) -> str | None:
    """The excess-loss metric recovery is measured on (see ``CEILING_METRICS``), or None."""
    return next((m for m in CEILING_METRICS if m in names), None)


@dataclass(frozen=True)
class ShiftResponse:
    """How a learner's per-wave curve reacted to one shift (see :func:`shift_response`)."""

    baseline: float     # mean of the curve over the window before the shift (NaN: none)
    recovery: float     # waves from the shift to the start of a sustained recovery (NaN: none)
    censored: float     # 1: not recovered within ``horizon`` waves; 0: recovered; NaN: undefined
    horizon: int        # scored waves from the shift to the next shift or the stream's end
    peak: float         # maximum of the curve over the horizon


def _sustained(ok: np.ndarray, sustain: int) -> int | None:
    """First index from which ``ok`` holds for ``sustain`` consecutive entries (None: never)."""
    if ok.size < sustain:
        return None
    runs = np.lib.stride_tricks.sliding_window_view(ok, sustain).all(-1)
    return int(runs.argmax()) if runs.any() else None


def shift_response(curve: pd.Series, shift_waves: Sequence[int], options: SummaryOptions,
                   threshold: pd.Series | None = None) -> list[ShiftResponse]:
    """The response of ``curve`` (indexed by wave) to each shift, in the order given.

    Horizon: the scored waves from the shift up to the next shift at a later wave or the end
    of the stream. Recovered at r: ``curve <= threshold`` on waves ``shift + r`` onwards for
    ``options.sustain`` consecutive scored waves, all inside the horizon (a single dip below
    the line that the learner leaves again is not a recovery). Otherwise **censored**: "not
    recovered within ``horizon`` waves" (``recovery`` NaN, ``censored`` 1), never dropped.

    ``threshold``: the recovered level per wave -- a common reference (for the excess loss:
    ``rel_tol`` x the ceiling's loss + ``abs_tol``, the same for every learner on the stream).
    None: the learner's own pre-shift level (``baseline + rel_tol*|baseline| + abs_tol``), the
    fallback without an oracle. A shift before the first scored wave (inside the warm-up) is
    undefined (``censored`` NaN): nobody was scored when it hit.
    """
    waves = curve.index.to_numpy()
    vals = curve.to_numpy(np.float64)
    limit = None if threshold is None else threshold.reindex(curve.index).to_numpy(np.float64)
    starts = sorted({int(s) for s in shift_waves})
    out: list[ShiftResponse] = []
    for sw in shift_waves:
        end = next((s for s in starts if s > sw), np.inf)
        pre = vals[waves < sw][-options.window:]
        post = (waves >= sw) & (waves < end)
        post_w, post_v = waves[post], vals[post]
        peak = float(np.nanmax(post_v)) if np.isfinite(post_v).any() else math.nan
        base = float(np.nanmean(pre)) if np.isfinite(pre).any() else math.nan
        if math.isnan(base) or post_v.size == 0:
            out.append(ShiftResponse(base, math.nan, math.nan, int(post_v.size), peak))
            continue
        line = (limit[post] if limit is not None else
                base + options.rel_tol * abs(base) + options.abs_tol)
        first = _sustained(post_v <= line, options.sustain)      # NaN compares False
        out.append(ShiftResponse(base, math.nan if first is None else float(post_w[first] - sw),
                                 1.0 if first is None else 0.0, int(post_v.size), peak))
    return out


def summarize(records: pd.DataFrame, shifts: pd.DataFrame | None = None,
              options: SummaryOptions | None = None) -> dict[str, float]:
    """Run-level summaries of one run's records (``RECORD_COLUMNS``) and its shifts.

    Every learner is scored at its own step count (:func:`scored_step`: the one it predicts
    with; reported as ``scored_steps``). ``mean_<metric>`` for every scored metric present
    (mean of :func:`wave_curve` at that count, over shots and waves; NaN if any wave
    diverged); ``regret`` = cumulative excess
    loss over the scored waves (sum of the same curve; oracle only); ``adapt_seconds_total`` and
    ``meta_fit_seconds_total`` (and their ``*_cpu_seconds_total``); ``auc_steps`` (mean over
    K) and ``auc_steps[K=k]``; ``shots_to_target``.

    Per shift i (its position in the stream's shift list), from :func:`shift_response` on the
    excess-loss curve (``ceiling_metric``: the reachable ceiling when recorded) against the
    common line ``rel_tol`` x ceiling loss + ``abs_tol``; without an oracle on the loss curve
    against the learner's own pre-shift level: ``recovery_waves[i]`` (NaN when censored),
    ``recovery_censored[i]`` (1 = not recovered within ``recovery_horizon[i]`` waves),
    ``recovery_horizon[i]``; with an oracle also ``peak_excess[i]``, ``excess_jump[i]`` (peak
    minus the pre-shift mean excess), ``ceiling_change[i]`` (|mean ceiling loss after - before|:
    the shift's effect on the ceiling) and ``recovery_line[i]`` (the line's pre-shift mean).
    ``recovered`` / ``unrecovered``: shifts recovered from / censored. ``diverged``: the fraction
    of scored cells (at the scored step count) that diverged.
    """
    opt = options or SummaryOptions()
    cs = cubes(records)
    at = scored_step(cs)
    out: dict[str, float] = {}
    if "scored_steps" in cs:
        out["scored_steps"] = float(at)
    for name in SCORED:
        if name in cs:
            out[f"mean_{name}"] = float(_curve(cs[name], at).mean(skipna=False))
    if "excess_loss" in cs:
        out["regret"] = float(_curve(cs["excess_loss"], at).sum(skipna=False))
    for name in ("adapt_seconds", "meta_fit_seconds", "adapt_cpu_seconds",
                 "meta_fit_cpu_seconds"):
        if name in cs:
            out[f"{name}_total"] = float(np.nansum(cs[name].values))
    auc = auc_steps(cs, "loss")
    if auc:
        out["auc_steps"] = float(np.mean(list(auc.values())))
        out.update({f"auc_steps[K={k}]": v for k, v in auc.items()})
    out["shots_to_target"] = shots_to_target(cs, opt.target_loss, opt.target_rel, at)
    if shifts is not None and len(shifts) and "loss" in cs:
        out.update(_shift_summaries(cs, shifts["wave"].tolist(), opt, at))
    if "diverged" in cs:
        out["diverged"] = float(np.nanmean(cs["diverged"].at_steps(at)))
    return out


def _shift_summaries(cs: dict[str, Cube], shift_waves: list[int], opt: SummaryOptions,
                     at: StepsSel = "max") -> dict[str, float]:
    """The per-shift keys of :func:`summarize` (curves at step count ``at``)."""
    metric = ceiling_metric(cs)
    loss = _curve(cs["loss"], at)
    if metric is None:
        resp = shift_response(loss, shift_waves, opt)
        ceiling = line = None
    else:
        excess = _curve(cs[metric], at)
        ceiling = loss - excess
        line = opt.rel_tol * ceiling + opt.abs_tol
        resp = shift_response(excess, shift_waves, opt, line)
    out: dict[str, float] = {}
    waves = loss.index.to_numpy()
    for i, (sw, r) in enumerate(zip(shift_waves, resp)):
        out[f"recovery_waves[{i}]"] = r.recovery
        out[f"recovery_censored[{i}]"] = r.censored
        out[f"recovery_horizon[{i}]"] = float(r.horizon)
        if ceiling is None or line is None:
            continue
        out[f"peak_excess[{i}]"] = r.peak
        out[f"excess_jump[{i}]"] = r.peak - r.baseline
        before = ceiling[waves < sw].iloc[-opt.window:]
        after = ceiling[waves >= sw].iloc[:r.horizon]
        out[f"ceiling_change[{i}]"] = float(abs(after.mean() - before.mean()))
        out[f"recovery_line[{i}]"] = float(line[waves < sw].iloc[-opt.window:].mean())
    cens = np.array([r.censored for r in resp], np.float64)
    out["recovered"] = float((cens == 0).sum())
    out["unrecovered"] = float((cens == 1).sum())
    return out


def empty_records() -> pd.DataFrame:
    """A records frame with the contract's columns and no rows."""
    return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("wave", "shots", "steps")
                                      else ("object" if c == "metric" else "float64"))
                         for c in RECORD_COLUMNS})


def shift_frame(events: Sequence) -> pd.DataFrame:
    """``ShiftEvent`` objects to a ``SHIFT_COLUMNS`` frame, in the stream's order."""
    return pd.DataFrame([[getattr(e, c) for c in SHIFT_COLUMNS] for e in events],
                        columns=SHIFT_COLUMNS)
