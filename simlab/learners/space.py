"""Search-space ranges for equal-budget tuning, without torch: scenario validation (and the
society layer's tests, which run without torch) can read them.

A learner's ``search_space`` maps a dataclass field to one of these.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Float:
    """A real hyperparameter in ``[low, high]`` (sampled on a log scale when ``log``)."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class Int:
    """An integer hyperparameter in ``[low, high]``."""

    low: int
    high: int
    log: bool = False


@dataclass(frozen=True)
class Choice:
    """A categorical hyperparameter: one of ``choices`` (numbers, strings, bools or tuples)."""

    choices: tuple[Any, ...]


#: what equal-budget tuning may vary: dataclass field name -> its range
SearchSpace = dict[str, "Float | Int | Choice"]


__all__ = ["Choice", "Float", "Int", "SearchSpace"]
