"""Report context: the changepoints each ``cpd:`` learner detected, beside the true shifts.

The protocol records, for a changepoint-aware learner, ``changepoint`` (1 at each wave whose
revealed data made it reset its memory) and ``changepoint_prob`` per wave. Per learner and
seed the table lists the detected waves, and per true shift the detection delay (waves from the
shift's first wave to the first detection before the next shift; 0 = detected as soon as the
shifted wave was revealed) and the detections that no shift explains (false alarms).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _score(detected: list[int], shifts: list[int], horizon: int) -> tuple[list[str], int]:
    """Delay per shift ("missed" if none before the next shift / the horizon), false alarms."""
    used: set[int] = set()
    delays = []
    for i, s in enumerate(shifts):
        end = shifts[i + 1] if i + 1 < len(shifts) else horizon + 1
        hit = [d for d in detected if s <= d < end]
        delays.append(str(hit[0] - s) if hit else "missed")
        used.update(hit[:1])
    return delays, len([d for d in detected if d not in used])


def changepoint_context(runs: pd.DataFrame, metrics: pd.DataFrame, shifts: pd.DataFrame
                        ) -> dict[str, Any] | None:
    """The ``_changepoints`` partial's table (header, rows), or None without cpd: learners."""
    cp = metrics[(metrics["metric"] == "changepoint") & metrics["run_id"].isin(runs["run_id"])]
    if cp.empty:
        return None
    horizon = int(metrics["wave"].max())
    rows = []
    meta = runs.set_index("run_id")
    for rid, g in cp.groupby("run_id", sort=False):
        r = meta.loc[rid]
        detected = sorted(int(w) for w in g.loc[g["value"] > 0.5, "wave"])
        true = sorted({int(w) for w in shifts.loc[shifts["seed"] == r["seed"], "wave"]})
        delays, false = _score(detected, true, horizon)
        rows.append([str(r["learner"]), str(r["seed"]), ", ".join(map(str, true)) or "none",
                     ", ".join(map(str, detected)) or "none", ", ".join(delays) or "–",
                     str(false)])
    rows.sort(key=lambda x: (x[0], int(x[1]) if x[1].lstrip("-").isdigit() else np.inf))
    return {"header": ["learner", "seed", "true shifts (wave)", "detected (wave)",
                       "delay (waves)", "false alarms"], "rows": rows}
