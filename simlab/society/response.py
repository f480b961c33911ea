"""Response mechanisms: how a respondent's traits and ego network enter its answer.

Every dynamics family answers through ``link(trait_score(i) + state terms)``; the *trait score*
is the part a questionnaire can see. ``Society.trait_score`` delegates it to the society's
response mechanism, so one mechanism works for every family (binary, multiclass through the
co-evolving model's ideal point, regression) without touching their dynamics. The oracle stays
the true probability / mean from the full state: it is built on the same score.

Kinds (``[response] kind = ...`` in a scenario file):

- ``glm``: ``intercept[g] + x . coef[g]``, the group-specific linear score of
  :mod:`simlab.society.population` (the default; identical to the families' own response).
- ``threshold``: a personal threshold on the share of friends doing X (the family's ego-network
  answer ``share_*``): the score jumps by ``jump_g`` once ``exposure_i >= theta_i``.
  Granovetter (1978, AJS 83:1420) threshold models; Centola & Macy (2007, AJS 113:702) complex
  contagion on ego-network exposure; thresholds differ by community (``theta_g``) and person.
- ``interaction``: pairwise trait interactions ``gamma_g,jk x_j x_k`` on top of the linear
  score, different pairs per community: the interaction model of Friedman & Popescu (2008,
  "Predictive learning via rule ensembles", Ann. Appl. Stat. 2:916, whose H-statistic measures
  exactly this departure from additivity). ``strength`` is a shock target: a shock from 0 makes
  a new interaction appear (a change of form, not of a coefficient).
- ``rotating``: only ``n_relevant`` traits matter in each community, and which ones rotates
  every ``period`` ticks from tick ``start`` -- feature-relevance drift (Widmer & Kubat 1996,
  "Learning in the presence of concept drift and hidden contexts", Mach. Learn. 23:69; Gama et
  al. 2014, ACM Comput. Surv. 46:44, "real concept drift"); ``form = "step"`` makes each
  relevant trait act through a step at its median (a decision-stump concept, as in the STAGGER
  concepts of Schlimmer & Granger 1986).
- ``mixture``: communities respond through different kinds (some threshold, others linear),
  so tasks differ in the form of the function, not only in its coefficients -- the
  "task-type mixture" of multimodal meta-learning (Vuorio et al. 2019, NeurIPS, MMAML).
- ``peak``: single-peaked (unfolding) preferences on one continuous trait: support is
  highest near an ideal point and falls off on both sides, ``offset_t + strength *
  amplitude_t * exp(-((x - location_t) / width)^2 / 2)``. The *form* (a bump of known width
  on ``trait``) is shared by every community and wave; its ideal point, height and baseline
  are drawn afresh for every task (community x wave) from a known prior. It stands for
  ideal-point / unfolding models of attitudes (Coombs 1964, "A Theory of Data"; Poole &
  Rosenthal 1985, AJPS 29:357, Gaussian utility around an ideal point) and for life-cycle
  effects that peak at some age (e.g. the age profile of turnout or of religious attendance,
  Glenn 2005, "Cohort Analysis"), whose peak shifts between communities and survey waves. A
  GLM in ``x`` cannot bend into a bump, and pooling the tasks learns only a flat average; a
  learner that meta-learns the form and the prior can do well from a few respondents. It is
  the lab's positive control for meta-learning (``scenarios/control_positive.toml``), and
  the ``floor`` reference (:mod:`simlab.learners.floor`) is its exact Bayes predictor given
  the support set. ``strength = 0`` leaves only the per-task offset (a GLM intercept).

Every nonlinear kind accepts ``saturation`` (``c > 0``: the score becomes ``c * tanh(s / c)``,
diminishing returns as in a Hill / logistic dose-response curve) and ``linear`` (the weight of
the GLM trait score kept alongside). Group-specific draws come from the response's own
generator (seed stream ``"response"``), so a ``glm`` scenario's stream is unchanged.
"""
from __future__ import annotations

import difflib
from abc import abstractmethod
from itertools import combinations
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simlab.errors import ScenarioError

if TYPE_CHECKING:  # pragma: no cover
    from simlab.society.view import SocietyView


# --- specs (scenario files) -------------------------------------------------------------------
class ResponseSpec(BaseModel):
    """Base of every response kind: validated, frozen, unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str

    @abstractmethod
    def build(self, society: SocietyView, rng: np.random.Generator) -> Response:
        """The runtime mechanism for ``society`` (group-specific draws from ``rng``)."""


class _Nonlinear(ResponseSpec):
    linear: float = Field(1.0, description="weight of the GLM trait score x . coef[g] kept")
    saturation: float | None = Field(None, gt=0, description="c: score -> c * tanh(score / c)")


class GLMSpec(ResponseSpec):
    """The group-specific linear score (the default)."""

    kind: Literal["glm"] = "glm"

    def build(self, society: SocietyView, rng: np.random.Generator) -> Response:
        return GLMResponse(self, society, rng)


class ThresholdSpec(_Nonlinear):
    """Personal thresholds on ego-network exposure (Granovetter 1978; Centola & Macy 2007)."""

    kind: Literal["threshold"] = "threshold"
    exposure: str | None = Field(None, description="ego answer share_* (None: the family's first)")
    threshold: float = Field(0.3, description="mean threshold, a share of friends in [0, 1]")
    group_sd: float = Field(0.15, ge=0, description="sd of community thresholds around it")
    personal_sd: float = Field(0.05, ge=0, description="sd of personal thresholds (latent)")
    jump: float = Field(3.0, description="score jump once the threshold is met")
    jump_sd: float = Field(1.0, ge=0, description="sd of the jump across communities")

    @field_validator("threshold")
    @classmethod
    def _share(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ScenarioError(f"the threshold is a share of friends and must lie in [0, 1] (got "
                                f"{v}); e.g. threshold = 0.3")
        return v

    def build(self, society: SocietyView, rng: np.random.Generator) -> Response:
        return ThresholdResponse(self, society, rng)


class InteractionSpec(_Nonlinear):
    """Pairwise trait interactions, different pairs per community (Friedman & Popescu 2008)."""

    kind: Literal["interaction"] = "interaction"
    n_pairs: int = Field(2, ge=1, description="interacting trait pairs per community")
    strength: float = Field(1.5, description="size of each interaction (shock target)")
    strength_sd: float = Field(0.3, ge=0, description="relative spread across communities")

    def build(self, society: SocietyView, rng: np.random.Generator) -> Response:
        return InteractionResponse(self, society, rng)


class RotatingSpec(_Nonlinear):
    """Which traits matter rotates over time, differently per community (relevance drift)."""

    kind: Literal["rotating"] = "rotating"
    linear: float = Field(0.0, description="weight of the GLM trait score kept")
    n_relevant: int = Field(2, ge=1, description="relevant traits per community at a time")
    strength: float = Field(1.5, description="effect of each relevant trait")
    start: int = Field(0, ge=0, description="first tick at which relevance rotates")
    period: int = Field(10, ge=1, description="ticks between rotations")
    form: Literal["linear", "step"] = Field("step", description="relevant traits act linearly "
                                                                "or through a step at 0")

    def build(self, society: SocietyView, rng: np.random.Generator) -> Response:
        return RotatingResponse(self, society, rng)


class PeakSpec(ResponseSpec):
    """Single-peaked response on one trait, a fresh ideal point per task (Coombs 1964)."""

    kind: Literal["peak"] = "peak"
    trait: str = Field("age", description="the continuous observed trait the peak lies on")
    strength: float = Field(1.0, ge=0, description="scale of the bump (0: flat, GLM-like); "
                                                   "shock target")
    amplitude: float = Field(4.0, description="mean height of the bump (logit scale)")
    amplitude_sd: float = Field(1.0, ge=0, description="sd of the height across tasks")
    location: float = Field(0.0, description="mean ideal point (stored trait units)")
    location_sd: float = Field(0.7, ge=0, description="sd of the ideal point across tasks")
    width: float = Field(0.6, gt=0, description="width of the bump (stored trait units)")
    offset: float = Field(-2.0, description="mean baseline logit away from the peak")
    offset_sd: float = Field(0.5, ge=0, description="sd of the baseline across tasks")
    linear: float = Field(0.0, description="weight of the GLM trait score kept (0: none; "
                                           "the floor reference is exact only at 0)")

    def build(self, society: SocietyView, rng: np.random.Generator) -> Response:
        return PeakResponse(self, society, rng)

    def prior(self, strength: float | None = None) -> dict[str, Any]:
        """The latent prior every task's parameters are drawn from (what the ``floor``
        reference learner is told through ``stream.meta["response_prior"]``)."""
        s = self.strength if strength is None else strength
        return {"kind": "peak", "trait": self.trait, "width": self.width,
                "offset": [self.offset, self.offset_sd],
                "amplitude": [s * self.amplitude, s * self.amplitude_sd],
                "location": [self.location, self.location_sd], "linear": self.linear}


ComponentSpec = Annotated[GLMSpec | ThresholdSpec | InteractionSpec | RotatingSpec,
                          Field(discriminator="kind")]


class MixtureSpec(ResponseSpec):
    """Communities respond through different kinds (task types differ in form)."""

    kind: Literal["mixture"] = "mixture"
    components: list[ComponentSpec] = Field(min_length=2, description="one spec per task type")
    shares: list[float] | None = Field(None, description="share of communities per component")

    @model_validator(mode="after")
    def _shares(self) -> MixtureSpec:
        s = self.shares
        if s is not None and (len(s) != len(self.components) or min(s) < 0 or sum(s) <= 0):
            raise ScenarioError(f"response.shares = {s}: give one non-negative share per component "
                                f"({len(self.components)}), not all zero")
        return self

    def build(self, society: SocietyView, rng: np.random.Generator) -> Response:
        return MixtureResponse(self, society, rng)


AnyResponseSpec = Annotated[GLMSpec | ThresholdSpec | InteractionSpec | RotatingSpec
                            | MixtureSpec | PeakSpec, Field(discriminator="kind")]
RESPONSE_KINDS: tuple[str, ...] = ("glm", "threshold", "interaction", "rotating", "mixture",
                                   "peak")


def response_spec(data: dict[str, Any] | ResponseSpec | None) -> ResponseSpec:
    """Validate a ``[response]`` table from Python (scenario files go through the config's
    discriminated union, which gives the same did-you-mean)."""
    from pydantic import TypeAdapter

    if data is None:
        return GLMSpec()
    if isinstance(data, ResponseSpec):
        return data
    kind = data.get("kind", "glm")
    if kind not in RESPONSE_KINDS:
        close = difflib.get_close_matches(str(kind), RESPONSE_KINDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ScenarioError(f"response.kind = {kind!r} is unknown; {hint}choose one of: "
                            f"{', '.join(RESPONSE_KINDS)}")
    return TypeAdapter(AnyResponseSpec).validate_python({"kind": kind, **data})


# --- runtime mechanisms -----------------------------------------------------------------------
class FormChange:
    """What ``Society.events`` records when a mechanism changes form on its own (a rotation);
    duck-types the ``kind``/``name``/``target`` of a shock for ``shift_events``."""

    def __init__(self, kind: str, name: str, target: str) -> None:
        self.kind, self.name, self.target = kind, name, target


SpecT = TypeVar("SpecT", bound=ResponseSpec)
_NonlinearT = TypeVar("_NonlinearT", bound=_Nonlinear)


class Response(Generic[SpecT]):
    """A built mechanism: ``score(society, idx)`` is the trait score of agents idx. Scalar
    fields listed in ``shockable`` are parameters shocks may change (``response.<field>``).
    Generic in its spec class, so each kind reads its own spec's fields."""

    shockable: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: SpecT, society: SocietyView, rng: np.random.Generator) -> None:
        self.spec = spec
        self.values = {f: float(getattr(spec, f)) for f in self.shockable}

    @abstractmethod
    def score(self, society: SocietyView, idx: np.ndarray) -> np.ndarray:
        """Trait score ``[n]`` (float64) of agents idx."""

    def on_tick(self, society: SocietyView, tick: int) -> FormChange | None:
        """A change of form the mechanism makes by itself at ``tick`` (None: none)."""
        return None

    def relevance(self, society: SocietyView) -> np.ndarray:
        """``[G, D]`` weight of each observed trait in each community now (diagnostic)."""
        return np.abs(society.coef).astype(np.float64)

    def prior(self) -> dict[str, Any] | None:
        """The known prior of the task-specific latent parameters, for a reference learner
        (``stream.meta["response_prior"]``); None when the kind declares none."""
        return None

    def get(self, name: str) -> float:
        if name not in self.values:
            raise KeyError(name)
        return self.values[name]

    def set(self, name: str, value: float) -> None:
        if name not in self.values:
            raise KeyError(name)
        self.values[name] = float(value)


class GLMResponse(Response[GLMSpec]):
    def score(self, society: SocietyView, idx: np.ndarray) -> np.ndarray:
        return society.linear_score(idx)


class _NonlinearResponse(Response[_NonlinearT]):
    shockable: ClassVar[tuple[str, ...]] = ("linear",)

    def score(self, society: SocietyView, idx: np.ndarray) -> np.ndarray:
        g = society.groups[idx]
        base = society.intercept[g].astype(np.float64)
        lin = self.values["linear"]
        if lin:
            base = base + lin * (society.linear_score(idx) - base)
        s = base + self.extra(society, idx, g)
        cap = self.spec.saturation
        return s if cap is None else cap * np.tanh(s / cap)

    @abstractmethod
    def extra(self, society: SocietyView, idx: np.ndarray, g: np.ndarray) -> np.ndarray:
        """The nonlinear part of the score."""


class ThresholdResponse(_NonlinearResponse[ThresholdSpec]):
    """``score += jump_g * 1[exposure_i >= theta_i]``, ``theta_i = theta_g + sd * z_i``."""

    shockable = ("linear", "jump", "threshold")

    def __init__(self, spec: ThresholdSpec, society: SocietyView, rng: np.random.Generator) -> None:
        super().__init__(spec, society, rng)
        shares = [k for k in society.ego_answers(np.zeros(1, np.int64)) if k.startswith("share_")]
        if spec.exposure is None and not shares:
            raise ScenarioError(f"response.kind = 'threshold' needs an ego-network share, but the "
                                f"{society.family} society answers none; use another kind")
        if spec.exposure is not None and spec.exposure not in shares:
            raise ScenarioError(f"response.exposure = {spec.exposure!r} is not an ego answer of "
                                f"the {society.family} society; choose one of "
                                f"{', '.join(shares)}")
        self.exposure = spec.exposure or shares[0]
        n_groups = society.social.n_groups
        self.group_offset = spec.group_sd * rng.standard_normal(n_groups)
        self.jump_scale = 1.0 + (spec.jump_sd / max(abs(spec.jump), 1e-9)) * \
            rng.standard_normal(n_groups)
        self.personal = spec.personal_sd * society.latent_z("threshold")

    def thresholds(self, society: SocietyView, idx: np.ndarray) -> np.ndarray:
        """Personal thresholds theta_i in [0, 1] of agents idx."""
        g = society.groups[idx]
        return np.clip(self.values["threshold"] + self.group_offset[g] + self.personal[idx],
                       0.0, 1.0)

    def extra(self, society: SocietyView, idx: np.ndarray, g: np.ndarray) -> np.ndarray:
        e = np.asarray(society.ego_answers(idx)[self.exposure], np.float64)
        met = e >= self.thresholds(society, idx)
        return self.values["jump"] * self.jump_scale[g] * met


class InteractionResponse(_NonlinearResponse[InteractionSpec]):
    """``score += strength * sum_p w_g,p x_{j_p} x_{k_p}`` over each community's own pairs."""

    shockable = ("linear", "strength")

    def __init__(self, spec: InteractionSpec, society: SocietyView, rng: np.random.Generator
                 ) -> None:
        super().__init__(spec, society, rng)
        d = len(society.pop.observed_names)
        pairs = np.array(list(combinations(range(d), 2)))
        if spec.n_pairs > len(pairs):
            raise ScenarioError(f"response.n_pairs = {spec.n_pairs} asks for more trait pairs than "
                                f"the population's {d} traits have ({len(pairs)}); lower it")
        n_groups = society.social.n_groups
        self.pairs = np.stack([pairs[rng.choice(len(pairs), spec.n_pairs, replace=False)]
                               for _ in range(n_groups)])                   # [G, P, 2]
        sign = rng.choice([-1.0, 1.0], size=(n_groups, spec.n_pairs))
        self.weight = sign * (1.0 + spec.strength_sd * rng.standard_normal(sign.shape))

    def extra(self, society: SocietyView, idx: np.ndarray, g: np.ndarray) -> np.ndarray:
        x = society.pop.observed[idx].astype(np.float64)
        p = self.pairs[g]                                                 # [n, P, 2]
        rows = np.arange(len(idx))[:, None]
        prod = x[rows, p[..., 0]] * x[rows, p[..., 1]]
        return self.values["strength"] * np.einsum("np,np->n", prod, self.weight[g])

    def relevance(self, society: SocietyView) -> np.ndarray:
        out = super().relevance(society) * self.values["linear"]
        for g in range(len(out)):
            for (j, k), w in zip(self.pairs[g], self.weight[g]):
                out[g, [j, k]] += abs(self.values["strength"] * w)
        return out


class RotatingResponse(_NonlinearResponse[RotatingSpec]):
    """``score += sum_{j in R_g(t)} a_g,j h(x_j)``: the relevant set ``R_g`` advances by
    ``n_relevant`` positions of the community's own trait order at every rotation."""

    shockable = ("linear", "strength")

    def __init__(self, spec: RotatingSpec, society: SocietyView, rng: np.random.Generator) -> None:
        super().__init__(spec, society, rng)
        names = society.pop.observed_names
        if spec.n_relevant > len(names):
            raise ScenarioError(f"response.n_relevant = {spec.n_relevant} asks for more relevant "
                                f"traits than the population has ({len(names)}: "
                                f"{', '.join(names)}); lower it or add population.traits")
        n_groups, d = society.social.n_groups, len(names)
        self.order = np.stack([rng.permutation(d) for _ in range(n_groups)])   # [G, D]
        self.sign = rng.choice([-1.0, 1.0], size=(n_groups, d))
        self.epoch = 0
        self.center = np.array([0.5 if _binary(n) else 0.0 for n in names])

    def _epoch_at(self, tick: int) -> int:
        s = self.spec
        return 0 if tick < s.start else 1 + (tick - s.start) // s.period

    def on_tick(self, society: SocietyView, tick: int) -> FormChange | None:
        epoch = self._epoch_at(tick)
        if epoch == self.epoch:
            return None
        self.epoch = epoch
        return FormChange("regime", "relevance_rotation", "response.relevance")

    def mask(self, n_groups: int, d: int) -> np.ndarray:
        """``[G, D]`` 0/1: the traits relevant in each community now."""
        pos = (self.epoch * self.spec.n_relevant + np.arange(self.spec.n_relevant)) % d
        out = np.zeros((n_groups, d))
        np.put_along_axis(out, self.order[:, pos], 1.0, axis=1)
        return out

    def extra(self, society: SocietyView, idx: np.ndarray, g: np.ndarray) -> np.ndarray:
        x = society.pop.observed[idx].astype(np.float64) - self.center
        h = np.sign(x) if self.spec.form == "step" else x
        w = self.values["strength"] * self.sign * self.mask(*self.sign.shape)
        return np.einsum("nd,nd->n", h, w[g])

    def relevance(self, society: SocietyView) -> np.ndarray:
        mask = self.mask(*self.sign.shape)
        return super().relevance(society) * self.values["linear"] + \
            abs(self.values["strength"]) * mask


class PeakResponse(Response[PeakSpec]):
    """``score = linear * GLM + offset_t + strength * amplitude_t * bump((x - location_t) /
    width)``, ``bump(u) = exp(-u^2 / 2)``; ``(offset, amplitude, location)_t`` are drawn
    afresh for every community at every tick (so every survey wave is a new task) from
    independent normals with the spec's means and sds."""

    shockable = ("strength", "linear")

    def __init__(self, spec: PeakSpec, society: SocietyView, rng: np.random.Generator) -> None:
        super().__init__(spec, society, rng)
        names = society.pop.observed_names
        if spec.trait not in names:
            raise ScenarioError(f"response.trait = {spec.trait!r} is not an observed trait of the "
                                f"population ({', '.join(names)}); choose one of them or add it "
                                f"to population.traits")
        if _binary(spec.trait):
            raise ScenarioError(f"response.trait = {spec.trait!r} is binary: a peak needs a "
                                f"continuous trait (e.g. age, education, income, religiosity)")
        self.column = society.pop.column(spec.trait)
        self.rng = rng
        self.n_groups = society.social.n_groups
        self.latent = self.draw()

    def draw(self) -> dict[str, np.ndarray]:
        """One fresh draw of every community's ``offset``, ``amplitude`` (before ``strength``)
        and ``location`` ``[G]``."""
        s, g = self.spec, self.n_groups
        z = self.rng.standard_normal((3, g))
        return {"offset": s.offset + s.offset_sd * z[0],
                "amplitude": s.amplitude + s.amplitude_sd * z[1],
                "location": s.location + s.location_sd * z[2]}

    def on_tick(self, society: SocietyView, tick: int) -> FormChange | None:
        self.latent = self.draw()          # a new task: not a change of form, no event
        return None

    def score(self, society: SocietyView, idx: np.ndarray) -> np.ndarray:
        g = society.groups[idx]
        x = society.pop.observed[idx, self.column].astype(np.float64)
        lat = self.latent
        u = (x - lat["location"][g]) / self.spec.width
        out = lat["offset"][g] + self.values["strength"] * lat["amplitude"][g] * \
            np.exp(-0.5 * u * u)
        lin = self.values["linear"]
        return out + lin * society.linear_score(idx) if lin else out

    def relevance(self, society: SocietyView) -> np.ndarray:
        out = super().relevance(society) * abs(self.values["linear"])
        out[:, self.column] += abs(self.values["strength"] * self.latent["amplitude"])
        return out

    def prior(self) -> dict[str, Any]:
        return self.spec.prior(self.values["strength"]) | {"linear": self.values["linear"]}


class MixtureResponse(Response[MixtureSpec]):
    """Each community answers through one component; ``response.<field>`` shocks reach every
    component that has the field."""

    def __init__(self, spec: MixtureSpec, society: SocietyView, rng: np.random.Generator) -> None:
        super().__init__(spec, society, rng)
        self.parts = [c.build(society, rng) for c in spec.components]
        n_groups, k = society.social.n_groups, len(spec.components)
        shares = np.asarray(spec.shares or [1.0] * k, np.float64)
        counts = np.floor(shares / shares.sum() * n_groups).astype(int)
        counts[np.argsort(-shares)[: n_groups - counts.sum()]] += 1
        self.component = rng.permutation(np.repeat(np.arange(k), counts))  # [G]
        self.values = {f: v for part in self.parts for f, v in part.values.items()}

    def score(self, society: SocietyView, idx: np.ndarray) -> np.ndarray:
        comp = self.component[society.groups[idx]]
        out = np.empty(len(idx))
        for c, part in enumerate(self.parts):
            rows = np.flatnonzero(comp == c)
            if rows.size:
                out[rows] = part.score(society, idx[rows])
        return out

    def on_tick(self, society: SocietyView, tick: int) -> FormChange | None:
        changes = [p.on_tick(society, tick) for p in self.parts]
        return next((c for c in changes if c is not None), None)

    def relevance(self, society: SocietyView) -> np.ndarray:
        rel = np.stack([p.relevance(society) for p in self.parts])     # [K, G, D]
        return rel[self.component, np.arange(len(self.component))]

    def set(self, name: str, value: float) -> None:
        hit = [p for p in self.parts if name in p.values]
        if not hit:
            raise KeyError(name)
        for p in hit:
            p.set(name, value)
        self.values[name] = float(value)


def _binary(name: str) -> bool:
    from simlab.society.population import TRAITS

    return name in TRAITS and TRAITS[name].binary


__all__ = ["RESPONSE_KINDS", "AnyResponseSpec", "FormChange", "GLMSpec", "InteractionSpec",
           "MixtureSpec", "PeakSpec", "Response", "ResponseSpec", "RotatingSpec",
           "ThresholdSpec", "response_spec"]
