"""Learners: the plug-in point. Built-ins are registered in ``registry`` (imported only when
asked for); others come through entry points. Names are exported lazily, so that listing the
learners does not import torch."""
from __future__ import annotations

from simlab._lazy import lazy_exports

_LAZY = {
    "Adapted": "simlab.learners.base",
    "Budget": "simlab.learners.base",
    "Learner": "simlab.learners.base",
    "TaskSpec": "simlab.learners.base",
    "ConformanceError": "simlab.learners.conformance",
    "check_learner": "simlab.learners.conformance",
    "available": "simlab.learners.registry",
    "learner_class": "simlab.learners.registry",
    "make_learner": "simlab.learners.registry",
    "register": "simlab.learners.registry",
    "describe": "simlab.learners.registry",
}

__getattr__, __all__ = lazy_exports(__name__, _LAZY)
