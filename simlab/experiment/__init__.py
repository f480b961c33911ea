"""experiment layer of simlab (see docs/DESIGN.md): scenario configs, sweeps, executors, the store.

Names are imported lazily so that ``simlab --help`` and the society layer stay light.
"""
from __future__ import annotations

from simlab._lazy import lazy_exports

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
    "make_executor": "simlab.experiment.executors",
}


__getattr__, __all__ = lazy_exports(__name__, _LAZY)
