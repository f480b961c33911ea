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
  simulated true P(y=1) / class probabilities / E[y]). Absent -- not zero -- without an oracle.
* ``prevalence_error``: ``|weighted mean prediction - weighted mean observed response|`` of each
  group's query set (the Hajek estimate a survey reports); for multiclass the total-variation
  distance ``1/2 sum_c |p_c - y_c|`` between predicted and observed class shares.
* ``prevalence_error_oracle``: the same against the oracle's (true) group prevalence/mean.
* ``adapt_seconds``: wall time of one ``adapt`` + ``predict`` call on the wave for one K (it
  produces every step count at once, so it is recorded once, at the largest step count).
* ``meta_fit_seconds``: wall time of the ``meta_fit`` call that follows the wave (shots=steps=0;
  the warm-up call is recorded at wave ``warmup - 1``).
* ``excess_loss_reachable``: loss minus the loss of the *observable ceiling* (E[y | observed
  features, group, wave], estimated from the simulator: ``Task.ceiling_query``, see
  ``simlab/society/ceiling.py``) on the same responses; absent without a ceiling. This is the
  part of the excess loss a learner could still remove; ``excess_loss`` minus it is what no
  survey could reach (the unobserved agent state).
* ``diverged``: 1 if the predictions for that step count were non-finite (then every other
  metric of the cell is NaN), or if the learner's ``meta_fit`` diverged earlier (0 otherwise).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from simlab.evaluation.result import RECORD_COLUMNS, SHIFT_COLUMNS

METRICS: tuple[str, ...] = (
    "loss", "accuracy", "brier", "ece", "excess_loss", "prevalence_error",
    "prevalence_error_oracle", "adapt_seconds", "meta_fit_seconds", "diverged",
    "excess_loss_reachable",
)
#: metrics scored per (wave, shots, steps) from predictions
SCORED: tuple[str, ...] = METRICS[:7] + ("excess_loss_reachable",)
EPS = 1e-7
ECE_BINS = 10

StepsSel = int | Literal["max", "all"]


# --------------------------------------------------------------------------- per-wave scoring

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

    ``window``: pre-shift scored waves averaged for the baseline level; ``rel_tol``/``abs_tol``:
    recovered means ``curve <= baseline + rel_tol*|baseline| + abs_tol``; ``target_loss``: the
    absolute loss of ``shots_to_target``; None means "within ``target_rel`` of the oracle's loss".
    """

    window: int = 3
    rel_tol: float = 0.10
    abs_tol: float = 0.01
    target_loss: float | None = None
    target_rel: float = 0.10

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"SummaryOptions.window={self.window} must be >= 1 (pre-shift waves)")
        if self.rel_tol < 0 or self.abs_tol < 0 or self.target_rel < 0:
            raise ValueError(f"SummaryOptions tolerances must be >= 0, got {self}")


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
        out[str(name)] = Cube(*(a.astype(np.int64) for a in axes), cube)
    return out


def _curve(cube: Cube, steps: StepsSel = "max", shots: int | None = None) -> pd.Series:
    grid = cube.at_steps(steps)                      # [W, K] or [W, K, S]
    if shots is not None:
        grid = grid[:, cube.shots == shots]
    return pd.Series(grid.reshape(grid.shape[0], -1).mean(axis=1),
                     index=pd.Index(cube.waves, name="wave"))


def wave_curve(records: pd.DataFrame | dict[str, Cube], metric: str = "excess_loss",
               steps: StepsSel = "max", shots: int | None = None) -> pd.Series:
    """One value per scored wave: ``metric`` at ``steps`` (the largest step count of the grid by
    default: each learner fully adapted), averaged over the shots grid (or at ``shots``).

    NaN cells (divergence) propagate, so a wave where the learner diverged is NaN. Empty when
    the records lack the metric.
    """
    cs = records if isinstance(records, dict) else cubes(records)
    if metric not in cs:
        return pd.Series([], index=pd.Index([], name="wave", dtype="int64"), dtype="float64",
                         name=metric)
    return _curve(cs[metric], steps, shots).rename(metric)


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


@dataclass(frozen=True)
class ShiftResponse:
    """How a learner's per-wave curve reacted to one shift (NaN fields: see shift_response)."""

    baseline: float     # pre-shift level (NaN: no scored wave before the shift)
    recovery: float     # waves until back within tolerance (NaN: not recovered / no baseline)
    peak: float         # maximum of the curve from the shift to the next one


def shift_response(curve: pd.Series, shift_waves: Sequence[int], options: SummaryOptions
                   ) -> list[ShiftResponse]:
    """The response of ``curve`` (indexed by wave) to each shift, in the order given.

    Baseline: mean of ``curve`` over the ``options.window`` scored waves before the shift.
    Recovery: the first r >= 0 with ``curve[wave + r] <= baseline + rel_tol*|baseline| +
    abs_tol``, searched until the next shift at a later wave (censored there) or the stream's
    end. NaN when it never gets back within that horizon, or when no scored wave precedes the
    shift (a shift during warm-up has no pre-shift level to return to). Peak: the maximum of
    ``curve`` over the same horizon (NaN when the horizon holds no finite value).
    """
    waves = curve.index.to_numpy()
    vals = curve.to_numpy(np.float64)
    starts = sorted({int(s) for s in shift_waves})
    out: list[ShiftResponse] = []
    for sw in shift_waves:
        end = next((s for s in starts if s > sw), np.inf)
        pre = vals[waves < sw][-options.window:]
        post_mask = (waves >= sw) & (waves < end)
        post_w, post_v = waves[post_mask], vals[post_mask]
        peak = float(np.nanmax(post_v)) if np.isfinite(post_v).any() else math.nan
        base = float(np.nanmean(pre)) if np.isfinite(pre).any() else math.nan
        if math.isnan(base) or post_v.size == 0:
            out.append(ShiftResponse(base, math.nan, peak))
            continue
        ok = post_v <= base + options.rel_tol * abs(base) + options.abs_tol
        out.append(ShiftResponse(base, float(post_w[ok.argmax()] - sw) if ok.any() else math.nan,
                                 peak))
    return out


def summarize(records: pd.DataFrame, shifts: pd.DataFrame | None = None,
              options: SummaryOptions | None = None) -> dict[str, float]:
    """Run-level summaries of one run's records (``RECORD_COLUMNS``) and its shifts.

    ``mean_<metric>`` for every scored metric present (mean of :func:`wave_curve`: largest step
    count, mean over shots and waves; NaN if any wave diverged); ``regret`` = cumulative excess
    loss over the scored waves (sum of the same curve; oracle only); ``adapt_seconds_total`` and
    ``meta_fit_seconds_total``;
    ``auc_steps`` (mean over K) and ``auc_steps[K=k]``; ``shots_to_target``;
    ``recovery_waves[i]`` and ``peak_excess[i]`` for shift i (its position in the stream's
    shift list) on the excess-loss curve -- without an oracle recovery uses the loss curve and
    ``peak_excess`` is absent; ``mean_recovery_waves`` over the shifts it recovered from and
    ``unrecovered`` = how many shifts with a pre-shift level it did not recover from (before the
    next shift or the end); ``diverged``: the fraction of scored cells that diverged.
    """
    opt = options or SummaryOptions()
    cs = cubes(records)
    out: dict[str, float] = {}
    for name in SCORED:
        if name in cs:
            out[f"mean_{name}"] = float(_curve(cs[name]).mean(skipna=False))
    if "excess_loss" in cs:
        out["regret"] = float(_curve(cs["excess_loss"]).sum(skipna=False))
    for name in ("adapt_seconds", "meta_fit_seconds"):
        if name in cs:
            out[f"{name}_total"] = float(np.nansum(cs[name].values))
    auc = auc_steps(cs, "loss")
    if auc:
        out["auc_steps"] = float(np.mean(list(auc.values())))
        out.update({f"auc_steps[K={k}]": v for k, v in auc.items()})
    out["shots_to_target"] = shots_to_target(cs, opt.target_loss, opt.target_rel)
    if shifts is not None and len(shifts) and "loss" in cs:
        oracle = "excess_loss" in cs
        resp = shift_response(_curve(cs["excess_loss" if oracle else "loss"]),
                              shifts["wave"].tolist(), opt)
        for i, r in enumerate(resp):
            out[f"recovery_waves[{i}]"] = r.recovery
            if oracle:
                out[f"peak_excess[{i}]"] = r.peak
        rec = np.array([r.recovery for r in resp], np.float64)
        out["mean_recovery_waves"] = float(np.nanmean(rec)) if np.isfinite(rec).any() else math.nan
        out["unrecovered"] = float(sum(np.isfinite(r.baseline) and np.isnan(r.recovery)
                                       for r in resp))
    if "diverged" in cs:
        out["diverged"] = float(np.nanmean(cs["diverged"].values))
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
