"""Complex contagion: threshold adoption with an external (Bass) push.

Mechanism
---------
Granovetter (1978, "Threshold models of collective behavior", AJS 83:1420) gives every agent a
threshold: it adopts once the share of others who adopted reaches that threshold (in his paper
the others are the whole crowd; here, as in Watts 2002, PNAS 99:5766, they are the agent's
network contacts). Centola & Macy (2007, "Complex contagions and the weakness of long ties",
AJS 113:702) distinguish *fractional* thresholds (share of neighbours) from *absolute* ones
(count of adopting neighbours, e.g. 2: a "complex" contagion needs social reinforcement from
several contacts). With thresholds alone an innovation with no early adopters never spreads,
so a Bass (1969, "A new product growth for model consumer durables", Management Science
15:215) innovation term ``p`` adds adoption from outside the network (media, advertising):
the per-tick hazard of a non-adopter is

    h_i = 1 - (1 - p) * (1 - q * 1[exposure_i >= theta_i])      (p = p_innovation, q = adopt_rate)

the chance that either source acts in one tick: Bass's ``p + q F`` with the imitation term
replaced by the network threshold rule (and the overlap ``p q`` not counted twice); ``q = 1``
is Granovetter's deterministic rule. ``exposure_i`` is the share (``"fraction"``) or number
(``"count"``) of i's neighbours that have adopted at the start of the tick (synchronous
update). The push tips the system: once enough low-threshold agents adopted from outside,
cascades carry the rest (Granovetter's riot example), and below that point adoption stays
near the external trickle.

Adoption is sticky by default (Granovetter's cumulative adoption); ``abandon`` > 0 lets each
adopter drop out with that probability per tick (it may re-adopt later by the same rule).

Thresholds: ``theta_i = threshold_mean + threshold_sd * z_i`` where ``z_i`` is the population's
latent ``"threshold"`` trait standardised to mean 0, sd 1 over all agents (so who is more
easily swayed, including community differences, comes from the population, and the scale from
these parameters); drawn standard normal from the model's rng when the population has no such
trait. Thresholds are recomputed every tick, so shocks on ``threshold_mean`` /
``threshold_sd`` act at once.

Response
--------
y_i = "reports using the innovation" at the survey. Adopters mostly do, non-adopters mostly do
not; traits (through the community's coefficients) and friends' adoption shift it:

    P(y_i = 1) = sigmoid(intercept[g] + x_i . coef[g] + adopted_effect * (a_i - 1/2)
                         + peer_effect * s_i)

with ``a_i`` in {0, 1} the current adoption state and ``s_i`` the share of adopting friends.
``oracle`` returns exactly this probability, and ``Society.respond`` samples y from it.
"""
from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator
from scipy.special import expit

from simlab.errors import ScenarioError
from simlab.society import kernels
from simlab.society.base import DynamicsParams, Society
from simlab.tasks.task import TargetKind


class ContagionParams(DynamicsParams):
    """Threshold adoption with a Bass push; every field can be changed by a shock."""

    p_innovation: float = Field(0.002, ge=0.0, le=1.0,
                                description="Bass p: per-tick chance of adopting from outside")
    adopt_rate: float = Field(1.0, ge=0.0, le=1.0,
                              description="chance per tick of adopting once the threshold is met")
    threshold_kind: Literal["fraction", "count"] = Field(
        "fraction", description="threshold on the share or on the number of adopting neighbours")
    threshold_mean: float = Field(0.3, ge=0.0,
                                  description="mean threshold (share, or neighbours if count)")
    threshold_sd: float = Field(0.1, ge=0.0, description="spread of thresholds across agents")
    abandon: float = Field(0.0, ge=0.0, le=1.0,
                           description="per-tick chance an adopter drops out (0 = sticky)")
    seed_share: float = Field(0.01, ge=0.0, le=1.0,
                              description="share of agents adopting at tick 0")
    adopted_effect: float = Field(4.0, description="logit weight of own adoption in the response")
    peer_effect: float = Field(1.0, description="logit weight of the share of adopting friends")

    @model_validator(mode="after")
    def _fraction_threshold_in_range(self) -> ContagionParams:
        if self.threshold_kind == "fraction" and self.threshold_mean > 1.0:
            raise ScenarioError(
                f"threshold_mean={self.threshold_mean} is a share of neighbours when "
                "threshold_kind='fraction' and must be <= 1; lower it or set "
                "threshold_kind='count'")
        return self


class ContagionSociety(Society):
    """Granovetter / Centola–Macy threshold adoption on the graph, tipped by a Bass push."""

    family: ClassVar[str] = "contagion"
    target: TargetKind = "binary"
    n_classes: int = 2
    Params: ClassVar[type[DynamicsParams]] = ContagionParams
    state_names: ClassVar[tuple[str, ...]] = ("adopted",)
    params: ContagionParams

    def init_state(self) -> None:
        """Latent threshold z-scores and the initial adopters (``seed_share`` at random)."""
        self.threshold_z = self.latent_z("threshold")
        self.adopted = self.rng.random(self.n_agents) < self.params.seed_share

    def thresholds(self) -> np.ndarray:
        """Current thresholds theta_i (share or count of adopting neighbours)."""
        return self.params.threshold_mean + self.params.threshold_sd * self.threshold_z

    def exposure(self) -> np.ndarray:
        """Share (fraction thresholds) or number (count thresholds) of adopting neighbours."""
        a = self.adopted.astype(np.float32)
        if self.params.threshold_kind == "count":
            return self.social.adj @ a
        return self.social.neighbour_mean(a)

    def advance(self) -> None:
        """One synchronous tick: Bass push or threshold met -> adopt; adopters may abandon."""
        p = self.params
        if kernels.fused(self.n_agents):   # the same update from incrementally kept counts
            if "_exposed" not in self.__dict__:
                self._exposed = kernels.NeighbourCounts()
            counts = self._exposed.update(self.social.adj, self.adopted)
            u = self.rng.random(self.n_agents)
            self.adopted = kernels.contagion_tick(
                counts, self.adopted, self.social.degree, self.threshold_z, p.threshold_mean,
                p.threshold_sd, p.threshold_kind == "count", p.p_innovation, p.adopt_rate,
                p.abandon, u)
            return
        met = self.exposure() >= self.thresholds()
        hazard = 1.0 - (1.0 - p.p_innovation) * (1.0 - p.adopt_rate * met)
        u = self.rng.random(self.n_agents)
        new = ~self.adopted & (u < hazard)
        keep = self.adopted & (u >= p.abandon)
        self.adopted = keep | new

    @property
    def adoption_share(self) -> float:
        return float(self.adopted.mean())

    def oracle(self, idx: np.ndarray) -> np.ndarray:
        """True P(reports using the innovation) for agents idx (see module docstring)."""
        idx = np.asarray(idx)
        p = self.params
        share = self.friend_mean(idx, self.adopted.astype(np.float32))
        z = (self.trait_score(idx) + p.adopted_effect * (self.adopted[idx] - 0.5)
             + p.peer_effect * share)
        return expit(z)

    def ego_answers(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Friends in total, and the share of friends who adopted."""
        idx = np.asarray(idx)
        share = self.friend_mean(idx, self.adopted.astype(np.float32))
        return super().ego_answers(idx) | {"share_friends_adopted": share.astype(np.float32)}
