"""Group x time trends: each group's fitted change of prevalence over the survey's span,
Cochran's Q that the groups' slopes are equal, and their between-group spread net of sampling;
and the same slopes on the link scale, what a twin's per-community trends are calibrated to."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PREVALENCE_CLIP = 1e-3        # keeps logits finite for a wave or group with 0% or 100%
#: significance of Cochran's Q test that the groups' trends differ ("the survey diverges")
TREND_ALPHA = 0.05


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


#: a map to or from the link scale
Link = Callable[[Any], Any]


def link_functions(kind: str) -> tuple[Link, Link]:
    """(to the link scale, back): logit (prevalence clipped to ``PREVALENCE_CLIP``) and expit
    for a binary target, the identity for a numeric one."""
    from scipy.special import expit, logit

    if kind == "binary":
        return (lambda p: logit(np.clip(p, PREVALENCE_CLIP, 1 - PREVALENCE_CLIP)), expit)
    return (lambda m: np.asarray(m, dtype=np.float64), lambda e: e)


def link_slopes(level: np.ndarray, var: np.ndarray, times: Sequence[Any], kind: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per group: the least-squares slope of its cells' prevalence on the link scale (logit
    for binary, delta-method variances) per time unit, and its standard error; nan for a
    group seen in fewer than two waves."""
    to_link, _ = link_functions(kind)
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


__all__ = ["PREVALENCE_CLIP", "TREND_ALPHA", "GroupTrends", "Link", "group_trends",
           "link_functions", "link_slopes", "trend_positions"]
