"""Find learners by name, by entry point (group ``simlab.learners``) or as ``pkg.mod:Class``."""
from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Any

from simlab.learners.base import Learner

ENTRY_POINT_GROUP = "simlab.learners"
_BUILTIN: dict[str, str] = {}   # name -> "module:Class", filled by ``register``
#: ``cpd:NAME`` wraps learner NAME in Bayesian online changepoint detection
CPD_PREFIX = "cpd:"


def register(name: str, target: str) -> None:
    """Register a built-in learner lazily (imported only when asked for)."""
    _BUILTIN[name] = target


def available() -> dict[str, str]:
    """Every learner name a user can ask for, mapped to where it lives."""
    found = dict(_BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def learner_class(name: str) -> type[Learner]:
    """Resolve a name, an entry point, ``cpd:NAME`` or ``package.module:Class`` to a Learner
    subclass."""
    if name.startswith(CPD_PREFIX):
        from simlab.learners.changepoint import wrapper_class   # noqa: PLC0415 (lazy)
        return wrapper_class(name[len(CPD_PREFIX):])
    target = name if ":" in name else available().get(name)
    if target is None:
        close = difflib.get_close_matches(name, available(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown learner {name!r}.{hint} Valid: {', '.join(sorted(available()))}"
                         " (or give package.module:Class).")
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"learner {name!r}: cannot import {target!r} ({err})") from err
    if not (isinstance(cls, type) and issubclass(cls, Learner)):
        raise ValueError(f"learner {name!r}: {target!r} is not a simlab Learner subclass")
    return cls


def make_learner(name: str, **hyperparameters: Any) -> Learner:
    """Build a learner; an unknown hyperparameter names the valid ones."""
    cls = learner_class(name)
    try:
        return cls(**hyperparameters)
    except TypeError as err:
        fields = getattr(cls, "__dataclass_fields__", {})
        raise ValueError(f"learner {name!r}: {err}. Valid hyperparameters: "
                         f"{', '.join(fields) or 'none'}") from err
