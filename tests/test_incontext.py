"""In-context learners: the Conditional Neural Process and the prior-fitted transformer."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from test_protocol import make_stream

from simlab.errors import LearnerError
from simlab.evaluation.tuning import tune
from simlab.learners import make_learner
from simlab.learners.base import Budget, Episodes, TaskSpec
from simlab.learners.cnp import CNP, encode_y, query_nll
from simlab.learners.conformance import check_learner
from simlab.learners.pfn import PFN, support_bias
from simlab.tasks.batch import TaskBatch
from simlab.tasks.reference import (drifting_regression_stream, group_blind_bayes_predictions,
                                    linear_gaussian_tasks)

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
#: (measured at these budgets and sizes: CNP 1.31, PFN 1.16)
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
    assert torch.equal(pred[0], pred[2]) and cls.steps_apply is False
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
               budget=Budget(2, 2), trials=2, seed=0)
    assert res.trials == 2 and len(res.trace) == 2
    assert all(t["state"] == "complete" for t in res.trace), res.trace
    tuned = set(res.best_params)
    assert tuned and tuned <= set(type(make_learner(name)).search_space) - {"memory"}
