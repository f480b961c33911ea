"""Opinion dynamics: bounded confidence with stubborn anchors and a mass-media signal.

Each tick every agent i (opinion x_i in [-1, 1]) takes the Hegselmann-Krause average of the
opinions it is willing to hear -- its own and those of its network neighbours within the
confidence bound eps (Hegselmann & Krause 2002, JASSS 5(3); on a network as in Fortunato
2005, Int. J. Mod. Phys. C 16) -- mixes in a constant external signal M with weight mu, the
"truth"/radical-signal form of Hegselmann & Krause (2006, JASSS 9(3); 2015, Netw. Heterog.
Media 10), and is anchored to its initial opinion as in Friedkin & Johnsen (1990, J. Math.
Sociol. 15:193-206):

    hk_i   = mean{ x_j : j in {i} + N(i), |x_j - x_i| <= eps }
    x_i'   = g_i * x_i(0) + (1 - g_i) * ((1 - mu) * hk_i + mu * M),   g_i = anchoring * s_i

with s_i the latent ``stubbornness`` in (0, 1). The update is synchronous and vectorised over
the CSR adjacency: by default one fused numba pass over each row's edges
(``simlab.society.kernels``); the numpy reference (two gathers and a mask over the edges, two
sparse products) runs in blocks of rows on a thread pool for large graphs. Either way
``SIMLAB_THREADS`` sets the threads and the result is the same bit for bit whatever their
number. ``media_push`` (mu) and
``media_opinion`` (M) are natural shock targets (a media campaign).

Response, support for a policy: binary ``P(y=1) = sigmoid(a * x_i + intercept[g] +
traits_i @ coef[g])`` or, with ``response="continuous"``, ``y = (same linear predictor) +
N(0, response_sd^2)``.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from scipy.special import expit

from simlab.society import kernels
from simlab.society.base import DynamicsParams, Society
from simlab.tasks.task import TargetKind

MIN_BLOCK_EDGES = 100_000
"""Adjacency entries per thread block; smaller graphs run in one block (no threads)."""
MAX_THREADS = kernels.MAX_THREADS


OPINION_DTYPE = np.float32
"""Opinions in [-1, 1] need no more; single precision halves the memory traffic of a tick."""


_threads = kernels.threads
"""Threads for the update (``SIMLAB_THREADS``...): see :func:`simlab.society.kernels.threads`."""


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """One shared pool per process (recreated in a forked child, whose threads are gone)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=_threads(), thread_name_prefix="simlab")
    return _POOL


def _forget_pool() -> None:
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


class _Block:
    """Rows ``[r0, r1)`` of the adjacency and their entries ``[e0, e1)``, as a CSR matrix whose
    ``data`` is a view on the society's confidence mask (rewritten every tick)."""

    def __init__(self, r0: int, r1: int, adj: sp.csr_matrix, mask: np.ndarray) -> None:
        self.r0, self.r1 = r0, r1
        self.e0, self.e1 = int(adj.indptr[r0]), int(adj.indptr[r1])
        self.heard = sp.csr_matrix((mask[self.e0:self.e1], adj.indices[self.e0:self.e1],
                                    adj.indptr[r0:r1 + 1] - self.e0),
                                   shape=(r1 - r0, adj.shape[1]), copy=False)
        # scipy's constructor copies a view smaller than half its base ("prune"): re-attach
        self.heard.data = mask[self.e0:self.e1]


class OpinionParams(DynamicsParams):
    """Parameters of :class:`OpinionSociety` (opinions live in [-1, 1])."""

    eps: float = Field(0.3, gt=0.0, le=2.0,
                       description="confidence bound: neighbours further away are ignored")
    anchoring: float = Field(0.2, ge=0.0, le=1.0,
                             description="Friedkin-Johnsen weight on the initial opinion, "
                                         "scaled per agent by latent stubbornness")
    media_push: float = Field(0.0, ge=0.0, le=1.0,
                              description="weight of the mass-media signal each tick")
    media_opinion: float = Field(1.0, ge=-1.0, le=1.0,
                                 description="position the media push toward")
    opinion_effect: float = Field(2.0, description="a: effect of opinion on the response")
    initial_spread: float = Field(1.0, gt=0.0,
                                  description="x(0) = tanh(initial_spread * propensity)")
    response: Literal["binary", "continuous"] = Field(
        "binary", description="binary support (logistic) or a continuous score (Gaussian)")
    response_sd: float = Field(1.0, gt=0.0, description="noise sd of the continuous response")


class OpinionSociety(Society):
    """Hegselmann-Krause + Friedkin-Johnsen opinions driving support for a policy."""

    family: ClassVar[str] = "opinion"
    target: TargetKind = "binary"   # "regression" per instance: see init_state
    Params: ClassVar[type[DynamicsParams]] = OpinionParams
    state_names: ClassVar[tuple[str, ...]] = ("opinion",)
    params: OpinionParams

    def init_state(self) -> None:
        """Initial opinions from the latent propensity, the anchors' weights from the latent
        stubbornness, the response kind (and the numpy path's adjacency blocks)."""
        if self.params.response == "continuous":
            self.target = "regression"
            self.response_sd = self.params.response_sd
        self.initial_opinion = np.tanh(self.params.initial_spread * self.latent("propensity")
                                       ).astype(OPINION_DTYPE)
        self.opinion = self.initial_opinion.copy()
        self._stubbornness = self.latent("stubbornness")
        self._anchor = (-1.0, np.empty(0))
        if kernels.backend() == "numpy":
            self._index_adjacency()

    _SCRATCH = ("_cols", "_deg", "_buf", "_mask", "_ones", "_row_blocks", "_anchor")

    def __getstate__(self) -> dict:
        """Pickle without the work buffers (the blocks' matrices are views on ``_mask``)."""
        state = dict(self.__dict__)
        for name in self._SCRATCH:
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._anchor = (-1.0, np.empty(0))

    @property
    def _blocks(self) -> list[_Block]:
        """Row blocks of the numpy path, built on its first tick (the fused path needs none
        of these per-edge buffers: 12 bytes an edge saved)."""
        if "_row_blocks" not in self.__dict__:
            self._index_adjacency()
        return self._row_blocks

    def _index_adjacency(self) -> None:
        """Cache the CSR arrays, row blocks and work buffers the numpy update reuses."""
        adj = self.social.adj
        deg = np.diff(adj.indptr)
        self._cols = adj.indices.astype(np.intp)
        self._deg = deg
        nnz = len(self._cols)
        self._buf = np.empty(nnz, OPINION_DTYPE)
        self._mask = np.zeros(nnz, OPINION_DTYPE)  # m_ij as 0/1: the data of every block's matrix
        self._ones = np.ones(len(deg), OPINION_DTYPE)
        n_blocks = max(1, min(_threads(), nnz // MIN_BLOCK_EDGES))
        cuts = np.unique(np.searchsorted(adj.indptr, np.linspace(0, nnz, n_blocks + 1)))
        cuts[0], cuts[-1] = 0, len(deg)
        self._row_blocks = [_Block(int(a), int(b), adj, self._mask)
                            for a, b in zip(cuts[:-1], cuts[1:]) if b > a]

    def bounded_confidence_mean(self, x: np.ndarray) -> np.ndarray:
        """Hegselmann-Krause step: mean of the opinions within eps of x_i (self included).

        ``(x_i + sum_j m_ij x_j) / (1 + sum_j m_ij)`` with ``m_ij = [|x_j - x_i| <= eps]``: the
        mask is computed edge-wise, then two sparse products (with x and with ones) give the
        sums. Blocks of rows run on a thread pool (these numpy and scipy loops release the
        GIL); each row is summed inside one block, so the result does not depend on the number
        of threads.
        """
        out = np.empty_like(x)
        if len(self._blocks) == 1:
            self._update_block(self._blocks[0], x, out)
        else:
            list(_pool().map(lambda blk: self._update_block(blk, x, out), self._blocks))
        return out

    def _update_block(self, blk: _Block, x: np.ndarray, out: np.ndarray) -> None:
        e = slice(blk.e0, blk.e1)
        xj = np.take(x, self._cols[e], out=self._buf[e])
        d = np.repeat(x[blk.r0:blk.r1], self._deg[blk.r0:blk.r1])   # x_i on each of i's edges
        np.abs(np.subtract(xj, d, out=d), out=d)
        np.less_equal(d, self.params.eps, out=self._mask[e])
        total = blk.heard @ x
        count = blk.heard @ self._ones
        out[blk.r0:blk.r1] = (x[blk.r0:blk.r1] + total) / (count + 1.0)

    def advance(self) -> None:
        p = self.params
        keep = self._one_minus_anchor(p.anchoring)
        if kernels.fused(self.social.adj.nnz):
            adj = self.social.adj
            self.opinion = kernels.opinion_tick(adj.indptr, adj.indices, self.opinion,
                                                self.initial_opinion, keep, p.eps,
                                                p.media_push, p.media_opinion)
            return
        x = self.bounded_confidence_mean(self.opinion)
        if p.media_push:
            x *= 1.0 - p.media_push
            x += p.media_push * p.media_opinion
        # g * x(0) + (1 - g) * x, written in place
        x -= self.initial_opinion
        x *= keep
        x += self.initial_opinion
        self.opinion = x

    def _one_minus_anchor(self, anchoring: float) -> np.ndarray:
        """``1 - anchoring * stubbornness``, recomputed only when anchoring changes."""
        if self._anchor[0] != anchoring:
            self._anchor = (anchoring, 1.0 - anchoring * self._stubbornness)
        return self._anchor[1]

    def linear_predictor(self, idx: np.ndarray) -> np.ndarray:
        """``a * x_i + intercept[g_i] + traits_i @ coef[g_i]`` for agents idx."""
        return self.params.opinion_effect * self.opinion[idx] + self.trait_score(idx)

    def oracle(self, idx: np.ndarray) -> np.ndarray:
        eta = self.linear_predictor(np.asarray(idx))
        return eta if self.target == "regression" else expit(eta)

    def ego_answers(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """"How many friends do you have?" and "what share of them support the policy?"
        (friends whose opinion leans in favour, x_j > 0; 0 without friends)."""
        idx = np.asarray(idx)
        favour = self.friend_mean(idx, (self.opinion > 0).astype(np.float32))
        return super().ego_answers(idx) | {"share_friends_support": favour.astype(np.float32)}
