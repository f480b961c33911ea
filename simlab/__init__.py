"""simlab: few-shot meta-learners scored on simulated societies that keep changing.

The top-level names are imported lazily so that the society layer runs without torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from simlab._lazy import lazy_exports

# What _LAZY imports on first use, spelled out for IDEs and type checkers (``X as X``: an
# explicit re-export).
if TYPE_CHECKING:
    from simlab.evaluation.protocol import evaluate as evaluate, iter_evaluate as iter_evaluate
    from simlab.experiment.config import Scenario as Scenario, load_scenario as load_scenario
    from simlab.experiment.forecast import forecast as forecast
    from simlab.experiment.store import Store as Store
    from simlab.experiment.survey_scenario import SurveyScenario as SurveyScenario
    from simlab.experiment.sweep import run_sweep as run_sweep
    from simlab.learners.registry import make_learner as make_learner
    from simlab.settings import Budget as Budget, ProtocolSettings as ProtocolSettings
    from simlab.report.store_report import compare as compare
    from simlab.tasks.batch import TaskBatch as TaskBatch
    from simlab.tasks.task import Task as Task, TaskStream as TaskStream

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
    "Budget": "simlab.settings",
    "ProtocolSettings": "simlab.settings",     # evaluate(learner, stream, settings, seed=...)
    "run_sweep": "simlab.experiment.sweep",
    "Store": "simlab.experiment.store",
    "compare": "simlab.report.store_report",       # the paired verdicts of a store as data
    "forecast": "simlab.experiment.forecast",      # fit on every wave, predict the next
}


__getattr__, __all__ = lazy_exports(__name__, _LAZY)
