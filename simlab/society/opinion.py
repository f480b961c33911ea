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
the CSR adjacency (one gather and two segment sums per tick). ``media_push`` (mu) and
``media_opinion`` (M) are natural shock targets (a media campaign).

Response, support for a policy: binary ``P(y=1) = sigmoid(a * x_i + intercept[g] +
traits_i @ coef[g])`` or, with ``response="continuous"``, ``y = (same linear predictor) +
N(0, response_sd^2)``.
"""
from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field
from scipy.special import expit

from simlab.society.base import DynamicsParams, Society


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
    target = "binary"
    Params: ClassVar[type[DynamicsParams]] = OpinionParams
    state_names: ClassVar[tuple[str, ...]] = ("opinion",)
    params: OpinionParams

    def init_state(self) -> None:
        if self.params.response == "continuous":
            self.target = "regression"
            self.response_sd = self.params.response_sd
        propensity = self.pop.latent["propensity"].astype(np.float64)
        self.initial_opinion = np.tanh(self.params.initial_spread * propensity)
        self.opinion = self.initial_opinion.copy()
        self._stubbornness = self.pop.latent["stubbornness"].astype(np.float64)
        self._index_adjacency()

    def _index_adjacency(self) -> None:
        """Cache the CSR arrays and work buffers the update reuses every tick."""
        adj = self.social.adj
        self._cols = adj.indices.astype(np.intp)
        self._deg = np.diff(adj.indptr)
        self._has = self._deg > 0
        self._starts = adj.indptr[:-1][self._has]
        nnz = len(self._cols)
        self._buf = np.empty(nnz)
        self._diff = np.empty(nnz)
        self._mask = np.empty(nnz, dtype=bool)

    def bounded_confidence_mean(self, x: np.ndarray) -> np.ndarray:
        """Hegselmann-Krause step: mean of the opinions within eps of x_i (self included)."""
        eps = self.params.eps
        xj = np.take(x, self._cols, out=self._buf)
        d = np.subtract(xj, np.repeat(x, self._deg), out=self._diff)
        np.less_equal(np.abs(d, out=self._buf), eps, out=self._mask)
        np.multiply(d, self._mask, out=d)
        out = x.copy()
        if len(self._starts):
            total = np.add.reduceat(d, self._starts)
            count = np.add.reduceat(self._mask, self._starts, dtype=np.intp)
            out[self._has] += total / (count + 1)
        return out

    def advance(self) -> None:
        p = self.params
        heard = self.bounded_confidence_mean(self.opinion)
        if p.media_push:
            heard = (1.0 - p.media_push) * heard + p.media_push * p.media_opinion
        g = p.anchoring * self._stubbornness
        self.opinion = g * self.initial_opinion + (1.0 - g) * heard

    def linear_predictor(self, idx: np.ndarray) -> np.ndarray:
        """``a * x_i + intercept[g_i] + traits_i @ coef[g_i]`` for agents idx."""
        g = self.groups[idx]
        traits = self.pop.observed[idx].astype(np.float64)
        return (self.params.opinion_effect * self.opinion[idx] + self.intercept[g]
                + np.einsum("nd,nd->n", traits, self.coef[g]))

    def oracle(self, idx: np.ndarray) -> np.ndarray:
        eta = self.linear_predictor(np.asarray(idx))
        return eta if self.target == "regression" else expit(eta)

    def ego_answers(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """"How many friends do you have?" and "what share of them support the policy?"
        (friends whose opinion leans in favour, x_j > 0; 0 without friends)."""
        idx = np.asarray(idx)
        deg = self.social.degree[idx]
        favour = self.social.adj[idx] @ (self.opinion > 0).astype(np.float32)
        return {"n_friends": deg.astype(np.float32),
                "share_friends_support": (favour / np.maximum(deg, 1.0)).astype(np.float32)}
