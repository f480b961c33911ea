"""The report's pre-training section (``[evaluation.pretrain]``): which learners meta-fitted on
which simulated tasks, with what budget and time, before the warm-up, and why the others did not.

Reads the ``pretrain`` column of the store's runs frame (the run log's ``"pretrain"`` entry,
written by ``simlab.evaluation.pretrain.before_warmup``); runs without it had no pre-training.
"""
from __future__ import annotations

import statistics
from typing import Any

import pandas as pd

from simlab.experiment.store import read_entry


def pretrain_section(runs: pd.DataFrame) -> dict[str, Any] | None:
    """Context for ``_pretrain.*.j2``: one row per learner (seeds pooled); None when no run
    carried a pre-training plan."""
    if "pretrain" not in runs.columns:
        return None
    by: dict[str, list[dict[str, Any]]] = {}
    for r in runs.itertuples(index=False):
        log = read_entry(r.pretrain)
        if log is not None:
            by.setdefault(str(r.learner), []).append(log)
    if not by:
        return None
    rows = []
    for learner, logs in sorted(by.items()):
        first = logs[0]
        src = first.get("source") or {}
        budget = first.get("budget") or {}
        applied = [x for x in logs if x.get("applied")]
        secs = [float(x.get("seconds", 0.0)) for x in applied]
        seeds = ", ".join(map(str, src.get("seeds", [])))
        rows.append([learner, "yes" if applied else "no",
                     f"{src.get('scenario', '?')} (seeds {seeds})",
                     str(first.get("tasks", "?")),
                     f"{budget.get('iterations', '?')} x {budget.get('meta_batch', '?')}",
                     f"{statistics.median(secs):.3g}" if secs else "–",
                     "" if applied else str(first.get("reason", ""))])
    return {"table": {"header": ["learner", "pre-trained", "simulated source", "tasks",
                                 "budget (iterations x meta-batch)", "seconds (median)",
                                 "why not"], "rows": rows}}


__all__ = ["pretrain_section"]
