"""Society: the Mesa model every dynamics family subclasses.

Agent state lives in numpy arrays owned by the model, so one ``step`` is a vectorised update
over the whole population. Randomness comes only from ``self.rng`` (Mesa's ``rng=``).
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import mesa
import numpy as np
from pydantic import BaseModel, ConfigDict

from simlab.tasks.task import TargetKind

if TYPE_CHECKING:  # pragma: no cover
    from simlab.society.graphs import SocialGraph
    from simlab.society.population import Population
    from simlab.society.shocks import Shock


class DynamicsParams(BaseModel):
    """Base of every dynamics family's parameters: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Society(mesa.Model):
    """A population on a social graph whose behaviour follows one published mechanism.

    Subclasses set ``family``, ``target``, ``n_classes``, ``Params`` and implement
    ``init_state``, ``advance`` and ``oracle``. The response of agent i is drawn from
    ``oracle(i)``: the true P(y=1) (binary), class probabilities (multiclass) or E[y]
    (regression, with Gaussian noise ``response_sd``), typically a link of
    ``intercept[g] + traits_i @ coef[g] + (state term of the dynamics)``.
    Shocks change named parameters (see ``get``/``set``) on their ticks.
    """

    family: ClassVar[str] = "society"
    target: ClassVar[TargetKind] = "binary"
    n_classes: ClassVar[int] = 2
    response_sd: float = 1.0
    Params: ClassVar[type[DynamicsParams]] = DynamicsParams

    def __init__(self, graph: SocialGraph, population: Population,
                 params: DynamicsParams | None = None, shocks: Sequence[Shock] = (),
                 rng: int | np.random.Generator | None = None) -> None:
        super().__init__(rng=rng)
        self.social = graph
        self.pop = population
        self.params = (params or self.Params()).model_copy()
        self.coef = population.coef.copy()          # [G, D] behaviour coefficients
        self.intercept = population.intercept.copy()  # [G]
        self.shocks = list(shocks)
        self.tick = 0                                # own counter: Mesa's steps/time differ
        self.events: list[tuple[int, Shock, float]] = []
        self.init_state()

    @property
    def n_agents(self) -> int:
        return self.social.n_nodes

    @property
    def groups(self) -> np.ndarray:
        return self.social.groups

    def step(self) -> None:
        """One tick: fire the shocks due now (recording each), then the vectorised update."""
        self.tick += 1
        for shock in self.shocks:
            size = shock.apply(self, self.tick)
            if size is not None:
                self.events.append((self.tick, shock, size))
        self.advance()

    # --- parameters that shocks address by name -------------------------------------------
    def get(self, path: str) -> Any:
        """``"coef.<trait>"``, ``"intercept"`` or a field of ``params``."""
        head, _, rest = path.partition(".")
        if head == "coef":
            return self.coef[:, self.pop.column(rest)]
        if head == "intercept":
            return self.intercept
        if head in type(self.params).model_fields:
            return getattr(self.params, head)
        raise KeyError(self._unknown(path))

    def set(self, path: str, value: Any) -> None:
        head, _, rest = path.partition(".")
        if head == "coef":
            self.coef[:, self.pop.column(rest)] = value
        elif head == "intercept":
            self.intercept[:] = value
        elif head in type(self.params).model_fields:
            setattr(self.params, head, value)
        else:
            raise KeyError(self._unknown(path))

    def _unknown(self, path: str) -> str:
        names = ["intercept"] + [f"coef.{n}" for n in self.pop.observed_names]
        names += list(type(self.params).model_fields)
        return f"{self.family} has no parameter {path!r}; shocks can change: {', '.join(names)}"

    # --- what subclasses provide --------------------------------------------------------------
    @abstractmethod
    def init_state(self) -> None:
        """Create the state arrays (called once from ``__init__``)."""

    @abstractmethod
    def advance(self) -> None:
        """One vectorised tick of the dynamics."""

    @abstractmethod
    def oracle(self, idx: np.ndarray) -> np.ndarray:
        """True P(y=1) ``[n]``, class probabilities ``[n, C]`` or E[y] ``[n]`` for agents idx."""

    def ego_answers(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Ego-network survey answers for agents idx, e.g. share of friends who adopted."""
        return {"n_friends": self.social.degree[idx].astype(np.float32)}

    def respond(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sample the responses of agents idx from the oracle."""
        p = self.oracle(idx)
        if self.target == "binary":
            return (rng.random(len(idx)) < p).astype(np.float32)
        if self.target == "multiclass":
            u = rng.random((len(idx), 1))
            return np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), self.n_classes - 1)
        return (p + self.response_sd * rng.standard_normal(len(idx))).astype(np.float32)
