"""Shocks: scheduled changes of a society's parameters (the shifts a learner must follow).

A shock addresses a parameter by the path ``Society.get``/``Society.set`` understand:
``"coef.<trait>"`` (how a trait relates to the response, every community at once),
``"intercept"`` or a field of the dynamics parameters (e.g. ``"media_push"``). Three kinds:

- :class:`AbruptShock` -- one change at one tick (a media event, a price drop, an outbreak);
- :class:`DriftShock` -- a gradual linear change spread over ticks ``[start, end)``;
- :class:`RegimeShock` -- recurring regimes that cycle through ``values`` every ``period``.

``apply(society, tick)`` performs the change due at ``tick`` and returns its size (mean of
new - old over communities; a drift's total) when an event should be recorded, else None.
``Society.step`` calls it for every shock after advancing its tick counter, so the first tick
is 1. :func:`validate_shocks` checks a schedule against a society before a run starts.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from simlab.errors import ScenarioError
from simlab.schema import StrictModel

if TYPE_CHECKING:  # pragma: no cover
    from simlab.society.view import SocietyView

Value = float | list[float]
"""A scalar, or one value per community for ``coef.*`` / ``intercept``."""


class Shock(StrictModel):
    """Base of every shock: a named change of one parameter path."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    name: str = Field(min_length=1, description="label of the event, e.g. 'media_event'")
    target: str = Field(min_length=1, description="'coef.<trait>', 'intercept' or a param")

    @abstractmethod
    def apply(self, society: SocietyView, tick: int) -> float | None:
        """Change ``society`` as due at ``tick``; the event size, or None for no event."""

    @abstractmethod
    def ticks(self) -> tuple[int, int]:
        """First and last tick on which this shock changes anything."""

    @abstractmethod
    def amounts(self) -> list[tuple[str, Value]]:
        """(field name, value) pairs that are written to or added to the target."""


def _current(society: SocietyView, path: str) -> np.ndarray:
    return np.array(society.get(path), dtype=np.float64, copy=True)


def _write(society: SocietyView, path: str, old: np.ndarray, new: np.ndarray) -> float:
    """Set ``path`` to ``new`` (a float for scalar params) and return mean(new - old)."""
    new = np.broadcast_to(np.asarray(new, dtype=np.float64), old.shape)
    society.set(path, float(new) if new.ndim == 0 else new.copy())
    return float(np.mean(new - old))


class AbruptShock(Shock):
    """At tick ``at`` set the target to ``value`` or add ``delta`` (give exactly one)."""

    kind: Literal["abrupt"] = "abrupt"
    at: int = Field(ge=1, description="tick of the change (ticks start at 1)")
    value: Value | None = None
    delta: Value | None = None

    @model_validator(mode="after")
    def _one_of(self) -> AbruptShock:
        if (self.value is None) == (self.delta is None):
            raise ScenarioError(f"shock {self.name!r}: give exactly one of value (new level) or "
                                f"delta (change), got value={self.value!r}, delta={self.delta!r}")
        return self

    def apply(self, society: SocietyView, tick: int) -> float | None:
        if tick != self.at:
            return None
        old = _current(society, self.target)
        new = np.asarray(self.value, dtype=np.float64) if self.value is not None \
            else old + np.asarray(self.delta, dtype=np.float64)
        return _write(society, self.target, old, new)

    def ticks(self) -> tuple[int, int]:
        return self.at, self.at

    def amounts(self) -> list[tuple[str, Value]]:
        if self.value is not None:
            return [("value", self.value)]
        assert self.delta is not None                     # _one_of: exactly one is given
        return [("delta", self.delta)]


class DriftShock(Shock):
    """Add ``total / (end - start)`` to the target at every tick of ``[start, end)``.

    One event is recorded at ``start``, its size the total change.
    """

    kind: Literal["drift"] = "drift"
    start: int = Field(ge=1)
    end: int = Field(ge=2)
    total: Value

    @model_validator(mode="after")
    def _ordered(self) -> DriftShock:
        if self.end <= self.start:
            raise ScenarioError(f"shock {self.name!r}: end={self.end} must be after "
                                f"start={self.start}")
        return self

    def apply(self, society: SocietyView, tick: int) -> float | None:
        if not self.start <= tick < self.end:
            return None
        old = _current(society, self.target)
        rate = np.asarray(self.total, dtype=np.float64) / (self.end - self.start)
        _write(society, self.target, old, old + rate)
        return float(np.mean(self.total)) if tick == self.start else None

    def ticks(self) -> tuple[int, int]:
        return self.start, self.end - 1

    def amounts(self) -> list[tuple[str, Value]]:
        return [("total", self.total)]


class RegimeShock(Shock):
    """From tick ``start`` the target cycles through ``values``, each held ``period`` ticks.

    Entering the first regime at ``start`` sets the baseline (no event); every later switch is
    an event whose size is the change.
    """

    kind: Literal["regime"] = "regime"
    period: int = Field(ge=1, description="ticks per regime")
    regimes: list[Value] = Field(min_length=2, alias="values")
    start: int = Field(1, ge=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def apply(self, society: SocietyView, tick: int) -> float | None:
        if tick < self.start or (tick - self.start) % self.period:
            return None
        k = (tick - self.start) // self.period
        old = _current(society, self.target)
        size = _write(society, self.target, old,
                      np.asarray(self.regimes[k % len(self.regimes)], dtype=np.float64))
        return None if k == 0 else size

    def ticks(self) -> tuple[int, int]:
        return self.start, self.start

    def amounts(self) -> list[tuple[str, Value]]:
        return [(f"values[{i}]", v) for i, v in enumerate(self.regimes)]


ShockSpec = Annotated[AbruptShock | DriftShock | RegimeShock, Field(discriminator="kind")]
"""Any shock; the ``kind`` field ("abrupt" | "drift" | "regime") picks the class."""

SHOCK_KINDS: tuple[str, ...] = ("abrupt", "drift", "regime")
_SHOCKS: TypeAdapter[list[Any]] = TypeAdapter(list[ShockSpec])


def parse_shocks(items: Sequence[Mapping[str, Any] | Shock]) -> list[Shock]:
    """Validate plain dicts (e.g. TOML tables) into shock objects."""
    out: list[Shock] = []
    for i, item in enumerate(items):
        if isinstance(item, Shock):
            out.append(item)
            continue
        if item.get("kind") not in SHOCK_KINDS:
            raise ScenarioError(f"shocks[{i}] ({item.get('name', '?')!r}): kind="
                                f"{item.get('kind')!r} is unknown; use one of "
                                f"{', '.join(SHOCK_KINDS)}")
        out.extend(_SHOCKS.validate_python([dict(item)]))
    return out


def validate_shocks(shocks: Sequence[Shock], society: SocietyView, n_ticks: int) -> None:
    """Check a schedule before running: one clear ValueError for the first problem found.

    Catches a duplicate name, an unknown or non-numeric target, a shock (or part of a drift)
    after the last tick ``n_ticks``, per-community values of the wrong length, and values the
    dynamics parameters reject (e.g. a negative confidence bound).
    """
    seen: set[str] = set()
    for shock in shocks:
        if shock.name in seen:
            raise ScenarioError(f"two shocks are named {shock.name!r}; give each a unique name")
        seen.add(shock.name)
        _check_target(shock, society)
        _check_timing(shock, n_ticks)
        _check_values(shock, society)


def _check_target(shock: Shock, society: SocietyView) -> None:
    allowed = ", ".join(society.parameter_names())
    try:
        current = society.get(shock.target)
    except KeyError:
        raise ScenarioError(f"shock {shock.name!r}: target={shock.target!r} is not a parameter of "
                            f"the {society.family} society; allowed: {allowed}") from None
    if isinstance(current, (bool, str)) or not np.issubdtype(np.asarray(current).dtype,
                                                            np.number):
        raise ScenarioError(f"shock {shock.name!r}: target={shock.target!r} is not numeric "
                            f"(it is {current!r}); shocks change numbers; allowed: {allowed}")


def _check_timing(shock: Shock, n_ticks: int) -> None:
    _, last = shock.ticks()
    if last > n_ticks:
        field = {"abrupt": "at", "drift": "end", "regime": "start"}[shock.kind]
        limit = n_ticks + 1 if field == "end" else n_ticks
        raise ScenarioError(f"shock {shock.name!r}: {field}={getattr(shock, field)} is after the "
                            f"end of the run (last tick {n_ticks}); choose {field} <= {limit} or "
                            f"run longer (more waves or a larger survey.every)")


def _check_values(shock: Shock, society: SocietyView) -> None:
    current = np.asarray(society.get(shock.target), dtype=np.float64)
    for field, value in shock.amounts():
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim and (current.ndim == 0 or arr.shape != current.shape):
            shape = "a single number" if current.ndim == 0 else \
                f"a number or {current.shape[0]} numbers (one per community)"
            raise ScenarioError(f"shock {shock.name!r}: {field}={value!r} has {arr.size} entries; "
                                f"target {shock.target!r} takes {shape}")
    head = shock.target.partition(".")[0]
    if head in ("coef", "intercept", "response"):   # response fields: any real number
        return
    for field, new in _extremes(shock, float(current)):
        data = society.params.model_dump() | {shock.target: new}
        try:
            type(society.params).model_validate(data)
        except ValidationError as err:
            reason = err.errors()[0]["msg"]
            raise ScenarioError(f"shock {shock.name!r}: {field} would set {shock.target}={new!r}, "
                                f"which the parameters reject ({reason}); choose another "
                                f"value") from None


def _extremes(shock: Shock, current: float) -> list[tuple[str, float]]:
    """The levels a scalar parameter reaches under ``shock`` (to validate each)."""
    if isinstance(shock, AbruptShock):
        return [("value", _scalar(shock.value))] if shock.value is not None \
            else [("delta", current + _scalar(shock.delta))]
    if isinstance(shock, DriftShock):
        return [("total", current + _scalar(shock.total))]
    return [(f, _scalar(v)) for f, v in shock.amounts()]


def _scalar(value: Value | None) -> float:
    """An amount aimed at a scalar parameter (``_check_values`` has rejected lists there)."""
    assert value is not None and not isinstance(value, list), value
    return float(value)
