"""RunResult: what one (scenario, seed, learner) cell of a sweep produces.

The long-format frames below are the contract between evaluation, the results store and the
report; their columns are fixed here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

#: per wave x shots x steps x metric (metric names: see evaluation.metrics.METRICS)
RECORD_COLUMNS = ["wave", "shots", "steps", "metric", "value"]
#: one row per shift event of the stream
SHIFT_COLUMNS = ["wave", "tick", "kind", "name", "target", "size"]
#: one row per run-level summary (name e.g. "regret", "auc_steps", "recovery_waves[0]")
SUMMARY_COLUMNS = ["name", "value"]


@dataclass
class RunResult:
    """Everything the prequential protocol measured for one learner on one stream."""

    records: pd.DataFrame                      # RECORD_COLUMNS
    summary: dict[str, float]                  # run-level summaries
    shifts: pd.DataFrame                       # SHIFT_COLUMNS
    status: str = "ok"                         # "ok" | "diverged"
    #: wall seconds meta_fit_s, adapt_s, total_s and CPU seconds (``time.process_time``)
    #: meta_fit_cpu_s, adapt_cpu_s, total_cpu_s, summed over the run's calls
    timings: dict[str, float] = field(default_factory=dict)
    log: dict[str, Any] = field(default_factory=dict)         # learner meta-fit logs etc.
    #: each group's prevalence estimate per scored wave x K at the scored step, with its
    #: interval, observed share and truth (``evaluation.poststrat.GROUP_COLUMNS``)
    prevalence: pd.DataFrame = field(default_factory=pd.DataFrame)
