"""Resampled meta-training episodes, the sealing of query labels and oracle, compute records and
finite blow-ups (issue 8, items 1, 2, 4, 6)."""
from __future__ import annotations

import typing
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from simlab.evaluation.protocol import base_rate, evaluate
from simlab.experiment.config import EpisodeMode, ScenarioError, load_scenario
from simlab.learners import make_learner
from simlab.learners.base import EPISODE_MODES, Adapted, Budget, Episodes, Learner, TaskSpec
from simlab.learners.episodes import EpisodeSampler, pad_tasks
from simlab.learners.maml import MAML, Reptile
from simlab.learners.relation import ProtoNet
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task, TaskStream

torch.set_num_threads(1)
SMALL = {"hidden": (8,), "embed_dim": 4}


def tasks_of(n: int = 6, k: int = 8, q: int = 12, d: int = 3, seed: int = 0, wave: int = 0,
             oracle: bool = True, rate: float = 0.4) -> list[Task]:
    """Binary tasks whose respondents carry their row number in the last feature, so that
    every drawn row can be traced back to its task and position."""
    rng = np.random.default_rng(seed)
    out = []
    for g in range(n):
        m = k + q + g                                  # different sizes: padding is exercised
        x = rng.normal(size=(m, d)).astype(np.float32)
        x[:, -1] = np.arange(m) + 1000 * g
        y = (rng.random(m) < rate).astype(np.float32)
        out.append(Task(x[:k], y[:k], x[k:], y[k:], "binary",
                        oracle_query=np.full(m - k, rate, np.float32) if oracle else None,
                        info={"wave": wave, "group": g}))
    return out


def stream_of(waves: int = 5, **kw) -> TaskStream:
    return TaskStream([tasks_of(seed=w, wave=w, **kw) for w in range(waves)], [])


def row_ids(x: torch.Tensor, w: torch.Tensor) -> list[set[int]]:
    """Per task, the row ids (last feature) of the respondents with weight > 0."""
    return [set(x[b, w[b] > 0, -1].long().tolist()) for b in range(x.shape[0])]


# ------------------------------------------------------------------------------ the sampler

def test_each_draw_resplits_all_labelled_respondents_disjointly():
    tasks = tasks_of()
    sampler = EpisodeSampler(tasks, Episodes("grid", grid=(2, 5)))
    gen = torch.Generator().manual_seed(0)
    idx = torch.arange(len(tasks))
    seen_in_support: list[set[int]] = [set() for _ in tasks]
    for _ in range(20):
        b = sampler(idx, gen)
        sup, qry = row_ids(b.x_support, b.w_support), row_ids(b.x_query, b.q_mask.float())
        for t, (s, q) in enumerate(zip(sup, qry)):
            everyone = set(np.concatenate([tasks[t].x_support, tasks[t].x_query])[:, -1]
                           .astype(int).tolist())
            assert len(s) in (2, 5) and not s & q and s | q == everyone
            seen_in_support[t] |= s
        assert b.oracle_query is None
        assert b.group.tolist() == list(range(len(tasks))) and b.wave.tolist() == [0] * 6
    stream_support = [set(t.x_support[:, -1].astype(int).tolist()) for t in tasks]
    assert all(s - fixed for s, fixed in zip(seen_in_support, stream_support))  # query rows too


def test_stream_mode_is_the_fixed_split_and_whole_mode_is_every_respondent():
    tasks = tasks_of()
    gen = torch.Generator().manual_seed(0)
    idx = torch.tensor([4, 1])
    fixed = EpisodeSampler(tasks, Episodes("stream"))(idx, gen)
    ref = pad_tasks([tasks[4], tasks[1]])
    for f in ("x_support", "y_support", "w_support", "x_query", "y_query", "q_mask"):
        assert torch.equal(getattr(fixed, f), getattr(ref, f)), f
    whole = EpisodeSampler(tasks, Episodes(), whole=True)(idx, gen)
    assert whole.w_support.sum(-1).tolist() == [8 + 12 + 4, 8 + 12 + 1]
    assert torch.equal(whole.x_support, whole.x_query)


def test_fixed_k_query_cap_and_mixed_k_padding():
    tasks = tasks_of()
    gen = torch.Generator().manual_seed(1)
    b = EpisodeSampler(tasks, Episodes(3, query=4))(torch.arange(6), gen)
    assert b.shots == 3 and b.w_support.sum(-1).tolist() == [3.0] * 6
    assert b.q_mask.sum(-1).tolist() == [4] * 6
    mixed = EpisodeSampler(tasks, Episodes("grid", grid=(1, 7)))(torch.arange(6), gen)
    ks = mixed.w_support.sum(-1)
    assert set(ks.tolist()) <= {1.0, 7.0} and mixed.shots == int(ks.max())


def test_episodes_are_reproducible_with_the_same_seed():
    tasks = tasks_of()

    def draws(seed: int) -> list[TaskBatch]:
        sampler, gen = EpisodeSampler(tasks, Episodes("grid", grid=(2, 5))), \
            torch.Generator().manual_seed(seed)
        return [sampler(torch.randperm(6, generator=gen)[:4], gen) for _ in range(3)]

    a, b, c = draws(7), draws(7), draws(8)
    assert all(torch.equal(x.x_support, y.x_support) and torch.equal(x.y_query, y.y_query)
               for x, y in zip(a, b))
    assert not all(x.x_support.shape == y.x_support.shape and torch.equal(x.x_support, y.x_support)
                   for x, y in zip(a, c))

    def fitted(seed: int) -> torch.Tensor:
        m = MAML(hidden=(8,))
        m.setup(TaskSpec.of(tasks[0]), seed=seed)
        m.meta_fit(tasks, Budget(5, 3, episodes=Episodes("grid", grid=(2, 5))))
        return torch.cat([p.detach().flatten() for p in m.params.values()])

    assert torch.equal(fitted(3), fitted(3))


@pytest.mark.parametrize("name", ["protonet", "maml"])
def test_fixed_splits_and_resampled_episodes_train_different_learners(name):
    tasks = tasks_of()

    def fitted(episodes: Episodes) -> tuple[torch.Tensor, float]:
        m = make_learner(name, hidden=(8,), **({"embed_dim": 4} if name == "protonet" else {}))
        m.setup(TaskSpec.of(tasks[0]), seed=0)
        log = m.meta_fit(tasks, Budget(8, 4, episodes=episodes))
        return torch.cat([p.detach().flatten() for p in m.params.values()]), log["meta_loss"]

    (fixed, loss_f), (fresh, loss_r) = fitted(Episodes("stream")), fitted(Episodes("grid"))
    assert not torch.allclose(fixed, fresh) and loss_f != loss_r


def test_reptile_meta_trains_on_every_labelled_respondent():
    seen = []

    class Watch(Reptile):
        def _apply_step(self, tensors):
            seen.append(tensors[2].sum(-1))          # support weights per task
            return super()._apply_step(tensors)

    tasks = tasks_of()
    m = Watch(hidden=(8,))
    m.setup(TaskSpec.of(tasks[0]), seed=0)
    m.meta_fit(tasks, Budget(3, 6, episodes=Episodes(2)))     # K is ignored: whole tasks
    sizes = {t.shots + t.n_query for t in tasks}
    assert seen and all(set(s.tolist()) == {float(n) for n in sizes} for s in seen)


@pytest.mark.parametrize("make, match", [
    (lambda: EpisodeSampler(tasks_of(), Episodes(20)), r"episodes\.shots asks for K=20 .* "
                                                       r"only 20 labelled"),
    (lambda: EpisodeSampler(tasks_of(), Episodes("grid", grid=(5, 25))), "shots grid"),
    (lambda: Episodes("grd"), "episodes.shots = 'grd'"),
    (lambda: Episodes(0), "episodes.shots = 0"),
    (lambda: Episodes(query=0), "episodes.query = 0"),
    (lambda: EpisodeSampler([], Episodes()), "no tasks"),
    (lambda: Budget(seconds=-1.0), "budget.seconds"),
])
def test_bad_episode_input_raises_one_clear_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ------------------------------------------------------------------------------ the protocol

@dataclass
class Watched(ProtoNet):
    """ProtoNet that records what the protocol hands it."""

    hidden: tuple[int, ...] = (8,)
    embed_dim: int = 4

    def setup(self, spec, seed=0, device="cpu"):
        super().setup(spec, seed, device)
        self.fits: list[tuple[list[int], bool, Episodes]] = []
        self.adapts: list[TaskBatch] = []

    def meta_fit(self, tasks, budget):
        self.fits.append((sorted({t.info["wave"] for t in tasks}),
                          any(t.oracle_query is not None for t in tasks), budget.episodes))
        return super().meta_fit(tasks, budget)

    def adapt(self, support, steps):
        self.adapts.append(support)
        return super().adapt(support, steps)


def test_resampling_never_hands_a_query_label_to_adapt():
    stream = stream_of()
    m = Watched()
    evaluate(m, stream, warmup=2, shots=[2, 5], steps=[0], budget=Budget(4, 3))
    assert [f[0] for f in m.fits] == [[0, 1], [0, 1, 2], [0, 1, 2, 3]]   # revealed waves only
    assert not any(f[1] for f in m.fits)                           # no oracle either
    assert all(f[2] == Episodes("grid", grid=(2, 5)) for f in m.fits)
    for batch, (w, k) in zip(m.adapts, [(w, k) for w in (2, 3, 4) for k in (2, 5)]):
        assert torch.isnan(batch.y_query).all() and batch.oracle_query is None
        fixed = torch.as_tensor(np.stack([t.x_support[:k] for t in stream.waves[w]]))
        assert torch.equal(batch.x_support, fixed)                 # the stream's support only
        assert batch.wave.tolist() == [w] * 6 and batch.group.tolist() == list(range(6))


def test_only_the_oracle_sees_oracle_query_in_meta_fit():
    seen = []

    @dataclass
    class Peek(Learner):
        def build(self):
            pass

        def meta_fit(self, tasks, budget):
            seen.append((type(self).uses_oracle, all(t.oracle_query is not None for t in tasks)))
            return {}

        def adapt(self, support, steps):
            seen.append((type(self).uses_oracle, support.oracle_query is not None))
            return Const(steps, 0.5)

    @dataclass
    class OraclePeek(Peek):
        uses_oracle = True

    for cls in (Peek, OraclePeek):
        evaluate(cls(), stream_of(), warmup=2, shots=[2], steps=[0], budget=Budget(1))
    assert seen == [(False, False)] * 6 + [(True, True)] * 6     # 3 fits + 3 adapts each


def test_matched_episodes_train_one_model_per_scored_k():
    m = Watched()
    res = evaluate(m, stream_of(), warmup=2, shots=[2, 5], steps=[0], budget=Budget(2, 3),
                   episodes=Episodes("matched"))
    assert res.log["protocol"]["episodes"]["shots"] == "matched"
    assert [f[2].shots for f in m.fits] == [5] * 3                # the last setup: K=5
    assert sorted({e["episode_shots"] for e in res.log["meta_fit"]}) == [2, 5]
    rec = res.records
    assert sorted(rec[rec["metric"] == "loss"]["shots"].unique()) == [2, 5]
    fit = rec[rec["metric"] == "meta_fit_seconds"]
    assert fit["wave"].tolist() == [1, 2, 3]                       # summed over the two models
    assert fit["value"].sum() == pytest.approx(res.timings["meta_fit_s"])


def test_every_run_records_wall_and_cpu_seconds():
    res = evaluate(Watched(), stream_of(), warmup=2, shots=[2, 5], steps=[0, 1],
                   budget=Budget(2, 3))
    t = res.timings
    assert {"meta_fit_s", "adapt_s", "meta_fit_cpu_s", "adapt_cpu_s", "total_cpu_s"} <= set(t)
    assert t["meta_fit_cpu_s"] > 0 and t["adapt_cpu_s"] > 0
    rec = res.records
    for name, key in (("meta_fit_cpu_seconds", "meta_fit_cpu_s"),
                      ("adapt_cpu_seconds", "adapt_cpu_s")):
        assert rec[rec["metric"] == name]["value"].sum() == pytest.approx(t[key])
    assert res.summary["meta_fit_cpu_seconds_total"] == pytest.approx(t["meta_fit_cpu_s"])


@pytest.mark.parametrize("name", ["maml", "protonet", "finetune", "reptile"])
def test_budget_seconds_stops_every_outer_loop_alike(name):
    tasks = tasks_of()
    m = make_learner(name)
    m.setup(TaskSpec.of(tasks[0]), seed=0)
    log = m.meta_fit(tasks, Budget(iterations=10_000, meta_batch=2, seconds=0.05))
    assert 0 < log["iterations"] < 10_000 and log["seconds"] < 5.0


# ------------------------------------------------------------------------------ divergence

class Const(Adapted):
    def __init__(self, steps, p):
        self.steps, self.p = tuple(steps), p

    def predict(self, query):
        return torch.full((len(self.steps), query.size, query.x_query.shape[1]), self.p)


@dataclass
class Confident(Learner):
    """Predicts P(y=1) = ``p`` for everyone: p near 0 is a finite blow-up of log loss."""

    p: float = 1e-8

    def build(self):
        pass

    def meta_fit(self, tasks, budget):
        return {}

    def adapt(self, support, steps):
        return Const(steps, self.p)


def test_a_finite_blow_up_is_recorded_as_diverged():
    stream = stream_of(rate=0.7)      # P=1e-8 costs ~0.7 x 16 nats, base rate ~0.6 nats
    res = evaluate(Confident(), stream, warmup=2, shots=[5], steps=[0], budget=Budget(1))
    rec = res.records
    loss = rec[rec["metric"] == "loss"]["value"]
    assert np.isfinite(loss).all() and (loss > 5).all()             # finite, kept
    assert (rec[rec["metric"] == "diverged"]["value"] == 1).all()
    assert res.status == "diverged" and "blew up" in res.log["divergence"][0]["error"]
    off = evaluate(Confident(), stream, warmup=2, shots=[5], steps=[0], budget=Budget(1),
                   divergence_multiple=None)
    fair = evaluate(Confident(p=0.4), stream, warmup=2, shots=[5], steps=[0], budget=Budget(1))
    assert off.status == "ok" and fair.status == "ok"
    with pytest.raises(ValueError, match="divergence_multiple"):
        evaluate(Confident(), stream, warmup=2, shots=[5], steps=[0], budget=Budget(1),
                 divergence_multiple=0.5)


def test_base_rate_is_the_smoothed_support_share():
    t = tasks_of(n=1)[0]
    b = TaskBatch.from_tasks([t.with_shots(4)])
    p = base_rate(b)
    assert p.shape == (1, 1, t.n_query)
    assert p[0, 0, 0] == pytest.approx((t.y_support[:4].sum() + 1) / 6)


# ------------------------------------------------------------------------------ config

def test_config_episode_modes_match_the_learners_and_bad_values_fail():
    assert set(typing.get_args(EpisodeMode)) == set(EPISODE_MODES)
    sc = load_scenario("opinion_shift")
    assert sc.evaluation.episodes.shots == "grid"
    ok = sc.override({"evaluation": {"episodes": {"shots": 5, "query": 10},
                                     "budget": {"seconds": 2.0},
                                     "warmup_budget": {"iterations": 3, "seconds": 1.0}}})
    assert ok.evaluation.episodes.query == 10 and ok.evaluation.budget.seconds == 2.0
    too_many = sc.survey.support + sc.survey.query
    with pytest.raises(ScenarioError, match=rf"evaluation\.episodes\.shots = {too_many} is "
                                            r"larger than a task's labelled respondents"):
        sc.override({"evaluation": {"episodes": {"shots": too_many}}})
    with pytest.raises(ScenarioError, match="did you mean 'matched'"):
        sc.override({"evaluation": {"episodes": {"shots": "matchd"}}})
