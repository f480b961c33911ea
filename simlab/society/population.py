"""Population: observed traits a survey can ask, latent traits, per-community coefficients.

:func:`make_population` draws a synthetic population from :class:`PopulationSpec`. One knob,
``heterogeneity`` (>= 0: 0 none, 0.5 moderate, 1 strong), sets how far communities differ, in
three places at once: community trait means, community means of the latent traits, and the
behaviour coefficients (``coef[g] = beta + heterogeneity * 0.5 * N(0, I)``, ``intercept[g] =
intercept + heterogeneity * 1.0 * N(0, 1)``). Few-shot learning across communities is easy at 0
(every community is the same task) and hard when it is large.

Observed traits are stored on a fixed standardised scale (the survey applies no data-dependent
scaling, see ``TRAITS`` for the natural units), drawn from a Gaussian copula with the
correlations in ``TRAIT_CORR`` (signs as in general social surveys: education with income and
urban residence, religiosity with age, against education and urban residence).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from pydantic import ConfigDict, Field, field_validator, model_validator
from scipy.special import expit, ndtri

from simlab.errors import ScenarioError
from simlab.schema import StrictModel


@dataclass
class Population:
    """Trait arrays for N agents in G communities.

    ``observed [N, D]`` float32 with ``observed_names`` (what a survey can ask: age, education,
    income, female, urban, religiosity, ...), ``latent`` name -> ``[N]`` arrays (susceptibility,
    threshold, propensity, ...), and behaviour coefficients that differ by community:
    ``coef [G, D]`` and ``intercept [G]`` (heterogeneity is how far they spread).
    """

    observed: np.ndarray
    observed_names: list[str]
    latent: dict[str, np.ndarray]
    coef: np.ndarray
    intercept: np.ndarray
    heterogeneity: float = 0.0
    _col: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._col = {n: i for i, n in enumerate(self.observed_names)}

    def column(self, name: str) -> int:
        """Index of an observed trait; a clear error lists the valid names."""
        if name not in self._col:
            raise KeyError(f"no observed trait {name!r}; traits are: "
                           f"{', '.join(self.observed_names)}")
        return self._col[name]


class Trait(NamedTuple):
    """How an observed trait is stored: ``stored = (natural - center) / scale``."""

    center: float
    scale: float
    binary: bool
    meaning: str


TRAITS: dict[str, Trait] = {
    "age": Trait(45.0, 15.0, False, "age in years, 18..90"),
    "education": Trait(13.0, 3.0, False, "years of schooling, 0..22"),
    "income": Trait(10.5, 0.8, False, "log annual household income"),
    "female": Trait(0.0, 1.0, True, "1 = female"),
    "urban": Trait(0.0, 1.0, True, "1 = lives in a city (60% overall)"),
    "religiosity": Trait(0.0, 1.0, False, "religiosity scale, standardised"),
}
TRAIT_NAMES: tuple[str, ...] = tuple(TRAITS)
_BOUNDS = {"age": (18.0, 90.0), "education": (0.0, 22.0)}
_BINARY_SHARE = {"female": 0.5, "urban": 0.6}

TRAIT_CORR = np.array([
    # age  edu   inc   fem   urb   rel
    [1.0, -0.2, 0.2, 0.05, -0.1, 0.3],    # age
    [-0.2, 1.0, 0.5, 0.0, 0.3, -0.2],     # education
    [0.2, 0.5, 1.0, -0.1, 0.3, -0.1],     # income
    [0.05, 0.0, -0.1, 1.0, 0.0, 0.15],    # female
    [-0.1, 0.3, 0.3, 0.0, 1.0, -0.3],     # urban
    [0.3, -0.2, -0.1, 0.15, -0.3, 1.0],   # religiosity
])
"""Correlations of the latent Gaussian behind the observed traits (order of TRAIT_NAMES)."""

DEFAULT_COEF: dict[str, float] = {"age": -0.3, "education": 0.5, "income": 0.3,
                                  "female": 0.2, "urban": 0.4, "religiosity": -0.5}
"""Global behaviour coefficients (logit scale for binary responses) per stored trait unit."""

LATENT_TRAITS: dict[str, str] = {
    "susceptibility": "in (0, 1): how strongly others' behaviour or an infection reaches one",
    "threshold": "in (0, 1): share of adopting friends needed to adopt (Granovetter 1978)",
    "propensity": "real: baseline inclination (initial opinion, spontaneous adoption)",
    "stubbornness": "in (0, 1): weight on one's initial opinion (Friedkin & Johnsen 1990)",
    "activity": "> 0, mean 1: relative rate of interaction (lognormal)",
}
"""Latent traits every population carries (names the dynamics families read)."""

TRAIT_SHIFT_SD = 0.5      # community mean shift of a trait per unit heterogeneity (z units)
LATENT_SHIFT_SD = 0.5     # the same for latent traits (on their Gaussian scale)
COEF_DEV_SD = 0.5         # community deviation of a coefficient per unit heterogeneity
INTERCEPT_DEV_SD = 1.0    # community deviation of the intercept per unit heterogeneity


class PopulationSpec(StrictModel):
    """What population to draw (embedded in scenario files)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    heterogeneity: float = Field(0.5, ge=0.0, description="0 none, 0.5 moderate, 1 strong")
    traits: list[str] = Field(default_factory=lambda: list(TRAIT_NAMES),
                              description="observed traits, in this column order")
    coef: dict[str, float] = Field(default_factory=dict,
                                   description="global coefficients overriding DEFAULT_COEF")
    intercept: float = Field(0.0, description="global intercept (logit scale for binary)")

    @field_validator("traits")
    @classmethod
    def _known_traits(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in TRAITS]
        if unknown or not value or len(set(value)) != len(value):
            raise ScenarioError(f"population.traits={value!r}: give distinct names from "
                                f"{', '.join(TRAIT_NAMES)} (unknown: {unknown})")
        return value

    @model_validator(mode="after")
    def _coef_for_traits(self) -> PopulationSpec:
        unknown = [k for k in self.coef if k not in self.traits]
        if unknown:
            raise ScenarioError(f"population.coef names {unknown}, which are not among "
                                f"population.traits ({', '.join(self.traits)}); fix the name or "
                                f"add the trait")
        return self


def make_population(groups: np.ndarray, n_groups: int, spec: PopulationSpec,
                    rng: np.random.Generator) -> Population:
    """Draw traits and community coefficients for agents whose community is ``groups[i]``."""
    groups = np.asarray(groups)
    if groups.size and (groups.min() < 0 or groups.max() >= n_groups):
        raise ValueError(f"groups must lie in 0..{n_groups - 1} (n_groups={n_groups}); got "
                         f"{groups.min()}..{groups.max()}")
    h = spec.heterogeneity
    observed = _observed_traits(groups, n_groups, spec.traits, h, rng)
    latent = _latent_traits(groups, n_groups, h, rng)
    beta = np.array([spec.coef.get(t, DEFAULT_COEF[t]) for t in spec.traits])
    coef = beta + h * COEF_DEV_SD * rng.standard_normal((n_groups, len(spec.traits)))
    intercept = spec.intercept + h * INTERCEPT_DEV_SD * rng.standard_normal(n_groups)
    return Population(observed=observed, observed_names=list(spec.traits), latent=latent,
                      coef=coef.astype(np.float32), intercept=intercept.astype(np.float32),
                      heterogeneity=h)


def _observed_traits(groups: np.ndarray, n_groups: int, names: list[str], h: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Gaussian copula draw with community mean shifts, then each trait's fixed transform."""
    cols = [TRAIT_NAMES.index(t) for t in names]
    chol = np.linalg.cholesky(TRAIT_CORR[np.ix_(cols, cols)])
    shift = h * TRAIT_SHIFT_SD * rng.standard_normal((n_groups, len(cols)))
    z = rng.standard_normal((len(groups), len(cols))) @ chol.T
    z += shift[groups]
    out = np.empty(z.shape, dtype=np.float32)
    for j, name in enumerate(names):
        out[:, j] = _stored(name, z[:, j])
    return out


def _stored(name: str, z: np.ndarray) -> np.ndarray:
    """Latent normal -> the stored (standardised) value of one trait."""
    trait = TRAITS[name]
    if trait.binary:
        return (z > ndtri(1.0 - _BINARY_SHARE[name])).astype(np.float32)
    if name in _BOUNDS:
        lo, hi = ((b - trait.center) / trait.scale for b in _BOUNDS[name])
        return np.clip(z, lo, hi)
    return z


def to_natural(name: str, stored: np.ndarray) -> np.ndarray:
    """Stored values of an observed trait in natural units (years, log income, 0/1)."""
    trait = TRAITS[name]
    return np.asarray(stored) * trait.scale + trait.center


def _latent_traits(groups: np.ndarray, n_groups: int, h: float,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Latent traits, each a fixed transform of a normal with a community mean shift."""
    shift = h * LATENT_SHIFT_SD * rng.standard_normal((n_groups, len(LATENT_TRAITS)))
    z = rng.standard_normal((len(groups), len(LATENT_TRAITS))) + shift[groups]
    logit_quarter = float(np.log(0.25 / 0.75))
    return {
        "susceptibility": expit(z[:, 0]).astype(np.float32),
        "threshold": expit(logit_quarter + 0.5 * z[:, 1]).astype(np.float32),
        "propensity": z[:, 2].astype(np.float32),
        "stubbornness": expit(z[:, 3]).astype(np.float32),
        "activity": np.exp(0.5 * z[:, 4] - 0.125).astype(np.float32),
    }
