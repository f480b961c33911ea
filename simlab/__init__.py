"""simlab: few-shot meta-learners scored on simulated societies that keep changing.

The top-level names are imported lazily so that the society layer runs without torch.
"""
from __future__ import annotations

from simlab._lazy import lazy_exports

__version__ = "0.1.0"
#: the results store when none is named (``simlab run``, ``run_sweep``, ``Store()``)
DEFAULT_DB = "results/simlab.db"

_LAZY = {
    "load_scenario": "simlab.experiment.config",
    "Scenario": "simlab.experiment.config",
    "SurveyScenario": "simlab.experiment.survey_scenario",
    "make_learner": "simlab.learners.registry",
    "evaluate": "simlab.evaluation.protocol",
    "iter_evaluate": "simlab.evaluation.protocol",
    "Task": "simlab.tasks.task",
    "TaskStream": "simlab.tasks.task",
    "TaskBatch": "simlab.tasks.batch",
    "Budget": "simlab.learners.base",
    "run_sweep": "simlab.experiment.sweep",
    "Store": "simlab.experiment.store",
    "compare": "simlab.report.store_report",       # the paired verdicts of a store as data
    "forecast": "simlab.experiment.forecast",      # fit on every wave, predict the next
}


__getattr__, __all__ = lazy_exports(__name__, _LAZY)
