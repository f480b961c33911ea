"""CoevolvingSociety: Holme–Newman regimes, graph bookkeeping, determinism, oracle, shocks."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from simlab.society.families.coevolving import CoevolvingParams, CoevolvingSociety
from simlab.society.graphs import SocialGraph
from simlab.society.population import Population

from helpers.society import gnp_inputs, planted_inputs, repeated_responses, run

pytestmark = pytest.mark.society


def inputs(n: int = 200, seed: int = 0) -> tuple[SocialGraph, Population]:
    """Mean degree 4, as in Holme & Newman (2006); the networkx graph is kept to check that the
    society leaves the caller's graph alone."""
    return gnp_inputs(n, 4.0, seed=seed, keep_networkx=True)


def society(n: int = 200, rng: int = 1, seed: int = 0, **params) -> CoevolvingSociety:
    graph, pop = inputs(n, seed=seed)
    return CoevolvingSociety(graph, pop, CoevolvingParams(**params), rng=rng)


def test_same_seed_same_state_different_seed_differs():
    a, b, c = (run(society(rng=r, act_share=0.3), 30) for r in (3, 3, 4))
    assert np.array_equal(a.opinion, b.opinion)
    assert (a.social.adj != b.social.adj).nnz == 0
    assert not (np.array_equal(a.opinion, c.opinion) and (a.social.adj != c.social.adj).nnz == 0)


def test_graph_stays_simple_symmetric_and_consistent():
    graph, pop = inputs(300)
    m = graph.adj.nnz // 2
    original = graph.adj.copy()
    s = CoevolvingSociety(graph, pop, CoevolvingParams(phi=0.6, act_share=0.5), rng=2)
    moved = 0
    for _ in range(60):
        s.step()
        moved += s.rewired
        adj = s.social.adj.copy()
        adj.sum_duplicates()
        assert adj.nnz == 2 * m and adj.max() == 1.0 and adj.diagonal().sum() == 0
        assert (adj != adj.T).nnz == 0
        np.testing.assert_array_equal(s.social.degree, np.asarray(adj.sum(axis=1)).ravel())
    edges = sp.csr_matrix((np.ones(m), (s.edge_u, s.edge_v)), shape=adj.shape)
    assert ((edges + edges.T) != adj).nnz == 0
    assert moved > 100
    assert (graph.adj != original).nnz == 0 and graph.graph is not None   # caller's graph intact
    assert s.social is not graph and s.social.graph is None


def test_phi_near_one_segregates_into_single_party_components():
    s = society(phi=0.98, act_share=0.5, seed=1)
    start = s.party_shares()
    run(s, 800)
    assert s.discordant_share() == 0.0
    n_comp, label = connected_components(s.social.adj, directed=False)
    parties_per_component = [len(np.unique(s.opinion[label == c])) for c in range(n_comp)]
    assert max(parties_per_component) == 1
    assert s.party_shares().max() < 0.6                     # diversity survives
    assert np.abs(s.party_shares() - start).max() < 0.2


def test_phi_near_zero_reaches_consensus_like_dominance():
    s = run(society(phi=0.02, act_share=0.5, seed=1), 800)
    assert s.party_shares().max() > 0.9


def test_pure_rewiring_never_changes_opinions():
    s = society(phi=1.0, act_share=0.5)
    start = s.opinion.copy()
    run(s, 20)
    np.testing.assert_array_equal(s.opinion, start)


def test_inactive_agents_never_change_their_own_opinion():
    graph, pop = inputs()
    pop.latent["activity"] = np.where(np.arange(graph.n_nodes) % 2 == 0, 0.0, 2.0)
    s = CoevolvingSociety(graph, pop, CoevolvingParams(phi=0.0, act_share=0.4), rng=0)
    start = s.opinion.copy()
    run(s, 30)
    np.testing.assert_array_equal(s.opinion[::2], start[::2])
    assert (s.opinion[1::2] != start[1::2]).any()


def test_runs_on_the_generated_graph_and_population():
    rng = np.random.default_rng(0)
    graph, pop = planted_inputs(rng, 4, 100, 6.0)
    s = run(CoevolvingSociety(graph, pop, CoevolvingParams(phi=0.7, act_share=0.2), rng=1), 40)
    assert s.rewired >= 0 and s.discordant_share() < 0.6
    p = s.oracle(np.arange(graph.n_nodes))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-9)
    assert len(np.unique(s.respond(np.arange(graph.n_nodes), rng))) == 3


def test_oracle_rows_are_probabilities_and_loyalty_favours_current_party():
    s = run(society(n_parties=4, act_share=0.2), 5)
    idx = np.arange(0, 200, 2)
    p = s.oracle(idx)
    assert p.shape == (len(idx), 4) and np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    s.set("loyalty", 0.0)
    q = s.oracle(idx)
    rows = np.arange(len(idx))
    assert np.all(p[rows, s.opinion[idx]] > q[rows, s.opinion[idx]])


def test_respond_follows_the_oracle_with_n_parties_classes():
    s = run(society(n_parties=4, act_share=0.2), 5)
    assert s.n_classes == 4
    idx = np.arange(20)
    y = repeated_responses(s, idx, 4000)
    assert set(np.unique(y)) <= {0, 1, 2, 3}
    freq = np.stack([(y == c).mean(axis=0) for c in range(4)], axis=1)
    np.testing.assert_allclose(freq, s.oracle(idx), atol=0.04)


def test_shocks_change_the_oracle_and_n_parties_is_fixed():
    s = run(society(act_share=0.2), 3)
    idx = np.arange(50)
    base = s.oracle(idx)
    s.set("coef.age", s.get("coef.age") + 1.5)
    assert not np.allclose(s.oracle(idx), base)
    s.set("ideology", 0.0)
    flat = s.oracle(idx)
    assert not np.allclose(flat, base)
    with pytest.raises(ValueError, match="n_parties"):
        s.set("n_parties", 5)
    with pytest.raises(ValueError, match="phi"):
        s.set("phi", 1.5)


def test_ego_answers_party_shares_of_friends():
    s = run(society(act_share=0.2), 5)
    idx = np.flatnonzero(s.social.degree > 0)[:30]
    ans = s.ego_answers(idx)
    shares = np.stack([ans[f"share_friends_party_{c}"] for c in range(3)], axis=1)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-6)
    j = idx[0]
    friends = s.social.adj[j].indices
    assert shares[0, s.opinion[friends][0]] > 0
    for row, i in enumerate(idx):                          # by hand from the (rewired) graph
        mates = s.social.adj[i].indices
        want = np.bincount(s.opinion[mates], minlength=3) / len(mates)
        np.testing.assert_allclose(shares[row], want, rtol=1e-6)
    np.testing.assert_array_equal(ans["n_friends"], s.social.degree[idx])
    person = s.person(j)                                   # Mesa agent view on the arrays
    assert person.opinion == s.opinion[j]
    np.testing.assert_array_equal(np.sort(person.friends), np.sort(friends))
