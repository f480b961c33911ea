"""The report's tuning section: per learner (and seed, where each seed was tuned alone), the
trials it got and what they chose.

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


def _seed_text(seeds: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    runs: list[list[int]] = []
    for s in sorted(set(seeds)):
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def _shared(logs: list[tuple[Any, int, dict[str, Any]]]) -> list[tuple[Any, str, dict]]:
    """One row per tuning: the runs of a learner that share one tuning job (``"shared"`` logs
    with the same choice, trace and seeds) collapse into one, e.g. seeds "0-5 (tuned on 0, 1)"."""
    groups: dict[tuple[str, str], tuple[Any, list[int], dict[str, Any]]] = {}
    for learner, seed, log in logs:
        ident = json.dumps({k: log.get(k) for k in ("best_params", "trace", "seeds")},
                           sort_keys=True, default=str) if log.get("shared") else f"seed {seed}"
        groups.setdefault((str(learner), ident), (learner, [], log))[1].append(seed)
    out = []
    for learner, seeds, log in groups.values():
        on = [int(s) for s in log.get("seeds") or []]
        text = _seed_text(seeds)
        out.append((learner, text if not on or sorted(on) == sorted(seeds)
                    else f"{text} (tuned on {_seed_text(on)})", log))
    return out


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
    for learner, seed, log in _shared(logs):
        trace = log.get("trace") or []
        ok = sum(t.get("state") == "complete" for t in trace)
        best = log.get("best_value")
        chosen = ", ".join(f"{k}={_value(v)}" for k, v in (log.get("best_params") or {}).items())
        rows.append([str(learner), seed,
                     f"{len(trace)} ({ok} ok, {len(trace) - ok} diverged)" if trace else "0",
                     "–" if best is None or (isinstance(best, float) and math.isnan(best))
                     else f"{float(best):.4g}",
                     chosen or ("nothing to tune" if not log.get("trials") else "defaults")])
        spaces.setdefault(str(learner), ", ".join(f"{k} {v}" for k, v in
                                                  (log.get("space") or {}).items()) or "empty")
        metrics.add(str(log.get("metric", "loss")))
    trials = sorted({int(log.get("trials", 0)) for _, _, log in logs if log.get("trials")})
    return {"table": {"header": ["learner", "seeds", "trials", f"best {'/'.join(sorted(metrics))}"
                                 " (last warm-up wave)", "chosen hyperparameters"],
                      "rows": rows},
            "spaces": sorted(spaces.items()),
            "trials": ", ".join(map(str, trials)) or "0",
            "metric": ", ".join(sorted(metrics))}
