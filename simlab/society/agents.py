"""Person: a Mesa agent that is a view on one row of its Society's arrays.

Why views: the dynamics update whole arrays at once (a few sparse operations per tick), and a
Mesa agent object costs a few hundred bytes and 5-20 microseconds to create and register
(measured here: 250-450 B, Mesa 3.5 / 3.3), so a 1,000,000-agent society with one object per
agent would spend hundreds of MiB and many seconds before its first tick. Instead
``Society.person(i)`` creates a ``Person`` the first time agent i is asked for (it then lives in
``model.agents`` like any Mesa agent and is returned again on later calls), and every
attribute reads or writes the model's arrays, so a Person is never stale and costs nothing
until used. ``Society.people(idx)`` gives a Mesa ``AgentSet`` for inspection, plotting or
custom per-agent rules; ``people()`` materialises everyone (fine for small societies).

Works with Mesa 3.3 and 3.5 (only ``Agent(model)``, ``model.register_agent`` via the base
constructor and ``mesa.agent.AgentSet`` are used).
"""
from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import mesa
import numpy as np

from simlab.errors import PluginError

if TYPE_CHECKING:  # pragma: no cover
    from simlab.society.view import SocietyView


class Person(mesa.Agent):
    """Agent ``index`` of a :class:`~simlab.society.base.Society`.

    Properties read the model's arrays: ``group``, ``group_name``, ``traits`` (observed, on the
    stored scale), ``latent``, ``degree``, ``friends``; each name in the society's
    ``state_names`` (e.g. ``opinion``) is a read/write property on the state array.
    ``step`` does nothing: the society advances everyone at once.
    """

    def __init__(self, model: SocietyView, index: int) -> None:
        super().__init__(model)
        self.index = int(index)

    @property
    def group(self) -> int:
        return int(self.model.social.groups[self.index])

    @property
    def group_name(self) -> str:
        return self.model.social.group_names[self.group]

    @property
    def traits(self) -> dict[str, float]:
        row = self.model.pop.observed[self.index]
        return {n: float(v) for n, v in zip(self.model.pop.observed_names, row)}

    def trait(self, name: str) -> float:
        """One observed trait (KeyError lists the valid names)."""
        return float(self.model.pop.observed[self.index, self.model.pop.column(name)])

    @property
    def latent(self) -> dict[str, float]:
        return {n: float(v[self.index]) for n, v in self.model.pop.latent.items()}

    @property
    def degree(self) -> int:
        return int(self.model.social.degree[self.index])

    @property
    def friends(self) -> np.ndarray:
        """Agent indices of this person's neighbours."""
        adj = self.model.social.adj
        return adj.indices[adj.indptr[self.index]:adj.indptr[self.index + 1]].astype(np.int64)

    def friend_people(self) -> list[Person]:
        """The neighbours as Persons (materialises them)."""
        return [self.model.person(j) for j in self.friends]

    @property
    def state(self) -> dict[str, Any]:
        """Every state variable of the dynamics for this person."""
        return {n: getattr(self, n) for n in type(self.model).state_names}

    def remove(self) -> None:
        """Deregister from Mesa (the person's row in the arrays stays: agents do not die)."""
        self.model._persons.pop(self.index, None)
        super().remove()

    def __repr__(self) -> str:
        return f"Person(index={self.index}, group={self.group_name!r})"


def _state_property(name: str) -> property:
    def get(self: Person) -> Any:
        value = getattr(self.model, name)[self.index]
        return value.item() if isinstance(value, np.generic) else value

    def put(self: Person, value: Any) -> None:
        getattr(self.model, name)[self.index] = value

    return property(get, put, doc=f"this person's entry of the model's ``{name}`` array")


@cache
def person_class(society_cls: type) -> type[Person]:
    """``Person`` subclass with one property per ``society_cls.state_names`` entry."""
    names = tuple(getattr(society_cls, "state_names", ()))
    clash = [n for n in names if hasattr(Person, n) or n in ("model", "unique_id", "pos", "index")]
    if clash:
        raise PluginError(f"{society_cls.__name__}.state_names {clash} clash with Person "
                          f"attributes; rename those state arrays")
    if not names:
        return Person
    attrs: dict[str, Any] = {n: _state_property(n) for n in names}
    attrs["__module__"] = __name__
    return type(f"{society_cls.__name__}Person", (Person,), attrs)
