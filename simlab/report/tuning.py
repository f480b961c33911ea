"""The report's tuning section: per learner and seed, the trials it got and what they chose.

Reads the ``tuning`` column of the store's runs frame (the run log's ``"tuning"`` entry, JSON
written by ``simlab.evaluation.tuning.TuningResult.as_log``); runs without it were not tuned.
"""
from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list):
        return "(" + ", ".join(_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return str(v)


def _parse(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        out = json.loads(text)
    except json.JSONDecodeError:
        return None
    return out if isinstance(out, dict) else None


def tuning_section(runs: pd.DataFrame) -> dict[str, Any] | None:
    """Context for ``_tuning.*.j2``: a table (learner, seed, trials, best score, chosen
    hyperparameters) and each learner's searched space; None when no run was tuned."""
    if "tuning" not in runs.columns:
        return None
    logs = [(r.learner, int(r.seed), _parse(r.tuning)) for r in runs.itertuples(index=False)]
    logs = sorted((x for x in logs if x[2] is not None), key=lambda x: (str(x[0]), x[1]))
    if not logs:
        return None
    rows, spaces, metrics = [], {}, set()
    for learner, seed, log in logs:
        trace = log.get("trace") or []
        ok = sum(t.get("state") == "complete" for t in trace)
        best = log.get("best_value")
        chosen = ", ".join(f"{k}={_value(v)}" for k, v in (log.get("best_params") or {}).items())
        rows.append([str(learner), str(seed),
                     f"{len(trace)} ({ok} ok, {len(trace) - ok} diverged)" if trace else "0",
                     "–" if best is None or (isinstance(best, float) and math.isnan(best))
                     else f"{float(best):.4g}",
                     chosen or ("nothing to tune" if not log.get("trials") else "defaults")])
        spaces.setdefault(str(learner), ", ".join(f"{k} {v}" for k, v in
                                                  (log.get("space") or {}).items()) or "empty")
        metrics.add(str(log.get("metric", "loss")))
    trials = sorted({int(log.get("trials", 0)) for _, _, log in logs if log.get("trials")})
    return {"table": {"header": ["learner", "seed", "trials", f"best {'/'.join(sorted(metrics))}"
                                 " (last warm-up wave)", "chosen hyperparameters"],
                      "rows": rows},
            "spaces": sorted(spaces.items()),
            "trials": ", ".join(map(str, trials)) or "0",
            "metric": ", ".join(sorted(metrics))}
