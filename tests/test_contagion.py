"""ContagionSociety: threshold rule, Bass push tipping, determinism, oracle, shocks."""
from __future__ import annotations

import numpy as np
import pytest

from simlab.society.families.contagion import ContagionParams, ContagionSociety

from helpers.society import gnp_inputs, planted_inputs, repeated_responses, run

pytestmark = pytest.mark.society


def society(n: int = 400, rng: int = 1, **params) -> ContagionSociety:
    graph, pop = gnp_inputs(n, 8.0, latent=["threshold"])
    return ContagionSociety(graph, pop, ContagionParams(**params), rng=rng)


def test_same_seed_same_state_different_seed_differs():
    a, b, c = (run(society(rng=r), 25) for r in (7, 7, 8))
    assert np.array_equal(a.adopted, b.adopted)
    assert not np.array_equal(a.adopted, c.adopted)
    assert a.tick == 25


@pytest.mark.parametrize("kind, mean", [("fraction", 0.25), ("count", 2.0)])
def test_one_tick_follows_the_threshold_rule(kind, mean):
    s = society(p_innovation=0.0, threshold_kind=kind, threshold_mean=mean, threshold_sd=0.0,
                seed_share=0.2)
    before = s.adopted.copy()
    exposure = s.exposure()
    s.step()
    expected = before | (exposure >= mean)
    assert np.array_equal(s.adopted, expected)
    assert (s.adopted & ~before).any()


def test_push_tips_adoption_above_and_not_below():
    low = run(society(n=1000, threshold_mean=0.4, p_innovation=0.0005), 30)
    high = run(society(n=1000, threshold_mean=0.4, p_innovation=0.03), 30)
    assert low.adoption_share < 0.1       # only the external trickle and a few cascades
    assert high.adoption_share > 0.95     # the push tipped the whole network


def test_lower_thresholds_tip_at_the_same_push():
    easy = run(society(n=1000, threshold_mean=0.2, p_innovation=0.002), 20)
    hard = run(society(n=1000, threshold_mean=0.45, p_innovation=0.002), 20)
    assert easy.adoption_share > 0.95
    assert hard.adoption_share < 0.2


def test_abandonment_drops_adopters():
    s = society(p_innovation=0.0, abandon=1.0, threshold_mean=0.5, threshold_sd=0.0,
                seed_share=0.3)
    before = s.adopted.copy()
    exposure = s.exposure()
    s.step()
    assert not (s.adopted & before).any()
    # everyone else still follows the threshold rule on the start-of-tick exposure
    np.testing.assert_array_equal(s.adopted, ~before & (exposure >= 0.5))
    assert s.adopted.any() and (before & (exposure >= 0.5)).any()   # both cases occur


def test_runs_on_the_generated_graph_and_population():
    graph, pop = planted_inputs(np.random.default_rng(0), 4, 150, 10.0)
    s = ContagionSociety(graph, pop, ContagionParams(p_innovation=0.01), rng=1)
    latent = pop.latent["threshold"]
    assert np.corrcoef(s.thresholds(), latent)[0, 1] > 0.999   # ranking from the population
    run(s, 40)
    assert s.adoption_share > 0.5
    p = s.oracle(np.arange(graph.n_nodes))
    assert np.all((p >= 0) & (p <= 1)) and p.std() > 0.05


def test_fraction_threshold_above_one_is_a_clear_error():
    with pytest.raises(ValueError, match="threshold_mean"):
        ContagionParams(threshold_mean=1.5)
    ContagionParams(threshold_mean=1.5, threshold_kind="count")
    s = society()
    with pytest.raises(ValueError, match="threshold_mean"):
        s.set("threshold_mean", 2.0)


def test_oracle_is_the_documented_probability():
    s = run(society(seed_share=0.1), 5)
    idx = np.arange(0, 400, 3)
    p = s.oracle(idx)
    assert p.shape == (len(idx),) and np.all((p >= 0) & (p <= 1))
    g = s.groups[idx]
    share = s.social.neighbour_mean(s.adopted.astype(np.float64))[idx]
    z = (s.intercept[g] + np.sum(s.pop.observed[idx] * s.coef[g], axis=1)
         + 4.0 * (s.adopted[idx] - 0.5) + 1.0 * share)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-z)), rtol=1e-5)


def test_respond_follows_the_oracle():
    s = run(society(seed_share=0.1), 5)
    idx = np.arange(40)
    draws = repeated_responses(s, idx, 3000)
    assert set(np.unique(draws)) <= {0.0, 1.0}
    np.testing.assert_allclose(draws.mean(axis=0), s.oracle(idx), atol=0.04)


def test_shocks_change_the_oracle_and_the_dynamics():
    s = run(society(seed_share=0.1), 3)
    idx = np.arange(100)
    base = s.oracle(idx)
    s.set("coef.income", s.get("coef.income") + 2.0)
    assert not np.allclose(s.oracle(idx), base)
    s.set("intercept", s.get("intercept") + 1.0)
    s.set("adopted_effect", 0.0)
    assert not np.allclose(s.oracle(idx), base)
    s.set("threshold_mean", 0.0)            # everyone now tips on the next tick
    s.set("threshold_sd", 0.0)
    s.step()
    assert s.adoption_share == 1.0


def test_ego_answers_share_of_adopting_friends():
    s = run(society(seed_share=0.2), 2)
    idx = np.array([0, 5, 9, 77])
    ans = s.ego_answers(idx)
    expected = s.social.neighbour_mean(s.adopted.astype(np.float32))[idx]
    np.testing.assert_allclose(ans["share_friends_adopted"], expected, rtol=1e-6)
    np.testing.assert_array_equal(ans["n_friends"], s.social.degree[idx])
    assert s.person(5).adopted == bool(s.adopted[5])      # Mesa agent view on the array
