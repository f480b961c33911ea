"""Builders shared by the society-layer tests (numpy/networkx only: no torch, so the
``society``-marked tests that import this also run on Python 3.12 + Mesa 3.5)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import networkx as nx
import numpy as np
import scipy.sparse as sp

from simlab.society.base import Society
from simlab.society.graphs import SocialGraph, planted_partition
from simlab.society.population import Population, PopulationSpec, make_population

TRAITS = ["age", "education", "income"]
S = TypeVar("S", bound=Society)


def gnp_inputs(n: int, mean_degree: float, n_groups: int = 4, seed: int = 0, *,
               latent: Sequence[str] = (), keep_networkx: bool = False
               ) -> tuple[SocialGraph, Population]:
    """A G(n, p) graph with random groups and a random population: standard normal
    ``TRAITS``, the ``latent`` traits standard normal, coefficients N(0, 0.5^2), intercept 0.

    Small and independent of ``make_population``, so a dynamics test pins its own inputs.
    """
    rng = np.random.default_rng(seed)
    g = nx.gnp_random_graph(n, mean_degree / (n - 1), seed=seed)
    adj = sp.csr_matrix(nx.to_scipy_sparse_array(g, format="csr", dtype=np.float32))
    graph = SocialGraph(adj=adj, groups=rng.integers(0, n_groups, n),
                        group_names=[f"c{i}" for i in range(n_groups)],
                        graph=g if keep_networkx else None)
    observed = rng.standard_normal((n, len(TRAITS))).astype(np.float32)
    latent_arrays = {name: rng.standard_normal(n) for name in latent}
    pop = Population(observed=observed, observed_names=list(TRAITS), latent=latent_arrays,
                     coef=rng.normal(0.0, 0.5, (n_groups, len(TRAITS))),
                     intercept=np.zeros(n_groups))
    return graph, pop


def planted_inputs(rng: np.random.Generator, n_groups: int, size: int, mean_degree: float,
                   homophily: float = 0.8, heterogeneity: float = 0.5
                   ) -> tuple[SocialGraph, Population]:
    """The generated kind: a planted-partition graph and a ``make_population`` population."""
    graph = planted_partition(n_groups, size, mean_degree, homophily, rng)
    pop = make_population(graph.groups, n_groups, PopulationSpec(heterogeneity=heterogeneity),
                          rng)
    return graph, pop


def repeated_responses(society: Society, idx: np.ndarray, reps: int) -> np.ndarray:
    """``reps`` independent survey answers of each agent in idx, ``[reps, len(idx)]`` (to
    compare their frequencies with the oracle)."""
    answers = society.respond(np.tile(idx, reps), np.random.default_rng(0))
    return answers.reshape(reps, len(idx))


def run(society: S, ticks: int) -> S:
    """Step ``society`` ``ticks`` times and return it."""
    for _ in range(ticks):
        society.step()
    return society
