"""The fidelity table: every matched quantity, survey vs twin, with its tolerance, and the
caution when the survey's group trends diverge and the twin misses them."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from simlab.experiment.twin.measure import achieved_levels, effect_spread, pooled_r2, twin_cells
from simlab.experiment.twin.shape import SurveyShape
from simlab.experiment.twin.trends import GroupTrends, group_trends

if TYPE_CHECKING:  # pragma: no cover
    from simlab.experiment.config import Scenario

#: tolerances of the fidelity table: prevalence (absolute; x the target's sd for a numeric
#: target), and (absolute, relative) for the pooled R^2 and the effect spread
TOL_LEVEL = 0.02
TOL_SIGNAL = (0.01, 0.15)
TOL_SPREAD = (0.01, 0.25)
#: tolerance of a group's trend (change of prevalence over the survey's span): this absolute
#: floor (x the target's sd for a numeric target) or 2 standard errors of the survey's, if wider
TOL_TREND = 0.03


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


__all__ = ["TOL_LEVEL", "TOL_SIGNAL", "TOL_SPREAD", "TOL_TREND", "fidelity_rows", "measure_twin",
           "trend_flag", "trend_rows"]
