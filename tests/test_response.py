"""Response mechanisms: each changes the response the way its docstring says; bad input gives
one clear error; the GLM default is the families' own linear score."""
from __future__ import annotations

import numpy as np
import pytest

from simlab.experiment.config import ScenarioError, load_scenario
from simlab.society.families.opinion import OpinionParams, OpinionSociety
from simlab.society.response import (
    InteractionSpec,
    MixtureSpec,
    RotatingSpec,
    ThresholdSpec,
    response_spec,
)

from helpers.society import planted_inputs, run

pytestmark = pytest.mark.society


def society(response=None, seed: int = 0, groups: int = 4, size: int = 200) -> OpinionSociety:
    rng = np.random.default_rng(seed)
    graph, pop = planted_inputs(rng, groups, size, 10.0)
    return OpinionSociety(graph, pop, OpinionParams(), rng=np.random.default_rng(seed + 1),
                          response=response, response_rng=np.random.default_rng(seed + 2))


def test_glm_default_is_the_linear_score_bit_for_bit() -> None:
    s = society()
    idx = np.arange(s.n_agents)
    assert np.array_equal(s.trait_score(idx), s.linear_score(idx))
    other = society(response_spec({"kind": "glm"}))
    assert np.array_equal(s.oracle(idx), other.oracle(idx))


def test_threshold_score_jumps_exactly_where_exposure_meets_the_threshold() -> None:
    spec = ThresholdSpec(threshold=0.5, group_sd=0.0, personal_sd=0.0, jump=3.0, jump_sd=0.0,
                         linear=0.0)
    s = run(society(spec), 3)
    idx = np.arange(s.n_agents)
    exposure = s.ego_answers(idx)["share_friends_support"]
    step = s.trait_score(idx) - s.intercept[s.groups].astype(np.float64)
    met = exposure >= 0.5
    assert met.any() and (~met).any()
    assert np.allclose(step[met], 3.0) and np.allclose(step[~met], 0.0)
    # the true probability jumps at the threshold: just below vs at/above, same opinion term
    p = s.oracle(idx)
    logit = np.log(p / (1 - p)) - s.params.opinion_effect * s.opinion
    assert np.allclose(logit[met] - s.intercept[s.groups[met]], 3.0, atol=1e-5)


def test_threshold_differs_between_communities_and_persons() -> None:
    s = society(ThresholdSpec(threshold=0.4, group_sd=0.1, personal_sd=0.05))
    theta = s.response.thresholds(s, np.arange(s.n_agents))
    by_group = [theta[s.groups == g].mean() for g in range(4)]
    assert np.ptp(by_group) > 0.05                        # community thresholds differ
    assert theta[s.groups == 0].std() > 0.01              # and persons within one
    assert theta.min() >= 0.0 and theta.max() <= 1.0


def test_interaction_appears_with_a_shock_on_its_strength() -> None:
    s = society(InteractionSpec(n_pairs=1, strength=0.0, linear=1.0))
    idx = np.arange(s.n_agents)
    assert np.allclose(s.trait_score(idx), s.linear_score(idx))      # no interaction yet
    assert "response.strength" in s.parameter_names()
    s.set("response.strength", 2.0)
    diff = s.trait_score(idx) - s.linear_score(idx)
    x = s.pop.observed.astype(np.float64)
    g = s.groups
    (j, k) = s.response.pairs[g, 0].T
    want = 2.0 * s.response.weight[g, 0] * x[idx, j] * x[idx, k]
    assert np.allclose(diff, want)
    assert len({tuple(p) for p in s.response.pairs[:, 0]}) > 1       # pairs differ by group


def test_rotation_changes_which_traits_matter_between_waves() -> None:
    spec = RotatingSpec(n_relevant=2, start=3, period=2, strength=2.0, form="step")
    s = society(spec)
    before = s.response.relevance(s) > 0                  # [G, D]
    assert (before.sum(1) == 2).all()
    run(s, 3)                                             # tick 3: first rotation
    after = s.response.relevance(s) > 0
    assert (before & after).sum() == 0                    # 6 traits, 2 relevant: disjoint sets
    assert [e.name for _, e, _ in s.events] == ["relevance_rotation"]
    # measured on the responses: the score moves with a relevant trait, not an irrelevant one
    idx = np.arange(s.n_agents)
    g0 = np.flatnonzero(s.groups == 0)
    score = s.trait_score(idx)[g0]
    x = s.pop.observed[g0].astype(np.float64)
    corr = np.array([abs(np.corrcoef(x[:, j], score)[0, 1]) for j in range(x.shape[1])])
    assert corr[after[0]].min() > corr[~after[0]].max()


def test_mixture_assigns_whole_communities_to_components() -> None:
    spec = MixtureSpec(components=[
        ThresholdSpec(threshold=0.5, group_sd=0.0, personal_sd=0.0, jump=3.0, jump_sd=0.0,
                      linear=1.0),
        {"kind": "glm"}], shares=[0.5, 0.5])
    s = run(society(spec, groups=6), 2)
    comp = s.response.component
    assert sorted(np.bincount(comp).tolist()) == [3, 3]
    idx = np.arange(s.n_agents)
    diff = s.trait_score(idx) - s.linear_score(idx)
    linear_groups = np.isin(s.groups, np.flatnonzero(comp == 1))
    assert np.allclose(diff[linear_groups], 0.0)
    assert set(np.round(diff[~linear_groups], 6)) == {0.0, 3.0}


def test_saturation_caps_the_score() -> None:
    s = society(InteractionSpec(strength=5.0, saturation=1.5))
    score = s.trait_score(np.arange(s.n_agents))
    assert np.abs(score).max() <= 1.5 and np.abs(score).max() > 1.0


@pytest.mark.parametrize("table, match", [
    ({"kind": "threshhold"}, r"response.kind = 'threshhold' is unknown; did you mean 'thr"),
    ({"kind": "threshold", "threshold": 1.5}, r"response.threshold = 1.5: .*in \[0, 1\]"),
    ({"kind": "rotating", "n_relevant": 9}, r"response.n_relevant = 9 asks for more relevant"),
    ({"kind": "mixture", "components": [{"kind": "glm"}, {"kind": "glm"}], "shares": [1.0]},
     r"one non-negative share per component"),
])
def test_bad_response_tables_give_one_clear_error(table, match) -> None:
    base = load_scenario("opinion_shift")
    with pytest.raises(ScenarioError, match=match) as err:
        base.override({"response": table})
    assert "\n" not in str(err.value)
    if table["kind"] == "rotating":
        assert "than the population has (6: age, education" in str(err.value)
    if table["kind"] == "threshhold":
        with pytest.raises(ValueError, match="did you mean 'threshold'"):
            response_spec(table)


def test_response_is_part_of_the_stream_cache_key() -> None:
    base = load_scenario("opinion_shift")
    other = base.override({"response": {"kind": "threshold"}})
    assert base.stream_fingerprint() != other.stream_fingerprint()


MECHANISMS = [{"kind": "threshold", "threshold": 0.0, "jump": 3.0},
              {"kind": "interaction", "strength": 2.0},
              {"kind": "rotating", "start": 51, "period": 1},
              {"kind": "mixture", "components": [{"kind": "threshold", "threshold": 0.0},
                                                 {"kind": "glm"}]}]


@pytest.mark.parametrize("name", ["opinion_shift", "contagion_tipping", "epidemic_awareness",
                                  "coevolving_parties"])
def test_every_mechanism_works_for_every_family(name) -> None:
    from simlab.society.diagnostics.reporters import Reporters

    base = load_scenario(name)
    for table in MECHANISMS:
        sc = base.override({"response": table})
        s = sc.society(0)
        glm = base.society(0)
        for _ in range(3):
            s.step()
            glm.step()
        idx = np.arange(0, s.n_agents, 7)
        p = s.oracle(idx)
        assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
        if p.ndim == 2:
            assert np.allclose(p.sum(1), 1.0)
        assert not np.allclose(s.trait_score(idx), glm.trait_score(idx)), table["kind"]
    rep = Reporters(glm)
    rep.collect()
    table = rep.table()
    assert table["tick"] == [3.0] and len(table) >= 3
    assert all(np.isfinite(v[0]) for v in table.values())
