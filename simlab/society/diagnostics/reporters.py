"""Per-tick model reporters of a society, collected with Mesa's ``DataCollector``.

What the society did, tick by tick, stored with the stream (``TaskStream.meta["reporters"]``)
so a report can show it under the learners' per-wave scores: when a learner fails, the reader
sees whether adoption tipped, an outbreak started or the parties split. Reporters are chosen
by the state the society holds (duck-typed, so a user's family gets the ones that apply):

- every society: ``mean_response`` (mean true P(y=1) / E[y], or the modal class's mean
  probability, over a fixed sample of at most ``SAMPLE`` agents);
- ``opinion`` in [-1, 1] (float): ``mean_opinion``, ``opinion_sd``, ``share_favour``;
- ``adopted``: ``adoption_share``;
- ``status`` / ``level`` (epidemic): ``infected_share``, ``recovered_share``, ``aware_share``;
- ``opinion`` as a party index (multiclass): ``n_parties`` (parties held by >= 1%),
  ``largest_party``, ``modularity`` of the party partition on the current graph
  (Newman & Girvan 2004, Phys. Rev. E 69:026113: ``Q = sum_c L_c/m - (d_c / 2m)^2``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import mesa
import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import scipy.sparse as sp

    from simlab.society.base import Society

SAMPLE = 2000
"""Agents whose oracle is averaged for ``mean_response`` (a fixed sample: O(1) per tick)."""
PARTY_MIN_SHARE = 0.01


def modularity(adj: sp.csr_matrix, labels: np.ndarray) -> float:
    """Newman-Girvan modularity of the partition ``labels`` on a symmetric 0/1 CSR graph."""
    m2 = float(adj.nnz)                          # 2m: every edge is stored twice
    if m2 == 0:
        return 0.0
    rows = np.repeat(np.arange(adj.shape[0]), np.diff(adj.indptr))
    same = labels[rows] == labels[adj.indices]
    k = int(labels.max()) + 1
    inside = np.bincount(labels[rows[same]], minlength=k)            # 2 L_c
    degree = np.bincount(labels, weights=np.diff(adj.indptr), minlength=k)   # d_c
    return float((inside / m2 - (degree / m2) ** 2).sum())


def model_reporters(society: Society) -> dict[str, Callable[[Society], float]]:
    """Name -> reporter (a function of the model) for the state this society holds."""
    sample = np.sort(np.random.default_rng(0).choice(
        society.n_agents, size=min(SAMPLE, society.n_agents), replace=False))

    def mean_response(m: Society) -> float:
        p = m.oracle(sample)
        return float(np.mean(p.max(-1) if p.ndim == 2 else p))

    out: dict[str, Callable[[Society], float]] = {"tick": lambda m: float(m.tick),
                                                  "mean_response": mean_response}
    state = vars(society)
    opinion = state.get("opinion")
    if isinstance(opinion, np.ndarray) and opinion.dtype.kind == "f":
        out |= {"mean_opinion": lambda m: float(np.mean(m.opinion)),
                "opinion_sd": lambda m: float(np.std(m.opinion)),
                "share_favour": lambda m: float(np.mean(m.opinion > 0))}
    elif isinstance(opinion, np.ndarray) and society.target == "multiclass":
        def shares(m: Society) -> np.ndarray:
            return np.bincount(m.opinion, minlength=m.n_classes) / m.n_agents

        out |= {"n_parties": lambda m: float((shares(m) >= PARTY_MIN_SHARE).sum()),
                "largest_party": lambda m: float(shares(m).max()),
                "modularity": lambda m: modularity(m.social.adj, np.asarray(m.opinion))}
    if isinstance(state.get("adopted"), np.ndarray):
        out["adoption_share"] = lambda m: float(np.mean(m.adopted))
    if isinstance(state.get("status"), np.ndarray):
        from simlab.society.families.epidemic import INFECTED, RECOVERED, UNAWARE

        out |= {"infected_share": lambda m: float(np.mean(m.status == INFECTED)),
                "recovered_share": lambda m: float(np.mean(m.status == RECOVERED))}
        if isinstance(state.get("level"), np.ndarray):
            out["aware_share"] = lambda m: float(np.mean(m.level != UNAWARE))
    return out


class Reporters:
    """A ``mesa.DataCollector`` over :func:`model_reporters`; ``table()`` is JSON-ready."""

    def __init__(self, society: Society) -> None:
        self.society = society
        self.collector = mesa.DataCollector(model_reporters=model_reporters(society))

    def collect(self) -> None:
        self.collector.collect(self.society)

    def table(self) -> dict[str, list[float]]:
        """Reporter name -> one value per collected tick (the ``tick`` column says which)."""
        return {k: [float(v) for v in vals] for k, vals in self.collector.model_vars.items()}


__all__ = ["Reporters", "model_reporters", "modularity"]
