"""Co-evolving network and opinions: Holme & Newman (2006).

Mechanism
---------
Holme & Newman, "Nonequilibrium phase transition in the coevolution of networks and opinions",
Phys. Rev. E 74, 056108 (2006). Each agent holds one of G opinions (here: the party it
supports, ``n_parties`` of them). A step picks a vertex i at random (nothing happens if it has
no edges) and

* with probability ``phi`` picks one of i's edges at random and moves its other end to a vertex
  chosen at random among all vertices holding i's opinion (homophilous rewiring), or
* otherwise picks a random neighbour j and adopts j's opinion (voter dynamics).

For ``phi`` near 1 the network splits into components that each hold one opinion, so the
initial diversity of opinions survives (segregation); for ``phi`` near 0 voter dynamics drive a
connected network towards consensus. Holme & Newman study G = N / gamma opinions and find a
continuous transition at phi_c ~ 0.46 (mean degree 4, gamma = 10); with a few parties the
transition point differs (for two opinions and a related rule, Vazquez, Eguiluz & San Miguel
2008 give p_c = (mu - 2) / (mu - 1)).

Vectorised asynchrony
---------------------
The paper updates one vertex at a time. Here each tick every agent acts independently with
probability ``act_share`` (times the population's latent ``"activity"``, mean 1, when it has
one: an extension, Holme & Newman pick vertices uniformly) and all actors move at once from
the start-of-tick state: voters copy the opinion their chosen neighbour held at the start of
the tick and rewirers pick targets by their start-of-tick opinion. ``act_share`` -> 1/N
recovers the paper's sequential update; a small share (default 0.05) keeps conflicting moves
rare. The graph stays simple (the SocialGraph contract: no self-loops, 0/1 adjacency): a
rewiring is skipped when the target is i itself or already a neighbour of i, when the other
end of the same edge also rewires it this tick, or when another actor creates the same new
pair (the first in a random order wins). Skips are rare on sparse graphs with few parties
(``rewired`` counts the moves made each tick).

Network storage: the CSR arrays themselves (``indptr``, column ``indices``) plus, per slot, the
id of its undirected edge. Moving edge (i, j) -> (i, k) rewrites i's slot in place, drops the
slot (j, i) from row j and appends (k, i) to row k; the CSR is rebuilt from these arrays once
per tick (a few linear passes, no sort) and ``SocialGraph.refresh()`` recomputes degrees.
Columns within a row are not kept sorted (scipy does not need them sorted). The society works
on a private copy of the graph it was given (the caller's graph is untouched); its networkx
object is dropped because it would go stale.

Response
--------
y_i = the party i would vote for now, one of ``n_parties`` classes. Parties sit on a left-right
axis at ``pos_c = party_spread * linspace(-1, 1, n_parties)``; an agent's ideal point is its
trait score ``s_i = intercept[g] + x_i . coef[g]``. Proximity (spatial) voting, Downs (1957),
with a loyalty bonus for the party currently supported:

    P(y_i = c) = softmax_c( loyalty * 1[opinion_i = c] - ideology * (s_i - pos_c)^2 )

``oracle`` returns these probabilities (rows sum to 1). Initial opinions are drawn from the
same softmax without the loyalty term (``init_from_traits``), so party and traits start
correlated and the dynamics then erode or reinforce that link; Holme & Newman's uniformly
random start is ``init_from_traits=False``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from scipy.special import softmax

from simlab.errors import ScenarioError
from simlab.society import kernels
from simlab.society.base import DynamicsParams, Society, sample_classes
from simlab.tasks.task import TargetKind


def _first_occurrence(keys: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Mask of the entries of ``keys`` (restricted to ``among``) that come first among equals."""
    pos = np.flatnonzero(among)
    _, first = np.unique(keys[pos], return_index=True)
    mask = np.zeros(len(keys), dtype=bool)
    mask[pos[first]] = True
    return mask


def _row_slots(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All CSR slots of the given rows, flattened, with the position in ``rows`` they belong to."""
    start, length = indptr[rows], indptr[rows + 1] - indptr[rows]
    owner = np.repeat(np.arange(len(rows)), length)
    offset = np.arange(len(owner)) - np.repeat(np.cumsum(length) - length, length)
    return start[owner] + offset, owner


class CoevolvingParams(DynamicsParams):
    """Holme–Newman rewiring vs voting, plus the spatial vote link; shocks may change any field
    except ``n_parties`` (the number of classes is fixed once the society exists)."""

    n_parties: int = Field(3, ge=3, le=64, description="number of opinions / parties (classes)")
    phi: float = Field(0.5, ge=0.0, le=1.0,
                       description="chance an acting agent rewires rather than copies")
    act_share: float = Field(0.05, gt=0.0, le=1.0,
                             description="share of agents acting per tick (asynchrony)")
    loyalty: float = Field(2.0, description="logit bonus for the party currently supported")
    ideology: float = Field(1.0, ge=0.0, description="weight of the spatial (trait) distance")
    party_spread: float = Field(1.0, gt=0.0, description="parties sit at spread*linspace(-1,1)")
    init_from_traits: bool = Field(True,
                                   description="draw initial parties from the trait preference "
                                               "(else uniformly at random)")


class CoevolvingSociety(Society):
    """Voter dynamics with homophilous rewiring on a network that changes every tick."""

    family: ClassVar[str] = "coevolving"
    target: TargetKind = "multiclass"
    n_classes: int = 3          # default; each instance sets it to its n_parties
    Params: ClassVar[type[DynamicsParams]] = CoevolvingParams
    state_names: ClassVar[tuple[str, ...]] = ("opinion",)
    params: CoevolvingParams

    def init_state(self) -> None:
        """Private copy of the graph as CSR slots with edge ids; initial parties."""
        self.n_classes = self.params.n_parties   # instance attribute read by Society.respond
        self.social = dataclasses.replace(self.social, adj=self.social.adj.copy(), graph=None)
        n = self.n_agents
        upper = sp.triu(self.social.adj, k=1).tocoo()
        self.edge_u = upper.row.astype(np.int64)
        self.edge_v = upper.col.astype(np.int64)
        m = len(self.edge_u)
        ids = np.arange(m, dtype=np.int64)
        slots = sp.csr_matrix((np.concatenate([ids, ids]) + 1,
                               (np.concatenate([self.edge_u, self.edge_v]),
                                np.concatenate([self.edge_v, self.edge_u]))), shape=(n, n))
        self._indptr = slots.indptr.astype(np.int64)
        self._indices = slots.indices.astype(np.int32)
        self._eids = (slots.data - 1).astype(np.int32)          # undirected edge id per slot
        self._publish()
        if self.params.init_from_traits:
            probs = softmax(self._spatial_logits(np.arange(n)), axis=1)
            self.opinion = sample_classes(probs, self.rng)
        else:
            self.opinion = self.rng.integers(0, self.n_classes, n)
        self._activity = self.latent_ratio("activity")
        self.rewired = 0          # accepted rewirings in the last tick (diagnostic)

    def set(self, path: str, value: Any) -> None:
        if path == "n_parties":
            raise ScenarioError("n_parties is fixed once a coevolving society is built (it is the "
                                "number of response classes); build a new society to change it")
        super().set(path, value)

    # --- the network: CSR slots that move ------------------------------------------------------
    def _publish(self, degree: np.ndarray | None = None) -> None:
        """Hand the current slots to the SocialGraph as a fresh CSR and refresh its degrees
        (``degree``: the row lengths, when the caller has them)."""
        n = self.n_agents
        ones = self.__dict__.get("_ones")
        if ones is None or len(ones) != len(self._indices):   # rewiring keeps the edge count
            ones = self._ones = np.ones(len(self._indices), np.float32)
        self.social.adj = sp.csr_matrix((ones, self._indices, self._indptr), shape=(n, n))
        if degree is not None:
            # what refresh() derives, the degrees, are the row lengths of the 0/1 CSR
            # (tests compare both paths)
            self.social.degree = degree
        else:
            self.social.refresh()

    def _adjacent(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Whether each pair (a_k, b_k) is already an edge (scans row a_k only)."""
        slots, owner = _row_slots(self._indptr, a)
        hit = self._indices[slots] == b[owner]
        return np.bincount(owner[hit], minlength=len(a)) > 0

    def _pick_slots(self, actors: np.ndarray) -> np.ndarray:
        """For each actor one of its CSR slots (incident edges) uniformly at random."""
        deg = self._indptr[actors + 1] - self._indptr[actors]
        return self._indptr[actors] + (self.rng.random(len(actors)) * deg).astype(np.int64)

    def _same_opinion_targets(self, actors: np.ndarray) -> np.ndarray:
        """For each actor a uniformly random agent holding the actor's current opinion."""
        order = np.argsort(self.opinion.astype(np.int8), kind="stable")
        counts = np.bincount(self.opinion, minlength=self.n_classes)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        op = self.opinion[actors]
        pick = starts[op] + (self.rng.random(len(actors)) * counts[op]).astype(np.int64)
        return order[pick]

    def _move_edges(self, slot: np.ndarray, who: np.ndarray, target: np.ndarray) -> None:
        """Edge at ``slot`` (who, j) becomes (who, target); then publish the new CSR."""
        if kernels.fused():   # the same CSR, rebuilt in one pass
            self.edge_u[self._eids[slot]], self.edge_v[self._eids[slot]] = who, target
            self._indptr, self._indices, self._eids, degree = kernels.rewire_csr(
                self._indptr, self._indices, self._eids, slot, who, target,
                self._scratch_space())
            self._publish(degree)
            return
        n = self.n_agents
        edge, old = self._eids[slot], self._indices[slot].astype(np.int64)
        far, owner = _row_slots(self._indptr, old)                 # slots of rows j
        partner = far[self._eids[far] == edge[owner]]              # slot (j, who), in order
        keep = np.ones(len(self._indices), dtype=bool)
        keep[partner] = False
        indices, eids = self._indices[keep], self._eids[keep]
        counts = np.diff(self._indptr) - np.bincount(old, minlength=n)
        # who's slot keeps its row; find where it lands after the removal and the insertion
        removed = np.sort(partner)
        mid = slot - np.searchsorted(removed, slot)
        indptr_mid = np.concatenate([[0], np.cumsum(counts)])
        order = np.argsort(target, kind="stable")      # rows in order, even where rows are empty
        at_sorted = indptr_mid[target[order] + 1]      # append at the end of each target row
        self._indices = np.insert(indices, at_sorted, who[order].astype(np.int32))
        self._eids = np.insert(eids, at_sorted, edge[order])
        self._indices[mid + np.searchsorted(at_sorted, mid, side="right")] = target
        counts += np.bincount(target, minlength=n)
        self._indptr = np.concatenate([[0], np.cumsum(counts)])
        self.edge_u[edge], self.edge_v[edge] = who, target
        self._publish()

    # --- dynamics -----------------------------------------------------------------------------
    def advance(self) -> None:
        """One tick: a random share of agents vote or rewire, all from the start-of-tick state."""
        if kernels.fused():
            self._advance_fused()
            return
        p = self.params
        chance = np.minimum(p.act_share * self._activity, 1.0)
        acting = (self.rng.random(self.n_agents) < chance) & (self.social.degree > 0)
        actors = self.rng.permutation(np.flatnonzero(acting))
        slot = self._pick_slots(actors)
        rewire = self.rng.random(len(actors)) < p.phi
        target = self._same_opinion_targets(actors[rewire])
        voters = ~rewire
        new_opinion = self.opinion.copy()
        new_opinion[actors[voters]] = self.opinion[self._indices[slot[voters]]]
        self.rewired = self._apply_rewiring(actors[rewire], slot[rewire], target)
        self.opinion = new_opinion

    def _scratch_space(self) -> kernels.Scratch:
        """The fused path's buffers, kept between ticks."""
        return self.__dict__.setdefault("_scratch", kernels.Scratch())

    def _advance_fused(self) -> None:
        """``advance`` on the fused path, from the same draws in the same order: acting agents
        (``kernels.coevolving_actors``), then votes, targets and the move filters in one
        pass (``kernels.coevolving_moves``), then the moves (``kernels.rewire_csr``)."""
        p = self.params
        u = self._scratch_space().random(self.rng, "u_act", self.n_agents)
        actors = self.rng.permutation(
            kernels.coevolving_actors(u, p.act_share, self._activity, self.social.degree))
        slot = self._pick_slots(actors)
        rewire = self.rng.random(len(actors)) < p.phi
        u_target = self.rng.random(int(rewire.sum()))
        new_opinion = self.opinion.copy()
        target, ok = kernels.coevolving_moves(
            self._indptr, self._indices, self._eids, self.opinion, self.n_classes, actors, slot,
            rewire, u_target, new_opinion, self._scratch_space(), len(self.edge_u))
        if ok.any():
            self._move_edges(slot[rewire][ok], actors[rewire][ok], target[ok])
        self.rewired = int(ok.sum())
        self.opinion = new_opinion

    def _apply_rewiring(self, who: np.ndarray, slot: np.ndarray, target: np.ndarray) -> int:
        """Move the far end of each chosen edge to its target; returns the moves made.

        Skips self-loops, existing edges, an edge claimed by both its ends and a new pair made
        twice; among competing moves the first in the (random) actor order wins.
        """
        ok = target != who
        ok[ok] = ~self._adjacent(who[ok], target[ok])
        ok &= _first_occurrence(self._eids[slot], ok)
        key = np.minimum(who, target) * self.n_agents + np.maximum(who, target)
        ok &= _first_occurrence(key, ok)
        if ok.any():
            self._move_edges(slot[ok], who[ok], target[ok])
        return int(ok.sum())

    # --- response -----------------------------------------------------------------------------
    def party_positions(self) -> np.ndarray:
        return self.params.party_spread * np.linspace(-1.0, 1.0, self.n_classes)

    def _spatial_logits(self, idx: np.ndarray) -> np.ndarray:
        dist = self.trait_score(idx)[:, None] - self.party_positions()[None, :]
        return -self.params.ideology * dist ** 2

    def oracle(self, idx: np.ndarray) -> np.ndarray:
        """Class probabilities ``[n, n_parties]``: loyalty to the current party + proximity."""
        idx = np.asarray(idx)
        logits = self._spatial_logits(idx)
        logits[np.arange(len(idx)), self.opinion[idx]] += self.params.loyalty
        return softmax(logits, axis=1)

    def ego_answers(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Friends in total and the share of friends supporting each party."""
        idx = np.asarray(idx)
        rows = self.social.adj[idx]                    # the respondents' rows only
        owner = np.repeat(np.arange(len(idx)), np.diff(rows.indptr))
        c = self.n_classes
        counts = np.bincount(owner * c + self.opinion[rows.indices], minlength=len(idx) * c)
        deg = self.social.degree[idx]
        shares = counts.reshape(len(idx), c) / np.maximum(deg, 1.0)[:, None]
        return super().ego_answers(idx) | {
            f"share_friends_party_{k}": shares[:, k].astype(np.float32) for k in range(c)}

    # --- diagnostics --------------------------------------------------------------------------
    def discordant_share(self) -> float:
        """Share of edges joining agents of different parties (0 once fully segregated)."""
        if len(self.edge_u) == 0:
            return 0.0
        return float(np.mean(self.opinion[self.edge_u] != self.opinion[self.edge_v]))

    def party_shares(self) -> np.ndarray:
        return np.bincount(self.opinion, minlength=self.n_classes) / self.n_agents
