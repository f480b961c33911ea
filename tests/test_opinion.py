"""Opinion society: the bounded-confidence update, the reference model, Persons, registry."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from pydantic import ValidationError

from simlab.society import FAMILIES, Society, society_class
from simlab.society.families.opinion import OpinionParams, OpinionSociety
from simlab.society.graphs import from_networkx
from simlab.society.population import PopulationSpec, make_population

from helpers.society import gnp_inputs, planted_inputs

pytestmark = pytest.mark.society

BENCH = Path(__file__).resolve().parents[1] / "bench" / "per_agent_opinion.py"


def society(seed: int = 0, n_groups: int = 4, size: int = 50, h: float = 0.5,
            **params) -> OpinionSociety:
    g, pop = planted_inputs(np.random.default_rng(seed), n_groups, size, 6.0, 0.7, h)
    return OpinionSociety(g, pop, OpinionParams(**params), rng=seed)


def path_society(opinions: list[float], **params) -> OpinionSociety:
    G = nx.path_graph(len(opinions))
    nx.set_node_attributes(G, "all", "group")
    g = from_networkx(G)
    pop = make_population(g.groups, 1, PopulationSpec(), np.random.default_rng(0))
    s = OpinionSociety(g, pop, OpinionParams(**params), rng=0)
    s.initial_opinion = np.array(opinions, dtype=float)
    s.opinion = s.initial_opinion.copy()
    return s


def test_hegselmann_krause_step_by_hand() -> None:
    s = path_society([-0.5, -0.3, 0.4, 0.5], eps=0.25, anchoring=0.0)
    s.step()
    # 0 hears 1; 1 hears 0 (not 2: 0.7 apart); 2 hears 3 (not 1); 3 hears 2
    assert np.allclose(s.opinion, [-0.4, -0.4, 0.45, 0.45])


def test_friedkin_johnsen_anchor_and_media_signal() -> None:
    s = path_society([-0.5, -0.3, 0.4, 0.5], eps=0.25, anchoring=1.0, media_push=0.5,
                     media_opinion=1.0)
    stub = s.pop.latent["stubbornness"].astype(float)
    hk = np.array([-0.4, -0.4, 0.45, 0.45])
    s.step()
    expected = stub * s.initial_opinion + (1 - stub) * (0.5 * hk + 0.5 * 1.0)
    assert np.allclose(s.opinion, expected)


def test_matches_the_per_agent_mesa_reference() -> None:
    spec = importlib.util.spec_from_file_location("per_agent_opinion", BENCH)
    ref_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref_mod)
    params = dict(eps=0.4, anchoring=0.3, media_push=0.05, media_opinion=-0.5)
    fast = society(seed=2, **params)
    slow = ref_mod.PerAgentOpinionModel(fast.social, fast.pop, OpinionParams(**params), rng=2)
    for _ in range(8):
        fast.step()
        slow.step()
    assert np.abs(fast.opinion - slow.opinions()).max() < 1e-5   # single precision (float32)
    assert np.abs(fast.opinion - fast.initial_opinion).mean() > 0.05  # it did move


def test_threaded_blocks_give_identical_results(monkeypatch) -> None:
    import simlab.society.families.opinion as opinion
    from simlab.society import kernels

    monkeypatch.setattr(kernels, "_BACKEND", "numpy")   # the blocks are the numpy path's

    one = society(seed=3, eps=0.5, media_push=0.02)
    monkeypatch.setattr(opinion, "MIN_BLOCK_EDGES", 40)
    monkeypatch.setenv("SIMLAB_THREADS", "3")
    many = society(seed=3, eps=0.5, media_push=0.02)
    assert len(one._blocks) == 1 and len(many._blocks) == 3
    G = nx.path_graph(30)
    G.add_nodes_from(range(30, 35))  # isolated agents inside the blocks
    nx.set_node_attributes(G, {i: i % 2 for i in G}, "group")
    g = from_networkx(G, isolated="keep")
    pop = make_population(g.groups, 2, PopulationSpec(), np.random.default_rng(0))
    monkeypatch.setattr(opinion, "MIN_BLOCK_EDGES", 10)
    lonely = OpinionSociety(g, pop, OpinionParams(eps=2.0, anchoring=0.0), rng=0)
    assert len(lonely._blocks) == 3 and lonely._blocks[-1].r1 == 35
    before = lonely.opinion.copy()
    for _ in range(5):
        one.step()
        many.step()
        lonely.step()
    assert np.array_equal(one.opinion, many.opinion)
    assert np.array_equal(lonely.opinion[30:], before[30:])  # nobody to listen to
    assert not np.allclose(lonely.opinion[:30], before[:30])


def test_result_is_identical_for_any_thread_count(monkeypatch) -> None:
    import simlab.society.families.opinion as opinion
    from simlab.society import kernels

    monkeypatch.setattr(kernels, "_BACKEND", "numpy")   # the blocks are the numpy path's

    monkeypatch.setattr(opinion, "MIN_BLOCK_EDGES", 25)
    runs = []
    for threads in ("1", "2", "5", "8"):
        monkeypatch.setenv("SIMLAB_THREADS", threads)
        s = society(seed=4, eps=0.4, media_push=0.05)
        assert len(s._blocks) == int(threads)
        for _ in range(6):
            s.step()
        runs.append(s.opinion)
    assert all(np.array_equal(runs[0], r) for r in runs[1:])


def test_default_threads_respect_affinity_and_omp(monkeypatch) -> None:
    import os

    import simlab.society.families.opinion as opinion

    monkeypatch.delenv("SIMLAB_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert opinion._threads() == max(1, min(opinion.MAX_THREADS, cpus))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")   # what sweep workers set: no oversubscription
    assert opinion._threads() == 1
    monkeypatch.setenv("SIMLAB_THREADS", "3")    # the explicit setting wins
    assert opinion._threads() == 3
    monkeypatch.setenv("SIMLAB_THREADS", "many")
    with pytest.raises(ValueError, match="SIMLAB_THREADS='many' must be a whole number"):
        opinion._threads()
    monkeypatch.setenv("SIMLAB_THREADS", "0")
    with pytest.raises(ValueError, match="SIMLAB_THREADS='0' must be a whole number of threads >= 1"):
        opinion._threads()


def test_missing_latent_trait_is_a_clear_error() -> None:
    graph, pop = gnp_inputs(40, 4.0)
    with pytest.raises(ValueError, match="needs the latent trait 'propensity'"):
        OpinionSociety(graph, pop)


def test_pickled_society_continues_identically() -> None:
    import pickle

    s = society(seed=8, eps=0.5)
    s.step()
    twin = pickle.loads(pickle.dumps(s))
    for _ in range(3):
        s.step()
        twin.step()
    assert np.array_equal(s.opinion, twin.opinion) and twin.tick == s.tick


def test_wide_confidence_reaches_consensus_narrow_fragments() -> None:
    wide = society(seed=1, n_groups=1, size=120, eps=2.0, anchoring=0.0)
    narrow = society(seed=1, n_groups=1, size=120, eps=0.05, anchoring=0.0)
    for _ in range(60):
        wide.step()
        narrow.step()
    assert wide.opinion.std() < 1e-3
    assert narrow.opinion.std() > 0.3


def test_anchoring_prevents_consensus() -> None:
    s = society(seed=1, n_groups=1, size=120, eps=2.0, anchoring=0.8)
    for _ in range(60):
        s.step()
    assert s.opinion.std() > 0.05


def test_media_push_raises_support() -> None:
    quiet, pushed = society(seed=4), society(seed=4, media_push=0.1, media_opinion=1.0)
    for _ in range(10):
        quiet.step()
        pushed.step()
    everyone = np.arange(quiet.n_agents)
    assert pushed.oracle(everyone).mean() > quiet.oracle(everyone).mean() + 0.05


def test_binary_and_continuous_responses() -> None:
    s = society(seed=3)
    idx = np.arange(20)
    p = s.oracle(idx)
    g = s.groups[idx]
    eta = 2.0 * s.opinion[idx] + s.intercept[g] + (s.pop.observed[idx] * s.coef[g]).sum(1)
    assert np.allclose(p, 1 / (1 + np.exp(-eta)), atol=1e-6)
    y = s.respond(idx, np.random.default_rng(0))
    assert set(np.unique(y)) <= {0.0, 1.0}
    c = society(seed=3, response="continuous", response_sd=0.5)
    assert c.target == "regression" and c.response_sd == 0.5
    assert np.allclose(c.oracle(idx), eta, atol=1e-5)
    draws = np.stack([c.respond(idx, np.random.default_rng(k)) for k in range(400)])
    assert draws.std(axis=0).mean() == pytest.approx(0.5, rel=0.1)


def test_ego_answers() -> None:
    s = society(seed=5)
    idx = np.array([0, 7, 60])
    ego = s.ego_answers(idx)
    assert np.array_equal(ego["n_friends"], s.social.degree[idx])
    for k, i in enumerate(idx):
        friends = s.social.adj[i].indices
        assert ego["share_friends_support"][k] == pytest.approx((s.opinion[friends] > 0).mean())


def test_persons_are_lazy_views() -> None:
    s = society(seed=6)
    assert len(s.agents) == 0
    p = s.person(3)
    assert s.person(3) is p and len(s.agents) == 1
    assert p.opinion == s.opinion[3] and p.group == s.groups[3] and p.degree == s.social.degree[3]
    p.opinion = 0.25
    assert s.opinion[3] == 0.25
    s.step()
    assert p.opinion == s.opinion[3]  # never stale
    assert p.traits["age"] == pytest.approx(s.pop.observed[3, 0])
    assert set(p.state) == {"opinion"} and set(p.latent) >= {"stubbornness"}
    assert sorted(f.index for f in p.friend_people()) == sorted(p.friends.tolist())
    group = s.people([1, 2, 3])
    assert len(group) == 3 and p in group
    p.remove()
    assert s.person(3) is not p
    with pytest.raises(IndexError, match="out of range"):
        s.person(10_000)


def test_params_are_validated() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        OpinionParams(confidence=0.2)
    with pytest.raises(ValidationError):
        OpinionParams(eps=0.0)
    s = society()
    with pytest.raises(KeyError, match="shocks can change: intercept, coef.age"):
        s.get("push")


def test_registry() -> None:
    assert set(FAMILIES) == {"opinion", "contagion", "coevolving", "epidemic"}
    assert society_class("opinion") is OpinionSociety
    assert society_class("simlab.society.families.opinion:OpinionSociety") is OpinionSociety
    with pytest.raises(ValueError, match="unknown society family 'voter'; use one of opinion"):
        society_class("voter")
    with pytest.raises(ValueError, match="is not a Society subclass"):
        society_class("simlab.society.families.opinion:OpinionParams")
    with pytest.raises(ValueError, match="cannot import"):
        society_class("simlab.society.nope:Thing")
    assert issubclass(society_class("opinion"), Society)
