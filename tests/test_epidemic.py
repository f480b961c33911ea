"""EpidemicSociety: Funk et al. awareness mechanics, final size, determinism, oracle, shocks."""
from __future__ import annotations

import numpy as np
import pytest

from simlab.society.families.epidemic import (
    INFECTED,
    RECOVERED,
    SUSCEPTIBLE,
    UNAWARE,
    EpidemicParams,
    EpidemicSociety,
)
from simlab.society.shocks import AbruptShock

from helpers.society import gnp_inputs, planted_inputs, repeated_responses, run

pytestmark = pytest.mark.society


def society(n: int = 400, rng: int = 1, **params) -> EpidemicSociety:
    graph, pop = gnp_inputs(n, 8.0)
    return EpidemicSociety(graph, pop, EpidemicParams(**params), rng=rng)


def test_same_seed_same_state_different_seed_differs():
    a, b, c = (run(society(rng=r, seed_infected=0.02), 30) for r in (5, 5, 6))
    assert np.array_equal(a.status, b.status) and np.array_equal(a.level, b.level)
    assert not (np.array_equal(a.status, c.status) and np.array_equal(a.level, c.level))


def test_awareness_reduces_the_final_size():
    def final_size(sigma: float, rng: int) -> float:
        s = society(n=1000, rng=rng, beta=0.04, sigma=sigma, alpha=0.3, fade=0.05, n_levels=5,
                    seed_infected=0.01)
        return run(s, 120).attack_rate

    unaware = np.mean([final_size(1.0, r) for r in (1, 2)])    # awareness without effect
    aware = np.mean([final_size(0.1, r) for r in (1, 2)])
    assert unaware > 0.7
    assert aware < unaware - 0.15


def test_susceptibility_follows_funk_formula():
    s = society(sigma=0.2, rho=0.5, n_levels=4)
    s.level[:6] = [0, 1, 2, 3, 4, UNAWARE]
    np.testing.assert_allclose(s.susceptibility()[:6],
                               [0.2, 0.6, 0.8, 0.9, 1.0, 1.0])


def test_latent_susceptibility_scales_infection_unless_spread_is_zero():
    graph, pop = gnp_inputs(400, 8.0)
    pop.latent["susceptibility"] = np.linspace(0.1, 0.9, graph.n_nodes)
    ratio = pop.latent["susceptibility"] / pop.latent["susceptibility"].mean()
    s = EpidemicSociety(graph, pop, EpidemicParams(susceptibility_spread=2.0), rng=0)
    np.testing.assert_allclose(s.susceptibility(), ratio ** 2)
    s.set("susceptibility_spread", 0.0)
    np.testing.assert_allclose(s.susceptibility(), 1.0)


def test_negative_latent_susceptibility_is_a_clear_error():
    graph, pop = gnp_inputs(400, 8.0)
    pop.latent["susceptibility"] = np.linspace(-0.5, 1.0, graph.n_nodes)
    with pytest.raises(ValueError, match="latent\\['susceptibility'\\] .* must be >= 0"):
        EpidemicSociety(graph, pop)


def test_runs_on_the_generated_graph_and_population():
    graph, pop = planted_inputs(np.random.default_rng(0), 4, 150, 8.0)
    s = run(EpidemicSociety(graph, pop, EpidemicParams(seed_infected=0.02), rng=1), 40)
    assert s.attack_rate > 0.1
    p = s.oracle(np.arange(graph.n_nodes))
    assert np.all((p >= 0) & (p <= 1)) and p.std() > 0.05


def test_awareness_passes_one_level_down_to_neighbours_only():
    s = society(beta=0.0, omega=0.0, fade=0.0, alpha=50.0, seed_infected=0.0)
    source = 0
    s.level[source] = 0
    s.step()
    friends = s.social.adj[source].indices
    assert np.all(s.level[friends] == 1)
    others = np.setdiff1d(np.arange(s.n_agents), np.append(friends, source))
    assert np.all(s.level[others] == UNAWARE)
    assert s.level[source] == 0


def test_awareness_fades_to_unaware_without_new_information():
    s = society(beta=0.0, omega=0.0, alpha=0.0, fade=50.0, n_levels=3, seed_infected=0.0)
    s.level[:] = 0
    for expected in (1, 2, UNAWARE):
        s.step()
        assert np.all(s.level == expected)


def test_infected_become_first_hand_aware():
    s = society(beta=0.0, gamma=0.0, omega=50.0, alpha=0.0, seed_infected=0.05)
    infected = s.status == INFECTED
    s.step()
    assert np.all(s.level[infected] == 0)


def test_outbreak_as_a_shock_on_import_rate_and_waning():
    graph, pop = gnp_inputs(400, 8.0)
    outbreak = [AbruptShock(name="outbreak", target="import_rate", at=6, value=0.05),
                AbruptShock(name="contained", target="import_rate", at=26, value=0.0)]
    s = EpidemicSociety(graph, pop, EpidemicParams(seed_infected=0.0, gamma=0.5),
                        shocks=outbreak, rng=1)
    run(s, 5)
    assert s.attack_rate == 0.0
    run(s, 20)
    assert s.attack_rate > 0.3 and (s.status == RECOVERED).any()
    assert [(tick, shock.name) for tick, shock, _ in s.events] == [(6, "outbreak")]
    s.set("beta", 0.0)
    s.set("waning", 50.0)
    run(s, 15)
    assert [tick for tick, _, _ in s.events] == [6, 26]
    assert np.all(s.status == SUSCEPTIBLE)


def test_oracle_is_the_documented_probability_and_respond_follows_it():
    s = run(society(seed_infected=0.05), 15)
    idx = np.arange(60)
    p = s.oracle(idx)
    assert p.shape == (60,) and np.all((p >= 0) & (p <= 1))
    g = s.groups[idx]
    infected = (s.status == INFECTED).astype(np.float64)
    friends = s.social.neighbour_mean(infected)[idx]
    z = (s.intercept[g] + np.sum(s.pop.observed[idx] * s.coef[g], axis=1)
         + 3.0 * s.quality(idx) + 1.0 * infected[idx] + 2.0 * friends)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-z)), rtol=1e-5)
    np.testing.assert_allclose(repeated_responses(s, idx, 3000).mean(axis=0), p, atol=0.04)


def test_shocks_change_the_oracle():
    s = run(society(seed_infected=0.05), 10)
    idx = np.arange(100)
    base = s.oracle(idx)
    s.set("coef.education", s.get("coef.education") - 2.0)
    assert not np.allclose(s.oracle(idx), base)
    shifted = s.oracle(idx)
    s.set("awareness_effect", 0.0)
    assert not np.allclose(s.oracle(idx), shifted)


def test_ego_answers_share_of_infected_and_aware_friends():
    s = run(society(seed_infected=0.05), 8)
    idx = np.array([1, 2, 3, 50])
    ans = s.ego_answers(idx)
    infected = (s.status == INFECTED).astype(np.float32)
    aware = (s.level < s.params.n_levels).astype(np.float32)
    np.testing.assert_allclose(ans["share_friends_infected"],
                               s.social.neighbour_mean(infected)[idx], rtol=1e-6)
    np.testing.assert_allclose(ans["share_friends_aware"],
                               s.social.neighbour_mean(aware)[idx], rtol=1e-6)
    assert s.person(2).status == s.status[2] and s.person(2).level == s.level[2]
