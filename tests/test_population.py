"""Population generator: traits, latent traits, heterogeneity, validation."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from simlab.society.population import (
    DEFAULT_COEF,
    LATENT_TRAITS,
    TRAIT_NAMES,
    PopulationSpec,
    make_population,
    to_natural,
)

pytestmark = pytest.mark.society

G, PER = 20, 500
GROUPS = np.repeat(np.arange(G), PER)


def draw(seed: int = 0, **spec) -> object:
    return make_population(GROUPS, G, PopulationSpec(**spec), np.random.default_rng(seed))


def group_means(pop, name: str) -> np.ndarray:
    col = pop.observed[:, pop.column(name)]
    return np.bincount(GROUPS, weights=col) / PER


def test_shapes_names_and_ranges() -> None:
    pop = draw()
    assert pop.observed.shape == (G * PER, len(TRAIT_NAMES)) and pop.observed.dtype == np.float32
    assert pop.observed_names == list(TRAIT_NAMES)
    assert pop.coef.shape == (G, len(TRAIT_NAMES)) and pop.intercept.shape == (G,)
    assert set(pop.latent) == set(LATENT_TRAITS)
    for name in ("female", "urban"):
        assert set(np.unique(pop.observed[:, pop.column(name)])) <= {0.0, 1.0}
    years = to_natural("age", pop.observed[:, pop.column("age")])
    assert years.min() >= 18 - 1e-4 and years.max() <= 90 + 1e-4
    for name in ("susceptibility", "threshold", "stubbornness"):
        assert ((pop.latent[name] > 0) & (pop.latent[name] < 1)).all()
    assert (pop.latent["activity"] > 0).all()


def test_without_heterogeneity_communities_are_alike() -> None:
    pop = draw(heterogeneity=0.0)
    assert np.allclose(pop.coef, [DEFAULT_COEF[t] for t in TRAIT_NAMES])
    assert np.allclose(pop.intercept, 0.0)
    assert pop.observed[:, pop.column("female")].mean() == pytest.approx(0.5, abs=0.02)
    assert pop.observed[:, pop.column("urban")].mean() == pytest.approx(0.6, abs=0.02)
    # group means differ only by sampling error (sd 1/sqrt(500) ~ 0.045)
    assert group_means(pop, "income").std() < 0.08
    assert pop.latent["activity"].mean() == pytest.approx(1.0, abs=0.03)


def test_heterogeneity_spreads_communities_apart() -> None:
    spreads = []
    for h in (0.0, 0.5, 2.0):
        pop = draw(seed=3, heterogeneity=h)
        spreads.append((group_means(pop, "religiosity").std(), pop.coef.std(axis=0).mean(),
                        pop.intercept.std(),
                        np.bincount(GROUPS, weights=pop.latent["propensity"]).std() / PER))
    spreads = np.array(spreads)
    assert (np.diff(spreads, axis=0) > 0).all()
    assert spreads[2, 1] == pytest.approx(2.0 * 0.5, rel=0.35)  # coef deviation sd = h * 0.5


def test_trait_correlations_have_the_survey_signs() -> None:
    pop = draw(heterogeneity=0.0)
    c = np.corrcoef(pop.observed.T)
    i = {n: k for k, n in enumerate(pop.observed_names)}
    assert c[i["education"], i["income"]] > 0.35
    assert c[i["religiosity"], i["age"]] > 0.2
    assert c[i["religiosity"], i["urban"]] < -0.1


def test_trait_subset_and_coef_override() -> None:
    pop = draw(heterogeneity=0.0, traits=["income", "age"], coef={"age": 1.5}, intercept=-1.0)
    assert pop.observed_names == ["income", "age"]
    assert np.allclose(pop.coef, [DEFAULT_COEF["income"], 1.5])
    assert np.allclose(pop.intercept, -1.0)
    assert pop.column("age") == 1
    with pytest.raises(KeyError, match="traits are: income, age"):
        pop.column("education")


def test_reproducible() -> None:
    a, b = draw(7), draw(7)
    assert np.array_equal(a.observed, b.observed) and np.array_equal(a.coef, b.coef)
    assert not np.array_equal(a.observed, draw(8).observed)


@pytest.mark.parametrize(("spec", "needle"), [
    (dict(traits=["age", "height"]), "unknown: \\['height'\\]"),
    (dict(traits=["age", "age"]), "distinct names"),
    (dict(coef={"income": 1.0}, traits=["age"]), "population.coef names \\['income'\\]"),
    (dict(heterogeneity=-0.1), "greater than or equal to 0"),
    (dict(spread=1.0), "Extra inputs are not permitted"),
])
def test_spec_errors(spec: dict, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        PopulationSpec(**spec)


def test_groups_out_of_range() -> None:
    with pytest.raises(ValueError, match="groups must lie in 0..1"):
        make_population(np.array([0, 1, 2]), 2, PopulationSpec(), np.random.default_rng())
