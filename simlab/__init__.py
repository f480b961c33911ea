"""simlab: few-shot meta-learners scored on simulated societies that keep changing.

The top-level names are imported lazily so that the society layer runs without torch.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_scenario": "simlab.experiment.config",
    "Scenario": "simlab.experiment.config",
    "make_learner": "simlab.learners.registry",
    "evaluate": "simlab.evaluation.protocol",
    "Task": "simlab.tasks.task",
    "TaskStream": "simlab.tasks.task",
    "TaskBatch": "simlab.tasks.batch",
    "Budget": "simlab.learners.base",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'simlab' has no attribute {name!r}")


__all__ = sorted(_LAZY) + ["__version__"]
