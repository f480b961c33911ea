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
from pydantic import ConfigDict

from simlab.errors import ScenarioError
from simlab.schema import StrictModel
from simlab.tasks.task import TargetKind

if TYPE_CHECKING:  # pragma: no cover
    from mesa.agent import AgentSet

    from simlab.society.agents import Person
    from simlab.society.graphs import SocialGraph
    from simlab.society.population import Population
    from simlab.society.response import FormChange, Response, ResponseSpec
    from simlab.society.shocks import Shock


class DynamicsParams(StrictModel):
    """Base of every dynamics family's parameters: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Society(mesa.Model):
    """A population on a social graph whose behaviour follows one published mechanism.

    Subclasses set ``family``, ``target``, ``n_classes``, ``Params`` and implement
    ``init_state``, ``advance`` and ``oracle``. The response of agent i is drawn from
    ``oracle(i)``: the true P(y=1) (binary), class probabilities (multiclass) or E[y]
    (regression, with Gaussian noise ``response_sd``), typically a link of
    ``trait_score(i) + (state term of the dynamics)``. The building blocks the families
    share live here (``trait_score``, ``friend_mean``, ``latent_z``, ``latent_ratio``,
    :func:`sample_classes`), so each family module holds only its own mechanism.
    Shocks change named parameters (see ``get``/``set``) on their ticks.

    Mesa agents are views: ``person(i)`` / ``people(idx)`` materialise
    :class:`~simlab.society.agents.Person` objects on demand (only those are in
    ``self.agents``), so a million-agent society costs only its arrays. Subclasses list their
    per-agent state arrays in ``state_names`` (e.g. ``("opinion",)``) to expose them as
    ``Person`` properties.
    """

    family: ClassVar[str] = "society"
    # class defaults a family may override per instance (a continuous opinion answer, the
    # coevolving model's n_parties), so instance attributes rather than ClassVars
    target: TargetKind = "binary"
    n_classes: int = 2
    response_sd: float = 1.0
    Params: ClassVar[type[DynamicsParams]] = DynamicsParams
    state_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, graph: SocialGraph, population: Population,
                 params: DynamicsParams | None = None, shocks: Sequence[Shock] = (),
                 rng: int | np.random.Generator | None = None,
                 response: ResponseSpec | None = None,
                 response_rng: np.random.Generator | None = None) -> None:
        super().__init__(rng=rng)
        self.social = graph
        self.pop = population
        self.params = (params or self.Params()).model_copy()
        self.coef = population.coef.copy()          # [G, D] behaviour coefficients
        self.intercept = population.intercept.copy()  # [G]
        self.shocks = list(shocks)
        self.tick = 0                                # own counter: Mesa's steps/time differ
        self.events: list[tuple[int, Shock | FormChange, float]] = []
        self._persons: dict[int, Person] = {}
        from simlab.society.response import GLMResponse, GLMSpec

        # the initial state is drawn under the linear score (a threshold response needs the
        # state it reads); the mechanism draws its group-specific shapes from its own
        # generator, so a GLM society consumes exactly the draws it did before
        self.response_spec = response or GLMSpec()
        self.response: Response = GLMResponse(GLMSpec(), self, np.random.default_rng(0))
        self.init_state()
        self.response = self.response_spec.build(
            self, response_rng if response_rng is not None else np.random.default_rng(0))

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
        change = self.response.on_tick(self, self.tick)
        if change is not None:
            self.events.append((self.tick, change, 1.0))
        self.advance()

    # --- parameters that shocks address by name -------------------------------------------
    def get(self, path: str) -> Any:
        """``"coef.<trait>"``, ``"intercept"``, ``"response.<field>"`` or a field of ``params``."""
        head, _, rest = path.partition(".")
        if head == "response" and rest in self.response.values:
            return self.response.get(rest)
        if head == "coef":
            return self.coef[:, self.pop.column(rest)]
        if head == "intercept":
            return self.intercept
        if head in type(self.params).model_fields:
            return getattr(self.params, head)
        raise KeyError(self._unknown(path))

    def set(self, path: str, value: Any) -> None:
        """Change a parameter ``get`` names (params fields are re-validated on assignment)."""
        head, _, rest = path.partition(".")
        if head == "response" and rest in self.response.values:
            self.response.set(rest, value)
        elif head == "coef":
            self.coef[:, self.pop.column(rest)] = value
        elif head == "intercept":
            self.intercept[:] = value
        elif head in type(self.params).model_fields:
            setattr(self.params, head, value)
        else:
            raise KeyError(self._unknown(path))

    def parameter_names(self) -> list[str]:
        """Every path ``get``/``set`` accept (what a shock may target)."""
        names = ["intercept"] + [f"coef.{n}" for n in self.pop.observed_names]
        names += [f"response.{n}" for n in self.response.values]
        return names + list(type(self.params).model_fields)

    def _unknown(self, path: str) -> str:
        return (f"{self.family} has no parameter {path!r}; shocks can change: "
                f"{', '.join(self.parameter_names())}")

    # --- Mesa agents as views on the arrays -------------------------------------------------
    def person(self, i: int) -> Person:
        """The Mesa agent of agent index ``i``, created (and registered) on first use."""
        from simlab.society.agents import person_class

        i = int(i)
        if not 0 <= i < self.n_agents:
            raise IndexError(f"agent index {i} out of range 0..{self.n_agents - 1}")
        found = self._persons.get(i)
        if found is None:
            cls: type = type(self)   # type[Society] reads as unhashable to mypy's Hashable check
            found = person_class(cls)(self, i)
            self._persons[i] = found
        return found

    def people(self, idx: Sequence[int] | np.ndarray | None = None) -> AgentSet:
        """Mesa ``AgentSet`` of the agents ``idx`` (all agents when None; each new Person costs
        a few hundred bytes and microseconds, so prefer the arrays for large societies)."""
        from mesa.agent import AgentSet

        idx = range(self.n_agents) if idx is None else np.asarray(idx).ravel().tolist()
        return AgentSet([self.person(i) for i in idx], random=self.random)

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

    # --- shared building blocks of the dynamics and responses ------------------------------
    def trait_score(self, idx: np.ndarray) -> np.ndarray:
        """The trait part of every response for agents idx, from the society's response
        mechanism (:mod:`simlab.society.response`; the GLM default is ``linear_score``)."""
        return self.response.score(self, np.asarray(idx))

    def linear_score(self, idx: np.ndarray) -> np.ndarray:
        """``intercept[g] + x_i . coef[g]`` for agents idx, in float64 because the oracle built
        on it is what learners are scored against."""
        g = self.groups[idx]
        x = self.pop.observed[idx].astype(np.float64)
        return self.intercept[g].astype(np.float64) + np.einsum("nd,nd->n", x, self.coef[g])

    def friend_mean(self, idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Mean of ``values`` (``[N]`` or ``[N, C]``) over the friends of agents idx (0 without
        friends). Slices the CSR rows of idx only, so a survey of a few respondents costs
        O(their degree), not a pass over the whole graph."""
        deg = np.maximum(self.social.degree[idx], 1.0)
        return (self.social.adj[idx] @ values) / deg.reshape((-1,) + (1,) * (values.ndim - 1))

    def latent(self, name: str) -> np.ndarray:
        """The population's latent trait ``name`` (float64), for dynamics that need it."""
        raw = self.pop.latent.get(name)
        if raw is None:
            raise ScenarioError(f"the {self.family} society needs the latent trait {name!r}, but "
                                f"the population has only {sorted(self.pop.latent)}; draw it with "
                                f"make_population or add population.latent[{name!r}] ([N] array)")
        return np.asarray(raw, dtype=np.float64)

    def latent_z(self, name: str) -> np.ndarray:
        """The population's latent trait ``name`` as z-scores over all agents (who is higher,
        community differences included, comes from the population; the scale from the
        dynamics' parameters). Standard normal draws from ``self.rng`` if the trait is absent."""
        raw = self.pop.latent.get(name)
        if raw is None:
            return self.rng.standard_normal(self.n_agents)
        raw = np.asarray(raw, dtype=np.float64)
        sd = raw.std()
        return (raw - raw.mean()) / sd if sd > 0 else np.zeros_like(raw)

    def latent_ratio(self, name: str) -> np.ndarray:
        """The latent trait ``name`` relative to its population mean (mean 1); all ones when
        the population has no such trait (the homogeneous model of the paper)."""
        raw = self.pop.latent.get(name)
        if raw is None:
            return np.ones(self.n_agents)
        if np.min(raw) < 0 or not np.mean(raw) > 0:
            raise ScenarioError(f"population.latent[{name!r}] is a rate or factor for the "
                                f"{self.family} society and must be >= 0 with a positive mean "
                                f"(min {np.min(raw):.3g}, mean {np.mean(raw):.3g}); rescale it")
        return np.asarray(raw, np.float64) / np.mean(raw)

    def ego_answers(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Ego-network survey answers for agents idx, e.g. share of friends who adopted.

        Naming fixes the survey's transform: ``n_*`` are counts (the survey reports
        ``log1p``), ``share_*`` are shares in [0, 1] (kept as they are); anything else is
        used unchanged, so return it on a fixed scale.
        """
        return {"n_friends": self.social.degree[idx].astype(np.float32)}

    def respond(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sample the responses of agents idx from the oracle."""
        p = self.oracle(idx)
        if self.target == "binary":
            return (rng.random(len(idx)) < p).astype(np.float32)
        if self.target == "multiclass":
            return sample_classes(p, rng)
        return (p + self.response_sd * rng.standard_normal(len(idx))).astype(np.float32)


def sample_classes(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One class per row of ``probs [n, C]`` (inverse CDF, one uniform per row; the clip
    guards against rows summing to slightly under 1)."""
    u = rng.random((len(probs), 1))
    return np.minimum((np.cumsum(probs, axis=1) < u).sum(axis=1), probs.shape[1] - 1)
