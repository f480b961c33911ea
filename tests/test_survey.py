"""Survey waves: task shapes, sampling without replacement, non-response, oracle consistency."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from simlab.society.families.opinion import OpinionParams, OpinionSociety
from simlab.society.survey import SurveyDesign, feature_names, response_propensity, sample_wave

from helpers.society import planted_inputs

pytestmark = pytest.mark.society


def society(seed: int = 0, n_groups: int = 3, size: int = 300, **params) -> OpinionSociety:
    g, pop = planted_inputs(np.random.default_rng(seed), n_groups, size, 8.0, 0.8, 1.0)
    return OpinionSociety(g, pop, OpinionParams(**params), rng=seed)


def test_tasks_have_the_contract_shapes_and_info() -> None:
    s = society()
    s.step()
    design = SurveyDesign(support=8, query=30)
    tasks = sample_wave(s, design, wave=4, rng=np.random.default_rng(1))
    names = feature_names(s, design)
    assert names == s.pop.observed_names + ["n_friends", "share_friends_support"]
    assert len(tasks) == 3
    for g, t in enumerate(tasks):
        assert t.x_support.shape == (8, len(names)) and t.x_query.shape == (30, len(names))
        assert t.x_support.dtype == np.float32 and t.y_query.dtype == np.float32
        assert t.target == "binary" and t.oracle_query.shape == (30,)
        assert ((t.oracle_query > 0) & (t.oracle_query < 1)).all()
        assert t.info == {"wave": 4, "tick": 1, "group": g, "group_name": f"g{g}",
                          "family": "opinion"}


def respondent_rows(s: OpinionSociety, task, names: list[str]) -> np.ndarray:
    """Recover agent indices from exact trait rows (noise-free features)."""
    x = np.concatenate([task.x_support, task.x_query])[:, :len(s.pop.observed_names)]
    return np.array([np.flatnonzero((s.pop.observed == row).all(1))[0] for row in x])


def test_respondents_are_distinct_members_of_their_group_and_features_are_fixed() -> None:
    s = society(seed=2)
    design = SurveyDesign(support=10, query=40)
    names = feature_names(s, design)
    tasks = sample_wave(s, design, 0, np.random.default_rng(3))
    for g, t in enumerate(tasks):
        idx = respondent_rows(s, t, names)
        assert len(set(idx)) == 50
        assert (s.groups[idx] == g).all()
        x = np.concatenate([t.x_support, t.x_query])
        assert np.allclose(x[:, -2], np.log1p(s.social.degree[idx]))  # fixed transform


def test_reproducible_and_nested() -> None:
    s = society(seed=4)
    a = sample_wave(s, SurveyDesign(support=5, query=10), 0, np.random.default_rng(9))
    b = sample_wave(s, SurveyDesign(support=5, query=10), 0, np.random.default_rng(9))
    assert all(np.array_equal(x.x_support, y.x_support) and np.array_equal(x.y_query, y.y_query)
               for x, y in zip(a, b))
    assert a[0].with_shots(3).shots == 3


def test_oracle_matches_sampled_responses() -> None:
    s = society(seed=5, n_groups=2, size=2000)
    for _ in range(3):
        s.step()
    design = SurveyDesign(support=10, query=1500)
    ys, ps = [], []
    for k in range(4):
        for t in sample_wave(s, design, k, np.random.default_rng(k)):
            ys.append(t.y_query)
            ps.append(t.oracle_query)
    y, p = np.concatenate(ys), np.concatenate(ps)
    se = np.sqrt((p * (1 - p)).sum()) / len(p)
    assert abs(y.mean() - p.mean()) < 4 * se
    # and within bins of the oracle (calibration of the sampler)
    for lo, hi in ((0.0, 0.3), (0.3, 0.7), (0.7, 1.0)):
        m = (p >= lo) & (p < hi)
        if m.sum() > 200:
            se_bin = np.sqrt((p[m] * (1 - p[m])).sum()) / m.sum()
            assert abs(y[m].mean() - p[m].mean()) < 4 * se_bin


def test_continuous_response_oracle() -> None:
    s = society(seed=6, n_groups=1, size=3000, response="continuous", response_sd=1.0)
    t = sample_wave(s, SurveyDesign(support=10, query=2500), 0, np.random.default_rng(0))[0]
    assert t.target == "regression"
    resid = t.y_query - t.oracle_query
    assert abs(resid.mean()) < 4 / np.sqrt(2500) and resid.std() == pytest.approx(1.0, rel=0.08)


def test_nonresponse_biases_who_answers() -> None:
    s = society(seed=7, n_groups=1, size=3000)
    age = s.pop.column("age")
    mean_age = s.pop.observed[:, age].mean()
    random_sample = sample_wave(s, SurveyDesign(support=10, query=800), 0,
                                np.random.default_rng(1))[0]
    biased = sample_wave(s, SurveyDesign(support=10, query=800, nonresponse=1.5), 0,
                         np.random.default_rng(1))[0]
    assert abs(random_sample.x_query[:, age].mean() - mean_age) < 0.1
    assert biased.x_query[:, age].mean() > mean_age + 0.2  # the old answer more
    p = response_propensity(s, np.arange(s.n_agents), 3.0)
    assert 0.0 < p.min() < p.max() < 1.0


def test_too_few_respondents_is_one_clear_error() -> None:
    s = society(seed=8, size=60)
    with pytest.raises(ValueError, match="group 'g0' has 60 agents but the survey asks "
                                         "support=20 \\+ query=50 = 70"):
        sample_wave(s, SurveyDesign(support=20, query=50), 0, np.random.default_rng())
    with pytest.raises(ValueError, match="responded at survey.nonresponse=8.0"):
        sample_wave(s, SurveyDesign(support=20, query=35, nonresponse=8.0), 0,
                    np.random.default_rng())


def test_feature_selection_and_noise() -> None:
    s = society(seed=9)
    design = SurveyDesign(support=5, query=200, features=["female", "income", "n_friends"],
                          noise_sd=0.5)
    t = sample_wave(s, design, 0, np.random.default_rng(0))[0]
    assert t.x_query.shape == (200, 3)
    assert set(np.unique(t.x_query[:, 0])) <= {0.0, 1.0}  # misreported, still 0/1
    clean = sample_wave(s, design.model_copy(update={"noise_sd": 0.0}), 0,
                        np.random.default_rng(0))[0]
    assert not np.allclose(t.x_query[:, 1], clean.x_query[:, 1])
    # same respondents (noise is drawn after sampling): the error is N(0, 0.5^2) on the
    # continuous columns, and a 0/1 answer flips when the error crosses 0.5: P(Z > 1) = 0.159
    for col in (1, 2):
        err = t.x_query[:, col] - clean.x_query[:, col]
        assert abs(err.mean()) < 4 * 0.5 / np.sqrt(200) and err.std() == pytest.approx(0.5, rel=0.2)
    flipped = (t.x_query[:, 0] != clean.x_query[:, 0]).mean()
    assert flipped == pytest.approx(0.1587, abs=0.08)
    with pytest.raises(ValueError, match="unknown: \\['height'\\]"):
        sample_wave(s, SurveyDesign(features=["height"]), 0, np.random.default_rng())
    with pytest.raises(ValidationError, match="Extra inputs"):
        SurveyDesign(shots=5)


def test_wave_schedule() -> None:
    d = SurveyDesign(every=3, waves=4)
    assert d.n_ticks == 12 and [d.wave_tick(w) for w in range(4)] == [3, 6, 9, 12]
