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

from simlab.experiment.store import read_entry


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list):
        return "(" + ", ".join(_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return str(v)


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


def _score(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):.4g}"


def _trials(log: dict[str, Any]) -> str:
    """``"24 (9 complete, 14 pruned, 1 diverged)"``; logs from before pruning say "ok"."""
    trace = log.get("trace") or []
    if not trace:
        return "0"
    n = {s: sum(t.get("state") == s for t in trace) for s in ("complete", "pruned", "diverged")}
    free = "; budget-free: one rung" if log.get("budget_free") else ""
    return (f"{len(trace)} ({n['complete']} complete, {n['pruned']} pruned, "
            f"{len(trace) - n['complete'] - n['pruned']} diverged{free})")


def _search_text(logs: list[dict[str, Any]]) -> str:
    """How the trials were spent, e.g. "TPE after 8 random start-up trials; successive_halving
    pruning on 3 budget rungs"; empty for logs from before the search was recorded."""
    texts = []
    for se in {json.dumps(log.get("search"), sort_keys=True) for log in logs if log.get("search")}:
        d = json.loads(se)
        prune = ("no pruning" if d["pruner"] == "none" or d["rungs"] < 2 else
                 f"{d['pruner'].replace('_', ' ')} pruning on {d['rungs']} budget rungs, each "
                 "3x the last's iterations up to the full budget")
        texts.append(f"TPE after {d['startup']} random start-up trials, {prune}, scored "
                     f"rolling-origin on the last {d['folds']} warm-up wave"
                     f"{'s' if d['folds'] > 1 else ''}")
    return "; ".join(sorted(texts))


def tuning_section(runs: pd.DataFrame) -> dict[str, Any] | None:
    """Context for ``_tuning.*.j2``: a table (learner, seed, trials completed/pruned, the
    untuned and the tuned score, the gain, chosen hyperparameters) and each learner's searched
    space; None when no run was tuned. The gain is untuned minus tuned on the tuning folds
    (lower is better, so a positive gain is an improvement)."""
    if "tuning" not in runs.columns:
        return None
    entries = [(lab, int(seed), read_entry(text))
               for lab, seed, text in zip(runs["learner"], runs["seed"], runs["tuning"])]
    logs = sorted(((lab, seed, log) for lab, seed, log in entries if log is not None),
                  key=lambda x: (str(x[0]), x[1]))
    if not logs:
        return None
    rows: list[list[Any]] = []
    spaces: dict[str, str] = {}
    metrics: set[str] = set()
    folds: set[int] = set()
    for learner, seed, log in _shared(logs):
        best, untuned = log.get("best_value"), log.get("untuned_value")
        gain = log.get("gain")
        chosen = ", ".join(f"{k}={_value(v)}" for k, v in (log.get("best_params") or {}).items())
        rows.append([str(learner), seed, _trials(log), _score(untuned), _score(best),
                     "–" if gain is None else f"{float(gain):+.4g}",
                     chosen or ("nothing to tune" if not log.get("trials") else "defaults")])
        spaces.setdefault(str(learner), ", ".join(f"{k} {v}" for k, v in
                                                  (log.get("space") or {}).items()) or "empty")
        metrics.add(str(log.get("metric", "loss")))
        folds.add(int((log.get("search") or {}).get("folds", 1)))
    trials = sorted({int(log.get("trials", 0)) for _, _, log in logs if log.get("trials")})
    metric = "/".join(sorted(metrics))
    where = ("last warm-up wave" if folds == {1} else
             f"last {'/'.join(map(str, sorted(folds)))} warm-up waves")
    return {"table": {"header": ["learner", "seeds", "trials", f"untuned {metric} ({where})",
                                 f"tuned {metric}", "gain", "chosen hyperparameters"],
                      "rows": rows},
            "spaces": sorted(spaces.items()),
            "trials": ", ".join(map(str, trials)) or "0",
            "metric": ", ".join(sorted(metrics)),
            "search": _search_text([log for _, _, log in logs])}
