"""Social graphs: networkx builders plus the sparse adjacency the vectorised dynamics use."""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import scipy.sparse as sp


@dataclass
class SocialGraph:
    """Undirected graph as a CSR adjacency (float32, symmetric, no self-loops) plus groups.

    ``groups[i]`` is agent i's community (the survey's group), ``0..n_groups-1``.
    ``graph`` keeps the networkx object where one exists (small graphs, user graphs).
    """

    adj: sp.csr_matrix
    groups: np.ndarray
    group_names: list[str]
    graph: nx.Graph | None = None
    degree: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Recompute derived arrays after the adjacency changed (co-evolving networks)."""
        self.degree = np.asarray(self.adj.sum(axis=1)).ravel().astype(np.float32)

    @property
    def n_nodes(self) -> int:
        return int(self.adj.shape[0])

    @property
    def n_groups(self) -> int:
        return len(self.group_names)

    def neighbour_mean(self, values: np.ndarray) -> np.ndarray:
        """Mean of ``values`` over each agent's neighbours (0 for isolated agents)."""
        return (self.adj @ values) / np.maximum(self.degree, 1.0).reshape(
            (-1,) + (1,) * (np.ndim(values) - 1))
