"""Reference: the opinion dynamics of ``simlab.society.families.opinion`` written the idiomatic Mesa way.

Every agent is a ``mesa.Agent`` with its own ``step`` (read the neighbours' opinions, compute
the next one) and ``advance`` (commit it), so the update is synchronous like the vectorised
model's. Same graph, same initial opinions, same formula (Hegselmann & Krause 2002 bounded
confidence, Hegselmann & Krause 2006 constant signal, Friedkin & Johnsen 1990 anchoring), so
the two must agree to rounding; ``bench/society.py`` times both and tests/test_opinion.py checks
that they agree. Per-agent Python loops are the point here: this is the baseline, not the model.
"""
from __future__ import annotations

import mesa
import numpy as np

from simlab.society.families.opinion import OpinionParams
from simlab.society.graphs import SocialGraph
from simlab.society.population import Population


class OpinionAgent(mesa.Agent):
    """One person: an opinion, its initial value, a stubbornness and a list of friends."""

    def __init__(self, model: PerAgentOpinionModel, opinion: float, stubbornness: float) -> None:
        super().__init__(model)
        self.opinion = opinion
        self.initial = opinion
        self.stubbornness = stubbornness
        self.friends: list[OpinionAgent] = []
        self._next = opinion

    def step(self) -> None:
        p = self.model.params
        heard = [f.opinion for f in self.friends if abs(f.opinion - self.opinion) <= p.eps]
        mean = (self.opinion + sum(heard)) / (1 + len(heard))
        if p.media_push:
            mean = (1.0 - p.media_push) * mean + p.media_push * p.media_opinion
        g = p.anchoring * self.stubbornness
        self._next = g * self.initial + (1.0 - g) * mean

    def advance(self) -> None:
        self.opinion = self._next


class PerAgentOpinionModel(mesa.Model):
    """The same society with one Python object per agent, stepped agent by agent."""

    def __init__(self, graph: SocialGraph, population: Population,
                 params: OpinionParams | None = None,
                 rng: int | np.random.Generator | None = None) -> None:
        super().__init__(rng=rng)
        self.params = params or OpinionParams()
        self.tick = 0
        x0 = np.tanh(self.params.initial_spread
                     * population.latent["propensity"].astype(np.float64))
        stub = population.latent["stubbornness"].astype(np.float64)
        self.people = [OpinionAgent(self, float(x0[i]), float(stub[i]))
                       for i in range(graph.n_nodes)]
        adj = graph.adj
        for i, person in enumerate(self.people):
            friends = adj.indices[adj.indptr[i]:adj.indptr[i + 1]]
            person.friends = [self.people[j] for j in friends]

    def step(self) -> None:
        self.tick += 1
        self.agents.do("step")
        self.agents.do("advance")

    def opinions(self) -> np.ndarray:
        return np.array([p.opinion for p in self.people])
