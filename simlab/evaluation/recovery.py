"""Recovery after each shift, across seeds: which shifts count (:func:`shift_effects`), and
per learner how many seeds recovered, the censored median and the restricted mean of the waves
it took. A seed that did not recover within the horizon is censored, never dropped.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from simlab.evaluation.frames import run_roles
from simlab.learners.roles import is_oracle


def _not_oracle(summaries: pd.DataFrame) -> pd.DataFrame:
    """The summaries of every learner but the oracle (whose excess loss is 0 by definition)."""
    return summaries[~run_roles(summaries).map(is_oracle)]


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
    learners = _not_oracle(summaries)
    for col in _shift_cols(summaries, "recovery_censored"):
        i = int(col[len("recovery_censored["):-1])
        row: dict[str, Any] = {"shift": i, "scored": bool(summaries[col].notna().any()),
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
    learners = _not_oracle(summaries)
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
    learners = _not_oracle(summaries)
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


__all__ = ["RECOVERY_COLUMNS", "censored_median", "recovery_by_shift", "recovery_overall",
           "shift_effects"]
