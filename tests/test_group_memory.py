"""Group memory for the MAML family (learners/memory.py) and the group-blind Bayes optimum."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import simlab
from simlab.learners import Budget, TaskSpec, make_learner
from simlab.learners.base import LearnerError
from simlab.learners.memory import GroupMemory
from simlab.tasks.batch import TaskBatch
from simlab.tasks.reference import (
    drifting_bayes_predictions,
    drifting_regression_stream,
    group_blind_bayes_predictions,
)

torch.set_num_threads(1)


def stream(seed: int = 0, **kw):
    args = {"n_groups": 6, "n_waves": 6, "n_features": 2, "shots": 5, "query": 5}
    return drifting_regression_stream(np.random.default_rng(seed), **{**args, **kw})


def test_history_holds_only_earlier_waves_of_the_same_group_discounted_by_age():
    st = stream()
    mem = GroupMemory(waves=2, discount=0.5)
    for wave in st.waves[:4]:
        mem.remember(wave)
    x, _, w = mem.history(group=3, wave=3)           # waves 1 and 2 of group 3 (10 rows each)
    want_x = np.concatenate([np.r_[t.x_support, t.x_query] for t in
                             (st.waves[1][3], st.waves[2][3])])
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(w, np.r_[np.full(10, 0.25), np.full(10, 0.5)])
    assert mem.history(group=3, wave=0) is None         # nothing before the first wave
    latest = mem.history(group=3, wave=-1)               # unknown wave: the newest stored
    np.testing.assert_array_equal(latest[0][-10:], np.r_[st.waves[3][3].x_support,
                                                         st.waves[3][3].x_query])


def test_extend_appends_history_with_zero_weight_padding_and_keeps_the_rest():
    st = stream()
    mem = GroupMemory(waves=1)
    mem.remember(st.waves[0][:3])                        # groups 0-2 only
    batch = TaskBatch.from_tasks(st.waves[1])
    out = mem.extend(batch)
    assert out.x_support.shape == (6, 5 + 10, 2)
    torch.testing.assert_close(out.x_support[:, :5], batch.x_support)
    assert out.w_support[:3, 5:].eq(1).all() and out.w_support[3:, 5:].eq(0).all()
    assert out.x_query is batch.x_query and out.group is batch.group
    assert GroupMemory(waves=1).extend(batch) is batch   # empty memory: unchanged


def test_maml_with_memory_adapts_from_group_history_and_paper_version_is_unchanged():
    """memory=0 (the default) ignores history; memory>0 changes the adapted predictions, and
    a group never seen gets the plain support set."""
    st = stream(1)
    preds = {}
    for memory in (0, 2):
        m = make_learner("maml", hidden=(), memory=memory, inner_lr=0.3, inner_steps=3)
        m.setup(TaskSpec.of(st.waves[0][0]), seed=0)
        m.meta_fit(st.tasks(0, 3), Budget(iterations=5, meta_batch=4))
        b = TaskBatch.from_tasks(st.waves[3])
        preds[memory] = m.adapt(b, [3]).predict(b)[0]
    assert not torch.allclose(preds[0], preds[2])
    assert len(m.group_memory) == 6 * 3


def test_memory_helps_on_persistent_groups():
    """On a family whose group effects persist, MAML (GLM base) with the group's past waves
    beats the same learner without them after the warm-up (3 seeds, K=5)."""
    gaps = []
    for seed in range(3):
        st = stream(seed, n_groups=8, n_waves=6, sigma_u=1.0)
        loss = {}
        for memory in (0, 3):
            run = simlab.evaluate(make_learner("maml", hidden=(), memory=memory, inner_lr=0.3,
                                               inner_steps=5, outer_lr=0.01),
                                  st, warmup=3, shots=[5], steps=[5],
                                  budget=Budget(iterations=5, meta_batch=8),
                                  warmup_budget=Budget(iterations=60, meta_batch=8), seed=seed)
            r = run.records
            loss[memory] = r[(r.metric == "loss") & (r.steps == 5)].value.mean()
        gaps.append(loss[0] - loss[3])
    assert min(gaps) > 0, gaps


@pytest.mark.parametrize("field,value", [("memory", -1), ("memory", 1.5),
                                         ("memory_discount", 0.0), ("memory_discount", 2.0)])
def test_bad_memory_hyperparameters_name_the_field(field, value):
    m = make_learner("maml", **{field: value})
    with pytest.raises(LearnerError, match=field):
        m.setup(TaskSpec.of(stream().waves[0][0]))


def test_group_blind_bayes_equals_full_bayes_without_history_and_is_worse_after():
    """At wave 0 there is no group history, so both optima coincide; later the optimum that
    tracks each group's effect has the lower error (pooled over 4 seeds)."""
    gap = []
    for seed in range(4):
        st = stream(seed, n_waves=5, sigma_u=1.0)
        full, blind = drifting_bayes_predictions(st, 5), group_blind_bayes_predictions(st, 5)
        np.testing.assert_allclose(full[0], blind[0], rtol=1e-6, atol=1e-6)
        y = [np.stack([t.y_query for t in w]) for w in st.waves]
        err = [np.mean([((pred[w] - y[w]) ** 2).mean() for w in range(2, 5)])
               for pred in (blind, full)]
        gap.append(err[0] - err[1])
    assert np.mean(gap) > 0, gap


@pytest.mark.parametrize("name", ["meta_lstm", "protonet", "relation", "reptile", "anil",
                                  "partial_pooling", "scratch", "finetune"])
def test_every_task_level_learner_offers_the_same_memory(name):
    """The same option, in every meta-learner's tuning space, changes what adapt sees."""
    from simlab.learners import learner_class

    assert "memory" in learner_class(name).search_space
    st = drifting_regression_stream(np.random.default_rng(0), n_groups=4, n_waves=3,
                                    n_features=2, shots=5, query=5, target="binary")
    out = {}
    for memory in (0, 1):
        m = make_learner(name, memory=memory,
                         **({} if name == "partial_pooling" else {"hidden": (8,)}))
        m.setup(TaskSpec.of(st.waves[0][0]), seed=0)
        m.meta_fit(st.tasks(0, 2), Budget(iterations=2, meta_batch=4))
        b = TaskBatch.from_tasks(st.waves[2])
        out[memory] = m.adapt(b, [1]).predict(b)[0]
    assert out[0].shape == out[1].shape and not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("name", ["maml", "reptile", "meta_lstm", "protonet", "relation",
                                  "partial_pooling", "scratch", "finetune"])
def test_learners_with_memory_still_pass_the_conformance_check(name):
    """With history in the support sets the contract still holds: shapes, never reading a
    query label, same seed same result, repeated meta_fit."""
    from simlab.learners import learner_class
    from simlab.learners.conformance import check_learner

    out = check_learner(learner_class(name), {"memory": 2, **(
        {} if name == "partial_pooling" else {"hidden": (8,)})})
    assert set(out.values()) == {"ok"}, out


def test_a_weighted_likelihood_counts_history_by_its_discount():
    """normalise=True: the task's own support weights are rescaled to mean 1 and a remembered
    respondent of age a weighs discount**a, whatever the survey weights' scale."""
    from dataclasses import replace

    from simlab.learners.memory import SupportTransform

    st = stream()
    transform = SupportTransform(GroupMemory(waves=1, discount=0.5), normalise=True)
    transform.remember([replace(t, w_support=np.full(t.shots, 300.0, np.float32),
                                w_query=np.full(t.n_query, 300.0, np.float32))
                        for t in st.waves[0]])
    b = TaskBatch.from_tasks(st.waves[1])
    b = replace(b, w_support=b.w_support * 1000)
    out = transform.for_adapt(b)
    np.testing.assert_allclose(out.w_support[0, :5].numpy(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out.w_support[0, 5:].numpy(), 0.5, rtol=1e-6)


def test_partial_pooling_forgets_group_history_on_reset():
    st = stream()
    m = make_learner("partial_pooling", memory=2)
    m.setup(TaskSpec.of(st.waves[0][0]), seed=0)
    m.meta_fit(st.tasks(0, 2), Budget(iterations=1))
    assert len(m.group_memory) == 12
    m.reset_memory()                       # what cpd: calls after a detected change
    assert len(m.group_memory) == 0


def test_memory_keeps_every_warm_up_wave_its_episodes_need():
    """All warm-up waves arrive in one call: episodes cut from the first waves still get their
    M waves of history; a later call with the newest wave only prunes to it and the M before."""
    st = stream()
    mem = GroupMemory(waves=1)
    mem.remember([t for w in st.waves[:4] for t in w])
    for wave in (1, 2, 3):
        x, _, _ = mem.history(group=2, wave=wave)
        want = st.waves[wave - 1][2]
        np.testing.assert_array_equal(x, np.r_[want.x_support, want.x_query])
    mem.remember(st.waves[4])                          # incremental: waves 3 and 4 stay
    assert mem.history(group=2, wave=3) is None and mem.history(group=2, wave=5) is not None
    again = GroupMemory(waves=1)
    again.remember([t for w in st.waves[:5] for t in w])   # online: every revealed task
    assert all(again.history(group=2, wave=w) is not None for w in range(1, 6))


def test_memory_discount_is_tuned_with_memory():
    from simlab.learners.memory import MEMORY_SPACE
    assert set(MEMORY_SPACE) == {"memory", "memory_discount"}
    for name in ("maml", "protonet", "meta_lstm", "finetune", "scratch"):
        space = type(make_learner(name)).search_space
        assert ("memory" in space) == ("memory_discount" in space), name


class _Zeros(simlab.learners.base.Adapted):
    def __init__(self, steps):
        self.steps = tuple(steps)

    def predict(self, query):
        return torch.zeros(len(self.steps), query.size, query.x_query.shape[1])


def _plugin_class(places):
    """A plug-in learner that declares memory support and writes no memory call: it only
    records the support sets its episodes and ``adapt`` are given."""
    from dataclasses import dataclass
    from typing import ClassVar

    from simlab.learners.base import Learner
    from simlab.learners.episodes import EpisodeSampler, fit_loop
    from simlab.learners.memory import GroupMemoryOption

    @dataclass
    class Echo(GroupMemoryOption, Learner):
        name: ClassVar[str] = "echo"
        memory_in: ClassVar[frozenset[str]] = frozenset(places)

        def build(self):
            self.episodes, self.supports = [], []

        def meta_fit(self, tasks, budget):
            def step(batch):
                self.episodes.append(batch)
                return 0.0, True
            return fit_loop(step, EpisodeSampler.for_learner(self, tasks, budget), budget,
                            self.generator)

        def adapt(self, support, steps):
            self.supports.append(support)
            return _Zeros(steps)

    return Echo


@pytest.mark.parametrize("places", [("episodes", "adapt"), ("adapt",)])
def test_a_plugin_declaring_memory_gets_history_rows_without_calling_the_memory(places):
    st = stream()
    budget = Budget(iterations=4, meta_batch=12)
    m = _plugin_class(places)(memory=1, memory_discount=0.5)
    m.setup(TaskSpec.of(st.waves[0][0]), seed=0)
    m.meta_fit(st.tasks(0, 2), budget)                   # waves 0 and 1 of 6 groups
    b = TaskBatch.from_tasks(st.waves[2])
    m.adapt(b, [0])
    got = m.supports[-1]
    assert got.x_support.shape == (6, 5 + 10, 2)         # K own rows + wave 1's 10 rows
    for g in range(6):
        prev = st.waves[1][g]
        np.testing.assert_array_equal(got.x_support[g, 5:].numpy(),
                                      np.r_[prev.x_support, prev.x_query])
    np.testing.assert_allclose(got.w_support[:, 5:].numpy(), 0.5)
    torch.testing.assert_close(got.x_support[:, :5], b.x_support)
    m.adapt(support=b, steps=[0])                       # by keyword: the same support
    torch.testing.assert_close(m.supports[-1].w_support, got.w_support)
    # episodes cut from wave 1 get wave 0's 10 rows when declared; those from wave 0 none
    assert all(bool((e.wave == 1).any()) for e in m.episodes)     # every task in each batch
    for e in m.episodes:
        rows = e.w_support.gt(0).sum(-1)                          # own K < 10, + history
        if "episodes" in places:
            assert (rows[e.wave == 1] > 10).all() and (rows[e.wave == 0] < 10).all()
        else:
            assert (rows < 10).all()
    # memory = 0: the support set as given; validate() alone refuses a bad memory (tuning)
    plain = _plugin_class(places)()
    plain.setup(TaskSpec.of(st.waves[0][0]), seed=0)
    plain.meta_fit(st.tasks(0, 2), budget)
    plain.adapt(b, [0])
    assert plain.supports[-1].x_support.shape == b.x_support.shape
    with pytest.raises(LearnerError, match="memory"):
        _plugin_class(places)(memory=-1).validate()
