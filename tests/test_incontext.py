"""In-context learners: the Conditional Neural Process and the prior-fitted transformer."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from simlab.errors import LearnerError
from simlab.evaluation.tuning import Search, tune
from simlab.learners import make_learner
from simlab.learners.base import Budget, Episodes, TaskSpec
from simlab.learners.cnp import CNP, encode_y, query_nll
from simlab.learners.conformance import check_learner
from simlab.learners.pfn import PFN, support_bias
from simlab.tasks.batch import TaskBatch
from simlab.tasks.reference import (drifting_regression_stream, group_blind_bayes_predictions,
                                    linear_gaussian_tasks)

from helpers.learners import make_stream

torch.set_num_threads(1)
LEARNERS = [CNP, PFN]
SMALL = {CNP: {"encoder_hidden": (16,), "r_dim": 8, "decoder_hidden": (16,)},
         PFN: {"d_model": 16, "layers": 1, "ff": 16, "head_hidden": (8,)}}


def made(cls: type, task, seed: int = 0, **kw):
    m = cls(**{**SMALL[cls], **kw})
    m.setup(TaskSpec.of(task), seed=seed)
    return m


def replaced(batch: TaskBatch, **kw) -> TaskBatch:
    return dataclasses.replace(batch, **kw)


# --- learning a family with a known Bayes predictor -------------------------------------------
#: how far above the Bayes-optimal query MSE each learner may end after its small budget
#: (measured at these budgets and sizes: CNP 1.31, PFN 1.21)
BAYES_FACTOR = 1.4
BUDGETS = {CNP: 600, PFN: 200}
SIZES = {CNP: {"encoder_hidden": (32, 32), "r_dim": 32, "decoder_hidden": (32, 32)}, PFN: {}}


@pytest.mark.parametrize("cls", LEARNERS)
def test_learns_the_linear_gaussian_family_near_the_bayes_predictor(cls: type) -> None:
    """Wave 0 of a static linear-Gaussian multilevel family (200 groups, ``q_b = q_u = 0``) is
    meta-trained on; wave 1 is predicted from K = 10 support respondents. The Bayes reference
    for a learner that does not know the groups is ``group_blind_bayes_predictions``; the
    prior predictor is the population regression (pooled OLS on wave 0, support ignored)."""
    st = drifting_regression_stream(np.random.default_rng(0), n_groups=200, n_waves=2,
                                    shots=10, query=20, n_features=2, q_b=0.0, q_u=0.0,
                                    sigma_u=1.0, noise=1.0)
    train, test = st.waves
    yq = np.stack([t.y_query for t in test])
    mse = lambda p: float(((p - yq) ** 2).mean())  # noqa: E731
    bayes = mse(group_blind_bayes_predictions(st, 10)[1])
    xy = [(np.c_[np.r_[t.x_support, t.x_query], np.ones(30)], np.r_[t.y_support, t.y_query])
          for t in train]
    b = np.linalg.lstsq(np.concatenate([a for a, _ in xy]), np.concatenate([y for _, y in xy]),
                        rcond=None)[0]
    prior = mse(np.stack([np.c_[t.x_query, np.ones(t.n_query)] @ b for t in test]))
    m = cls(meta_lr=5e-3, **SIZES[cls])
    m.setup(TaskSpec.of(train[0]), seed=0)
    m.meta_fit(train, Budget(iterations=BUDGETS[cls], meta_batch=32,
                             episodes=Episodes(shots=10)))
    batch = TaskBatch.from_tasks(test)
    got = mse(m.adapt(batch, [0]).predict(batch)[0].numpy())
    assert got < 0.6 * prior, (got, prior)
    assert got < BAYES_FACTOR * bayes, (got, bayes)


@pytest.mark.parametrize("cls", LEARNERS)
def test_binary_log_loss_closes_part_of_the_gap_to_the_oracle(cls: type) -> None:
    """Logistic linear-Gaussian tasks at K = 10: the log loss falls from the base-rate
    predictor's towards the true probabilities' by at least a quarter of the gap (measured at
    this budget: CNP 0.36, PFN 0.35 of it; K = 10 labels leave most of it irreducible)."""
    rng = np.random.default_rng(3)
    train = linear_gaussian_tasks(100, 10, 20, rng, n_features=3)
    test = linear_gaussian_tasks(50, 10, 20, rng, n_features=3)
    m = cls(meta_lr=3e-3)
    m.setup(TaskSpec.of(train[0]), seed=0)
    m.meta_fit(train, Budget(iterations=150, meta_batch=16, episodes=Episodes(shots=10)))
    batch = TaskBatch.from_tasks(test)
    y = batch.y_query

    def log_loss(p: torch.Tensor) -> float:
        p = p.clamp(1e-6, 1 - 1e-6)
        return float(-(y * p.log() + (1 - y) * (1 - p).log()).mean())

    got = log_loss(m.adapt(batch, [0]).predict(batch)[0])
    base = float(np.mean([t.y_support.mean() for t in train]))
    prior, oracle = log_loss(torch.full_like(y, base)), log_loss(batch.oracle_query)
    assert got < prior - 0.25 * (prior - oracle), (got, prior, oracle)


# --- padding, weights, the attention mask -----------------------------------------------------
@pytest.mark.parametrize("cls", LEARNERS)
@pytest.mark.parametrize("target", ["binary", "multiclass", "regression"])
def test_padding_and_weight_scale_do_not_change_real_predictions(cls: type, target: str) -> None:
    st = make_stream(target, waves=1, groups=3)
    m = made(cls, st.waves[0][0])
    batch = TaskBatch.from_tasks(st.waves[0])
    base = m.adapt(batch, [0]).predict(batch)[0]
    b, k, d = batch.x_support.shape
    pad = 4
    noise = torch.randn(b, pad, d, generator=torch.Generator().manual_seed(0)) * 5
    ypad = torch.ones(b, pad, dtype=batch.y_support.dtype)
    padded = replaced(batch, x_support=torch.cat((batch.x_support, noise), 1),
                      y_support=torch.cat((batch.y_support, ypad), 1),
                      w_support=torch.cat((3.0 * batch.w_support, torch.zeros(b, pad)), 1))
    qpad = replaced(batch, x_query=torch.cat((batch.x_query, noise), 1),
                    q_mask=torch.cat((batch.q_mask, torch.zeros(b, pad, dtype=torch.bool)), 1))
    got = m.adapt(padded, [0]).predict(qpad)[0]
    assert torch.allclose(got[:, :batch.x_query.shape[1]], base, atol=1e-5)
    w = batch.w_support.clone()
    w[:, 0] = 6.0                                      # an unequal weight does matter
    assert not torch.allclose(m.adapt(replaced(batch, w_support=w), [0]).predict(batch)[0],
                              base, atol=1e-4)


@pytest.mark.parametrize("cls", LEARNERS)
def test_queries_do_not_see_each_other_and_steps_do_not_apply(cls: type) -> None:
    st = make_stream("binary", waves=1, groups=3)
    m = made(cls, st.waves[0][0])
    batch = TaskBatch.from_tasks(st.waves[0])
    pred = m.adapt(batch, [0, 1, 5]).predict(batch)
    assert torch.equal(pred[0], pred[2]) and m.scored_steps() is None
    few = replaced(batch, x_query=batch.x_query[:, :3], q_mask=batch.q_mask[:, :3])
    assert torch.allclose(m.adapt(batch, [0]).predict(few)[0], pred[0, :, :3], atol=1e-6)


def test_support_bias_is_log_weight_and_safe_without_support() -> None:
    bias = support_bias(torch.tensor([[2.0, 0.0], [0.0, 0.0]]))
    assert bias[0, 0] == pytest.approx(math.log(2.0)) and bias[0, 1] == -math.inf
    assert torch.equal(bias[1], torch.zeros(2))


def test_cnp_regression_nll_is_the_gaussian_one_with_the_reference_sigma() -> None:
    out = torch.tensor([[[1.0, 0.0], [2.0, 0.5]]])            # [B=1, Q=2, (mean, raw sd)]
    batch = TaskBatch(torch.zeros(1, 1, 1), torch.zeros(1, 1), torch.ones(1, 1),
                      torch.zeros(1, 2, 1), torch.tensor([[0.0, 2.5]]), torch.tensor([[1.0, 3.0]]),
                      torch.tensor([[True, True]]), "regression", 2)
    spec = TaskSpec("regression", 1)
    sd = 0.1 + 0.9 * torch.nn.functional.softplus(out[0, :, 1])
    per = -torch.distributions.Normal(out[0, :, 0], sd).log_prob(torch.tensor([0.0, 2.5]))
    want = (per * torch.tensor([1.0, 3.0])).sum() / 4.0
    assert torch.allclose(query_nll(out, batch, spec, 0.1), want)
    assert encode_y(torch.tensor([[2]]), TaskSpec("multiclass", 1, 3)).tolist() == [[[0, 0, 1]]]


# --- contract, registry, tuner ----------------------------------------------------------------
@pytest.mark.parametrize("cls", LEARNERS)
def test_check_learner_passes(cls: type) -> None:
    assert set(check_learner(cls, SMALL[cls]).values()) == {"ok"}
    assert set(check_learner(cls, {**SMALL[cls], "memory": 2}, targets=("binary",)).values()
               ) == {"ok"}


def test_registry_and_bad_hyperparameters_name_the_field() -> None:
    assert isinstance(make_learner("cnp"), CNP) and isinstance(make_learner("pfn"), PFN)
    task = linear_gaussian_tasks(1, 2, 2, np.random.default_rng(0))[0]
    with pytest.raises(LearnerError, match="heads"):
        PFN(d_model=30, heads=4).setup(TaskSpec.of(task))
    with pytest.raises(LearnerError, match="r_dim"):
        CNP(r_dim=0).setup(TaskSpec.of(task))
    with pytest.raises(LearnerError, match="min_sigma"):
        CNP(min_sigma=-1.0).setup(TaskSpec.of(task))


@pytest.mark.parametrize("name", ["cnp", "pfn"])
def test_the_tuner_searches_their_spaces(name: str) -> None:
    stream = make_stream(waves=5)
    res = tune(name, {"memory": 0}, stream, warmup=3, shots=[4], steps=[0],
               budget=Budget(2, 2), seed=0,
               search=Search(trials=2, startup=1, folds=1, rungs=1, pruner="none"))
    assert res.trials == 2 and len(res.trace) == 2
    assert all(t["state"] == "complete" for t in res.trace), res.trace
    tuned = set(res.best_params)
    assert tuned and tuned <= set(type(make_learner(name)).search_space) - {"memory"}


# --- [evaluation.pretrain] --------------------------------------------------------------------
from simlab.errors import ScenarioError  # noqa: E402
from simlab.evaluation import pretrain  # noqa: E402
from simlab.evaluation.protocol import evaluate  # noqa: E402
from simlab.experiment.config import Scenario  # noqa: E402

PROTOCOL = {"warmup": 3, "shots": [4], "steps": [0], "budget": Budget(3, 2)}
PRE_BUDGET = Budget(5, 4)


def planned(stream, source, learners=None):
    return pretrain.attach(stream, pretrain.from_streams(
        [source], PRE_BUDGET, learners=learners, source={"scenario": "other seed"}))


def test_pretraining_runs_first_for_those_who_can_and_is_logged() -> None:
    stream = make_stream(waves=5, seed=0)
    plan = planned(stream, make_stream(waves=5, seed=1))
    pre = evaluate(CNP(**SMALL[CNP]), plan, **PROTOCOL)
    log = pre.log["pretrain"]
    assert log["applied"] and log["tasks"] == 15 and log["fit"]["iterations"] == 5
    assert log["budget"]["iterations"] == 5 and log["seconds"] > 0
    plain = evaluate(CNP(**SMALL[CNP]), stream, **PROTOCOL)
    assert "pretrain" not in plain.log
    loss = lambda r: r.records.query("metric == 'loss'")["value"].to_numpy()  # noqa: E731
    assert not np.allclose(loss(pre), loss(plain))                 # it changed the learner
    skipped = evaluate(make_learner("scratch"), plan, **PROTOCOL).log["pretrain"]
    assert skipped["applied"] is False and "shares nothing" in skipped["reason"]
    only = planned(stream, make_stream(waves=5, seed=1), learners=["finetune"])
    assert evaluate(CNP(**SMALL[CNP]), only, **PROTOCOL).log["pretrain"]["applied"] is False


def test_pretraining_on_the_same_family_helps_a_learner_with_little_warm_up() -> None:
    """Three groups and one warm-up wave are too few to meta-learn from; 300 simulated tasks
    of the same logistic family (other draws) give the prior. Frozen after the warm-up
    (``online=False``), so the comparison isolates what the pre-training taught."""
    from simlab.tasks.task import TaskStream

    def family(seed: int, waves: int, groups: int) -> TaskStream:
        rng = np.random.default_rng(seed)
        out = []
        for w in range(waves):
            tasks = linear_gaussian_tasks(groups, 10, 20, rng, n_features=3)
            for g, t in enumerate(tasks):
                t.info.update(group=g, wave=w)
            out.append(tasks)
        return TaskStream(out, [])

    stream = family(0, 4, 3)
    plan = pretrain.from_streams([family(1, 1, 300)], Budget(200, 16))
    kw = {"warmup": 1, "shots": [10], "steps": [0], "budget": Budget(10, 3), "online": False}
    loss = lambda r: r.records.query("metric == 'loss'")["value"].mean()  # noqa: E731
    plain = loss(evaluate(CNP(meta_lr=3e-3), stream, **kw))
    pre = loss(evaluate(CNP(meta_lr=3e-3), pretrain.attach(stream, plan), **kw))
    assert pre < plain - 0.01, (pre, plain)


def test_simulated_tasks_too_small_for_the_episodes_name_the_pretrain_table() -> None:
    stream = make_stream(waves=5, k=12)
    tiny = make_stream(waves=2, k=2, q=1, seed=1)              # 3 labelled respondents a task
    with pytest.raises(ScenarioError, match="evaluation.pretrain: .*K=4"):
        evaluate(CNP(**SMALL[CNP]), planned(stream, tiny), **PROTOCOL)


def test_pretraining_tasks_lose_their_group_ids() -> None:
    plan = pretrain.from_streams([make_stream(waves=2)], PRE_BUDGET)
    assert {t.group_id for t in plan.tasks} == {-1}
    assert all(t.oracle_query is None for t in plan.tasks)


def test_leak_a_scored_wave_in_the_pretraining_data_is_refused() -> None:
    stream = make_stream(waves=5, seed=0)
    with pytest.raises(ScenarioError, match="scored wave 3"):
        evaluate(CNP(**SMALL[CNP]), planned(stream, stream), **PROTOCOL)
    warm_only = dataclasses.replace(stream, waves=stream.waves[:3])   # the warm-up is not scored
    assert evaluate(CNP(**SMALL[CNP]), planned(stream, warm_only), **PROTOCOL
                    ).log["pretrain"]["applied"]


def test_a_source_of_another_kind_or_other_columns_is_refused() -> None:
    stream = make_stream(waves=5)
    with pytest.raises(ScenarioError, match="regression tasks.*binary"):
        evaluate(CNP(**SMALL[CNP]), planned(stream, make_stream("regression", waves=5)),
                 **PROTOCOL)
    named = dataclasses.replace(stream, meta={**stream.meta, "feature_names": ["a", "b", "c"]})
    other = make_stream(waves=5, seed=1)
    other.meta["feature_names"] = ["a", "b", "z"]
    with pytest.raises(ScenarioError, match=r"missing \['c'\]; extra \['z'\]"):
        evaluate(CNP(**SMALL[CNP]), planned(named, other), **PROTOCOL)
    by_count = pretrain.attach(named, pretrain.from_streams([other], PRE_BUDGET,
                                                            columns="count"))
    assert evaluate(CNP(**SMALL[CNP]), by_count, **PROTOCOL).log["pretrain"]["applied"]
    fewer = make_stream(waves=5, d=2, seed=1)
    with pytest.raises(ScenarioError, match="2 feature columns, the evaluated stream 3"):
        evaluate(CNP(**SMALL[CNP]), pretrain.attach(stream, pretrain.from_streams(
            [fewer], PRE_BUDGET, columns="count")), **PROTOCOL)


TINY_PRE = {
    "name": "tiny_pre", "dynamics": {"family": "opinion"},
    "graph": {"kind": "planted_partition", "n_groups": 3, "group_size": 30, "mean_degree": 6},
    "survey": {"waves": 4, "every": 2, "support": 6, "query": 8}, "burn_in": 2,
    "evaluation": {"warmup": 2, "shots": [3], "steps": [0], "seeds": 1,
                   "learners": ["scratch", "cnp"], "budget": {"iterations": 2, "meta_batch": 4},
                   "pretrain": {"seeds": [7], "budget": {"iterations": 3, "meta_batch": 4}}},
    "learners": {"cnp": SMALL[CNP]}}


@pytest.mark.parametrize("change,match", [
    ({"budget": {"iterations": 0}}, "evaluation.pretrain.budget"),
    ({"learners": ["scratch"]}, "'scratch', which cannot be pre-trained"),
    ({"learners": ["pfn"]}, "'pfn', which is not in evaluation.learners"),
    ({"seeds": [0]}, "includes evaluated seeds"),
])
def test_bad_pretrain_tables_name_the_field_and_the_fix(change: dict, match: str) -> None:
    data = {**TINY_PRE, "evaluation": {**TINY_PRE["evaluation"],
                                       "pretrain": {**TINY_PRE["evaluation"]["pretrain"],
                                                    **change}}}
    with pytest.raises(ScenarioError, match=match):
        Scenario.from_dict(data)


def test_a_sweep_pretrains_on_other_seeds_and_stores_it(tmp_path, monkeypatch) -> None:
    import json
    import sqlite3

    from pathlib import Path

    from simlab.experiment.sweep import run_sweep
    from simlab.report import report_from_store

    monkeypatch.setenv("SIMLAB_CACHE", str(tmp_path / "cache"))
    summary = run_sweep(Scenario.from_dict(TINY_PRE), store=tmp_path / "r.db",
                        executor="inline", quiet=True)
    assert summary.failed == 0, summary
    with sqlite3.connect(tmp_path / "r.db") as db:
        rows = db.execute("SELECT learner, json_extract(log, '$.pretrain') FROM runs").fetchall()
    logs = {learner: json.loads(entry) for learner, entry in rows}
    assert logs["cnp"]["applied"] and logs["cnp"]["source"]["seeds"] == [7]
    assert logs["scratch"]["applied"] is False
    files = report_from_store(tmp_path / "r.db", tmp_path / "report", figures=False)
    md = Path(files["md"]).read_text() if "md" in files else next(
        Path(f).read_text() for f in files.values() if str(f).endswith(".md"))
    assert "Pre-training on simulated societies" in md
    assert "| cnp | yes | tiny_pre (seeds 7) |" in md
    assert "| scratch | no |" in md and "shares nothing" in md
