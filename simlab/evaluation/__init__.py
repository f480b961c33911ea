"""Evaluation layer: the prequential protocol, metrics and statistics across seeds.

Names are imported lazily: ``metrics`` and the statistics modules (inference, frames,
comparisons, verdicts, recovery) are numpy-only (the report uses them without torch);
``evaluate`` imports the learners' torch stack on first use.
"""
from __future__ import annotations

from simlab._lazy import lazy_exports

_LAZY = {
    "evaluate": "simlab.evaluation.protocol",
    "iter_evaluate": "simlab.evaluation.protocol",
    "WaveRecords": "simlab.evaluation.protocol",
    "numeric_environment": "simlab.evaluation.environment",
    "RunResult": "simlab.evaluation.result",
    "RECORD_COLUMNS": "simlab.evaluation.result",
    "SHIFT_COLUMNS": "simlab.evaluation.result",
    "SUMMARY_COLUMNS": "simlab.evaluation.result",
    "METRICS": "simlab.evaluation.metrics",
    "SummaryOptions": "simlab.evaluation.metrics",
    "summarize": "simlab.evaluation.metrics",
    "score_predictions": "simlab.evaluation.metrics",
    "seed_interval": "simlab.evaluation.inference",
    "compare": "simlab.evaluation.comparisons",
    "compare_all": "simlab.evaluation.comparisons",
    "leaderboard": "simlab.evaluation.frames",
}


__getattr__, __all__ = lazy_exports(__name__, _LAZY)
