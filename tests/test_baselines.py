"""Baselines: shapes, that adapting helps, partial-pooling shrinkage, transfer, oracle, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from simlab.learners import Budget, TaskSpec, make_learner
from simlab.learners.baselines import Oracle, PartialPooling, PooledFineTune, Scratch
from simlab.learners.glm import GLM_DTYPE, design, encode, objective
from simlab.tasks.batch import TaskBatch
from simlab.tasks.reference import linear_gaussian_tasks
from simlab.tasks.task import Task

torch.set_num_threads(1)
TARGETS = ("binary", "multiclass", "regression")
FAST = Budget(iterations=5, meta_batch=4)


def hier_tasks(n: int, shots: int, query: int, target: str, seed: int, spread: float = 0.5,
               d: int = 3, classes: int = 3, noise: float = 0.5, family: int = 0) -> list[Task]:
    """Hierarchical GLM tasks: beta_t = mu + spread * z (mu fixed by ``family``)."""
    out = classes if target == "multiclass" else 1
    mu = np.random.default_rng(family).normal(0, 1, (d + 1, out))
    rng = np.random.default_rng(seed)
    beta = mu + spread * rng.standard_normal((n, d + 1, out))
    x = rng.standard_normal((n, shots + query, d)).astype(np.float32)
    eta = np.einsum("tnd,tdo->tno", x, beta[:, :d]) + beta[:, None, d]
    if target == "binary":
        mean = 1 / (1 + np.exp(-eta[..., 0]))
        y = (rng.uniform(size=mean.shape) < mean).astype(np.float32)
    elif target == "multiclass":
        z = np.exp(eta - eta.max(-1, keepdims=True))
        mean = z / z.sum(-1, keepdims=True)
        y = (mean.cumsum(-1) < rng.uniform(size=mean.shape[:2] + (1,))).sum(-1)
        y = np.minimum(y, classes - 1).astype(np.int64)
    else:
        mean = eta[..., 0]
        y = (mean + noise * rng.standard_normal(mean.shape)).astype(np.float32)
    mean = mean.astype(np.float32)
    return [Task(x[i, :shots], y[i, :shots], x[i, shots:], y[i, shots:], target,
                 n_classes=classes if target == "multiclass" else 2, oracle_query=mean[i, shots:],
                 info={"group": i, "beta": beta[i]}) for i in range(n)]


def query_loss(pred: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """Mean query loss per step count: log loss (binary, multiclass) or squared error."""
    y = batch.y_query
    if batch.target == "binary":
        p = pred.clamp(1e-7, 1 - 1e-7)
        per = -(y * p.log() + (1 - y) * (1 - p).log())
    elif batch.target == "multiclass":
        per = -pred.gather(-1, y.expand(pred.shape[0], *y.shape).unsqueeze(-1)).squeeze(-1) \
            .clamp_min(1e-7).log()
    else:
        per = (pred - y) ** 2
    return (per * batch.q_mask).sum((-2, -1)) / batch.q_mask.sum()


def ready(name: str, past: list[Task], budget: Budget = FAST, seed: int = 0, **hp):
    learner = make_learner(name, **hp)
    learner.setup(TaskSpec.of(past[0]), seed=seed)
    learner.meta_fit(past, budget)
    return learner


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name, hp", [("scratch", {}), ("scratch", {"model": "mlp"}),
                                      ("finetune", {}), ("finetune", {"model": "glm"}),
                                      ("partial_pooling", {}), ("oracle", {})])
def test_prediction_shapes(name: str, hp: dict, target: str) -> None:
    past = hier_tasks(6, 4, 5, target, seed=1)
    batch = TaskBatch.from_tasks(hier_tasks(3, 4, 5, target, seed=2))
    pred = ready(name, past, **hp).adapt(batch, [0, 1, 3]).predict(batch)
    want = (3, 3, 5, 3) if target == "multiclass" else (3, 3, 5)
    assert pred.shape == want and torch.isfinite(pred).all()
    if target == "binary":
        assert ((pred >= 0) & (pred <= 1)).all()
    if target == "multiclass":
        assert torch.allclose(pred.sum(-1), torch.ones(3, 3, 5), atol=1e-5)


@pytest.mark.parametrize("target", TARGETS)
def test_scratch_zero_steps_is_the_prior(target: str) -> None:
    batch = TaskBatch.from_tasks(hier_tasks(4, 5, 6, target, seed=3))
    pred = ready("scratch", hier_tasks(2, 5, 6, target, seed=1)).adapt(batch, [0]).predict(batch)
    prior = {"binary": 0.5, "multiclass": 1 / 3, "regression": 0.0}[target]
    assert torch.allclose(pred, torch.full_like(pred, prior))


@pytest.mark.parametrize("target", TARGETS)
def test_newton_reaches_the_map(target: str) -> None:
    """After enough damped Newton steps the MAP objective's autograd gradient vanishes."""
    batch = TaskBatch.from_tasks(hier_tasks(5, 12, 3, target, seed=4))
    learner = ready("scratch", hier_tasks(2, 12, 3, target, seed=1), l2=0.5, l2_intercept=0.2)
    coef = learner.adapt(batch, [15]).coef[0].clone().requires_grad_(True)
    obj = objective(coef, design(batch.x_support), encode(batch.y_support, target, 3),
                    batch.w_support.to(GLM_DTYPE), target, 1.0,
                    torch.zeros_like(learner.prec), learner.prec)
    (g,) = torch.autograd.grad(obj.sum(), coef)
    assert g.abs().max() < 1e-8


def test_damped_newton_converges_from_a_far_start() -> None:
    """Prior mean deep in the logistic's flat tail: undamped Newton overshoots to huge
    objectives there; the damped steps decrease monotonically to the MAP."""
    tasks = hier_tasks(6, 30, 1, "binary", seed=3, d=2)
    pp = ready("partial_pooling", tasks[:1], em_iterations=1)
    pp.beta0 = torch.tensor([[-8.0], [6.0], [5.0]], dtype=GLM_DTYPE)
    pp.tau2 = torch.full_like(pp.beta0, 1e4)
    batch = TaskBatch.from_tasks(tasks)
    coef = pp.adapt(batch, list(range(16))).coef
    args = (design(batch.x_support), encode(batch.y_support, "binary", 2),
            batch.w_support.to(GLM_DTYPE), "binary", 1.0, pp.beta0, 1 / pp.tau2)
    obj = objective(coef, *args)
    assert (obj[1:] <= obj[:-1] + 1e-9).all() and obj[-1].max() < 0.2 * obj[0].min()
    final = coef[-1].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(objective(final, *args).sum(), final)
    assert g.abs().max() < 1e-6


@pytest.mark.parametrize("name", ["scratch", "finetune", "partial_pooling"])
def test_adapting_beats_the_zero_step_prediction(name: str) -> None:
    past = hier_tasks(60, 20, 20, "regression", seed=1, spread=1.0)
    batch = TaskBatch.from_tasks(hier_tasks(40, 20, 30, "regression", seed=2, spread=1.0))
    loss = query_loss(ready(name, past, Budget(100, 8)).adapt(batch, [0, 10]).predict(batch),
                      batch)
    assert loss[1] < 0.8 * loss[0]


@pytest.mark.parametrize("name", ["scratch", "partial_pooling"])
def test_adapting_helps_binary(name: str) -> None:
    past = hier_tasks(60, 20, 20, "binary", seed=1, spread=1.0)
    batch = TaskBatch.from_tasks(hier_tasks(60, 20, 30, "binary", seed=2, spread=1.0))
    loss = query_loss(ready(name, past).adapt(batch, [0, 5]).predict(batch), batch)
    assert loss[1] < loss[0] - 0.02


def test_partial_pooling_regression_is_the_closed_form_posterior_mean() -> None:
    """Gaussian case: one Newton step is (X'X/s2 + T^-1)^-1 (X'y/s2 + T^-1 beta_0)."""
    learner = ready("partial_pooling", hier_tasks(40, 10, 10, "regression", seed=1))
    batch = TaskBatch.from_tasks(hier_tasks(3, 6, 2, "regression", seed=2))
    coef = learner.adapt(batch, [1]).coef[0, :, :, 0]
    x, y = design(batch.x_support), batch.y_support.to(GLM_DTYPE)
    prec = torch.diag(1 / learner.tau2[:, 0])
    a = x.mT @ x / learner.sigma2 + prec
    b = (x.mT @ y.unsqueeze(-1)).squeeze(-1) / learner.sigma2 + prec @ learner.beta0[:, 0]
    assert torch.allclose(coef, torch.linalg.solve(a, b), atol=1e-10)


def test_partial_pooling_recovers_variance_components() -> None:
    """EM on the linear mixed model: tau^2 ~ spread^2 and sigma^2 ~ noise^2."""
    past = hier_tasks(150, 30, 30, "regression", seed=5, spread=0.7, noise=0.5)
    learner = ready("partial_pooling", past)
    assert abs(float(learner.sigma2) - 0.25) < 0.02
    assert torch.allclose(learner.tau2, torch.full_like(learner.tau2, 0.49), rtol=0.35)
    truth = np.mean([t.info["beta"] for t in past], 0)
    assert np.abs(learner.beta0.numpy() - truth).max() < 0.05


def test_partial_pooling_shrinks_to_pool_at_small_k_and_to_task_at_large_k() -> None:
    past = hier_tasks(60, 30, 30, "binary", seed=1, spread=0.5)
    pp = ready("partial_pooling", past)
    own = ready("scratch", past, l2=1e-4, l2_intercept=1e-4)   # (nearly) the task's own fit

    def pull(k: int) -> float:
        """|beta_pp - beta_0| / (|beta_pp - beta_0| + |beta_pp - beta_task|): 0 pooled, 1 own."""
        batch = TaskBatch.from_tasks(hier_tasks(20, k, 1, "binary", seed=7, spread=0.5))
        b_pp = pp.adapt(batch, [15]).coef[0]
        b_own = own.adapt(batch, [15]).coef[0]
        to_pool = (b_pp - pp.beta0).flatten(1).norm(dim=1)
        to_own = (b_pp - b_own).flatten(1).norm(dim=1)
        return float((to_pool / (to_pool + to_own)).mean())

    small, large = pull(2), pull(1000)
    assert small < 0.2 and large > 0.9


def test_random_intercept_shrinkage_is_the_textbook_weight() -> None:
    """No features, Gaussian: alpha_t = alpha_0 + lambda (ybar_t - alpha_0) with
    lambda = K tau^2 / (K tau^2 + sigma^2) (Gelman & Hill 2007, eq. 12.1)."""
    pp = ready("partial_pooling", hier_tasks(200, 10, 10, "regression", seed=1, d=0,
                                             spread=0.3, noise=1.0))
    tau2, sigma2, alpha0 = float(pp.tau2[0, 0]), float(pp.sigma2), float(pp.beta0[0, 0])
    assert abs(tau2 - 0.09) < 0.04 and abs(sigma2 - 1.0) < 0.05
    weights = []
    for k in (1, 5, 3000):
        batch = TaskBatch.from_tasks(hier_tasks(4, k, 1, "regression", seed=7, d=0, spread=0.3,
                                                noise=1.0))
        alpha = pp.adapt(batch, [1]).coef[0, :, 0, 0]
        lam = k * tau2 / (k * tau2 + sigma2)
        ybar = batch.y_support.to(GLM_DTYPE).mean(1)
        assert torch.allclose(alpha, alpha0 + lam * (ybar - alpha0), atol=1e-10)
        weights.append(lam)
    assert weights[0] < 0.15 and weights[2] > 0.99


def test_partial_pooling_beats_scratch_at_k5_on_linear_gaussian_family() -> None:
    past = linear_gaussian_tasks(100, 20, 30, np.random.default_rng(1), spread=0.5)
    new = linear_gaussian_tasks(100, 5, 40, np.random.default_rng(2), spread=0.5)
    batch = TaskBatch.from_tasks(new)
    losses = {name: float(query_loss(ready(name, past).adapt(batch, [5]).predict(batch), batch)[0])
              for name in ("scratch", "partial_pooling", "oracle")}
    assert losses["partial_pooling"] < losses["scratch"] - 0.02
    assert losses["oracle"] < losses["partial_pooling"]


def test_pooled_finetune_beats_scratch_at_small_k_with_shared_structure() -> None:
    past = hier_tasks(80, 20, 20, "binary", seed=1, spread=0.3)
    batch = TaskBatch.from_tasks(hier_tasks(60, 3, 30, "binary", seed=2, spread=0.3))
    ft = ready("finetune", past, Budget(150, 8))
    scratch = ready("scratch", past)
    loss_ft = query_loss(ft.adapt(batch, [3]).predict(batch), batch)[0]
    loss_scratch = query_loss(scratch.adapt(batch, [3]).predict(batch), batch)[0]
    assert loss_ft < loss_scratch - 0.03


def test_pooled_finetune_continues_online() -> None:
    tasks = hier_tasks(20, 5, 5, "binary", seed=1)
    learner = ready("finetune", tasks[:10], Budget(3, 4))
    before = {k: v.detach().clone() for k, v in learner.params.items()}
    assert learner.meta_fit(tasks[10:], Budget(0, 4))["iterations"] == 0
    assert all(torch.equal(before[k], v) for k, v in learner.params.items())
    log = learner.meta_fit(tasks[10:], Budget(4, 4))
    assert log["iterations"] == 4 and np.isfinite(log["loss"])
    assert not all(torch.equal(before[k], v) for k, v in learner.params.items())


def test_finetune_head_only_keeps_the_body() -> None:
    past = hier_tasks(10, 5, 5, "binary", seed=1)
    learner = ready("finetune", past, finetune="head")
    adapted = learner.adapt(TaskBatch.from_tasks(hier_tasks(3, 5, 5, "binary", seed=2)), [0, 4])
    for k, v in adapted.params.items():
        assert torch.equal(v[0], v[1]) != k.startswith(learner._head)


def test_zero_weight_equals_dropping_the_respondent() -> None:
    tasks = hier_tasks(4, 6, 3, "binary", seed=3)
    pp = ready("partial_pooling", hier_tasks(30, 10, 10, "binary", seed=1))
    weighted = [Task(t.x_support, t.y_support, t.x_query, t.y_query, t.target,
                     w_support=np.array([3, 3, 3, 3, 3, 0], np.float32)) for t in tasks]
    a = pp.adapt(TaskBatch.from_tasks(weighted), [4]).coef
    b = pp.adapt(TaskBatch.from_tasks([t.with_shots(5) for t in tasks]), [4]).coef
    assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("target", ["binary", "multiclass"])
def test_oracle_returns_the_true_probabilities(target: str) -> None:
    tasks = hier_tasks(3, 4, 5, target, seed=2)
    batch = TaskBatch.from_tasks(tasks)
    pred = ready("oracle", tasks).adapt(batch, [0, 2]).predict(batch)
    assert torch.equal(pred[0], batch.oracle_query) and torch.equal(pred[1], batch.oracle_query)
    for i, t in enumerate(tasks):                         # the truth, from each task's beta
        beta = t.info["beta"]
        eta = t.x_query.astype(np.float64) @ beta[:-1] + beta[-1]
        z = np.exp(eta - eta.max(-1, keepdims=True))
        want = 1 / (1 + np.exp(-eta[:, 0])) if target == "binary" else z / z.sum(-1, keepdims=True)
        np.testing.assert_allclose(pred[0, i].numpy(), want, rtol=1e-5, atol=1e-6)


def test_oracle_without_simulated_truth_raises() -> None:
    t = hier_tasks(2, 4, 5, "binary", seed=2)
    real = TaskBatch.from_tasks([Task(x.x_support, x.y_support, x.x_query, x.y_query, "binary")
                                 for x in t])
    with pytest.raises(ValueError, match="simulated data"):
        ready("oracle", t).adapt(real, [0]).predict(real)


@pytest.mark.parametrize("name, hp", [("scratch", {"model": "mlp"}), ("finetune", {}),
                                      ("partial_pooling", {})])
def test_deterministic_given_seed(name: str, hp: dict) -> None:
    past = hier_tasks(12, 5, 5, "multiclass", seed=1)
    batch = TaskBatch.from_tasks(hier_tasks(4, 5, 5, "multiclass", seed=2))
    runs = [ready(name, past, seed=s, **hp).adapt(batch, [0, 2]).predict(batch) for s in (3, 3, 4)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2]) or name == "partial_pooling"


@pytest.mark.parametrize("name, hp, field", [
    ("scratch", {"model": "tree"}, "model"), ("scratch", {"l2": 0.0}, "l2"),
    ("scratch", {"lr": -1.0}, "lr"), ("scratch", {"hidden": (0,)}, "hidden"),
    ("scratch", {"optimizer": "rmsprop"}, "optimizer"),
    ("finetune", {"finetune_lr": 0.0}, "finetune_lr"), ("finetune", {"l2sp": -1.0}, "l2sp"),
    ("finetune", {"finetune": "body"}, "finetune"),
    ("partial_pooling", {"em_iterations": 0}, "em_iterations"),
    ("partial_pooling", {"tau2_min": 0.0}, "tau2_min"),
    ("partial_pooling", {"window": 0}, "window")])
def test_bad_hyperparameters_raise_one_clear_error(name: str, hp: dict, field: str) -> None:
    learner = make_learner(name, **hp)
    with pytest.raises(ValueError, match=f"{field}="):
        learner.setup(TaskSpec("binary", 3))


def test_bad_calls_raise_clear_errors() -> None:
    tasks = hier_tasks(3, 4, 5, "binary", seed=2)
    learner = ready("scratch", tasks)
    batch = TaskBatch.from_tasks(tasks)
    with pytest.raises(ValueError, match="steps"):
        learner.adapt(batch, [])
    with pytest.raises(ValueError, match="steps"):
        learner.adapt(batch, [-1])
    with pytest.raises(ValueError, match="set up for"):
        learner.adapt(TaskBatch.from_tasks(hier_tasks(2, 4, 5, "regression", seed=2)), [1])
    with pytest.raises(ValueError, match="setup"):
        make_learner("partial_pooling").meta_fit(tasks, FAST)
    with pytest.raises(ValueError, match="hyperparameter"):
        make_learner("finetune", bogus=1)


def test_registry_names() -> None:
    for name, cls in {"scratch": Scratch, "finetune": PooledFineTune,
                      "partial_pooling": PartialPooling, "oracle": Oracle}.items():
        learner = make_learner(name)
        assert type(learner) is cls and learner.name == name
    assert make_learner("partial_pooling", window=5).hyperparameters()["window"] == 5
