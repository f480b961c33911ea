"""What part a learner plays in a comparison: its declared role (torch-free, so the
statistics and the report read it without importing a learner).

Every learner class declares ``role`` (``Learner.role``; ``cpd:NAME`` takes NAME's), the
protocol writes it into the run log (``log["role"]``) and the statistics read it back from the
store, so a plug-in can declare itself a baseline:

* ``"meta"``: a method under test (the default);
* ``"baseline"``: what survey methodologists already use; every method is tested against the
  best of them and against partial pooling (:data:`REFERENCE`);
* ``"naive"``: a naive forecast (a baseline too) that every other learner must beat, flagged
  "worse than" when it does not;
* ``"oracle"``: the true probabilities; ``"reference"``: another attainable bound (the
  ``floor``). Both are shown, never compared.

Run logs written before roles were recorded are read through :func:`recorded_role`, the one
place that falls back to the built-in learners' names (:data:`BUILTIN_ROLES`).
"""
from __future__ import annotations

from typing import Any, Literal, get_args

Role = Literal["meta", "baseline", "naive", "oracle", "reference"]
ROLES: tuple[str, ...] = get_args(Role)
#: the baseline every method must beat to earn its place (a registry name)
REFERENCE = "partial_pooling"
#: the built-in oracle's registry name (what the report calls the ceiling)
ORACLE = "oracle"
#: the built-in learners that are not methods, by registry name: what a run log without a
#: ``role`` entry (written before roles were recorded) is read as. The classes declare the
#: same (``tests/test_registry.py`` checks they agree); everything else is ``"meta"``.
BUILTIN_ROLES: dict[str, Role] = {
    "scratch": "baseline", "finetune": "baseline", "partial_pooling": "baseline",
    "dynamic_mlm": "baseline", "persistence": "naive", "group_mean": "naive",
    "oracle": "oracle", "floor": "reference"}


def builtin_role(name: str) -> Role:
    """The role of a built-in learner name (``cpd:NAME``: NAME's); ``"meta"`` otherwise."""
    return BUILTIN_ROLES.get(str(name).removeprefix("cpd:"), "meta")


def recorded_role(role: Any, name: str) -> str:
    """A run's role: the one its log recorded, else (an older log, a failed run without one)
    the built-in table's for its registry ``name``."""
    return str(role) if isinstance(role, str) and role in ROLES else builtin_role(name)


def is_baseline(role: str) -> bool:
    """A baseline (the naive forecasts included): a reference for the methods."""
    return role in ("baseline", "naive")


def is_naive(role: str) -> bool:
    return role == "naive"


def is_oracle(role: str) -> bool:
    return role == "oracle"


def is_reference(role: str) -> bool:
    """A bound shown against the others and never compared (the oracle, the floor)."""
    return role in ("oracle", "reference")


def is_method(role: str) -> bool:
    """A learner under test: compared against the baselines."""
    return not is_baseline(role) and not is_reference(role)


def baseline_names() -> tuple[str, ...]:
    """The built-in baselines' names, naive ones last (for messages that list them)."""
    return tuple(n for n, r in BUILTIN_ROLES.items() if r == "baseline") + naive_names()


def naive_names() -> tuple[str, ...]:
    """The built-in naive forecasts' names."""
    return tuple(n for n, r in BUILTIN_ROLES.items() if r == "naive")


__all__ = ["BUILTIN_ROLES", "ORACLE", "REFERENCE", "ROLES", "Role", "baseline_names",
           "builtin_role", "is_baseline", "is_method", "is_naive", "is_oracle", "is_reference",
           "naive_names", "recorded_role"]
