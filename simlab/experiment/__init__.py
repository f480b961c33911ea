"""experiment layer of simlab (see DESIGN.md): scenario configs, sweeps, executors, the store.

Names are imported lazily so that ``simlab --help`` and the society layer stay light.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "Scenario": "simlab.experiment.config",
    "load_scenario": "simlab.experiment.config",
    "list_scenarios": "simlab.experiment.config",
    "Store": "simlab.experiment.store",
    "Cell": "simlab.experiment.store",
    "StoreError": "simlab.experiment.store",
    "LearnerSpec": "simlab.experiment.sweep",
    "SweepSummary": "simlab.experiment.sweep",
    "run_sweep": "simlab.experiment.sweep",
    "load_sweep": "simlab.experiment.sweep",
    "report_from_store": "simlab.experiment.sweep",
    "make_executor": "simlab.experiment.executors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'simlab.experiment' has no attribute {name!r}")


__all__ = sorted(_LAZY)
