"""The MAML family: exact meta-gradients against per-task autograd loops, Reptile's update,
ANIL's head-only inner loop, learning on sinusoids, targets, determinism and errors."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import simlab
from simlab.learners import Budget, TaskSpec
from simlab.learners.episodes import pad_tasks
from simlab.learners.maml import ANIL, FOMAML, MAML, MetaSGD, Reptile
from simlab.tasks.batch import TaskBatch
from simlab.tasks.reference import linear_gaussian_tasks, sinusoid_tasks

torch.set_num_threads(1)


# ----- an independent reference: plain autograd, one task at a time ------------------------
def _forward(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The MLP of nets.mlp written out by hand (Linear, ReLU, ..., Linear)."""
    n = len(p) // 2
    for i in range(n):
        x = F.linear(x, p[f"{2 * i}.weight"], p[f"{2 * i}.bias"])
        x = torch.relu(x) if i < n - 1 else x
    return x


def _loss(out: torch.Tensor, y: torch.Tensor, w: torch.Tensor, target: str) -> torch.Tensor:
    if target == "regression":
        per = (out[:, 0] - y) ** 2
    elif target == "binary":
        per = F.binary_cross_entropy_with_logits(out[:, 0], y, reduction="none")
    else:
        per = F.cross_entropy(out, y, reduction="none")
    return (per * w).sum() / w.sum()


def _loop_inner(theta, lrs, task, steps, first_order, keys, target):
    """Inner SGD steps on one task's (unpadded) support set with autograd."""
    xs, ys, ws = (torch.as_tensor(a) for a in (task.x_support, task.y_support, task.w_support))
    fast = dict(theta)
    for _ in range(steps):
        loss = _loss(_forward(fast, xs), ys, ws, target)
        gs = torch.autograd.grad(loss, [fast[k] for k in keys], create_graph=not first_order)
        fast = {**fast, **{k: fast[k] - lrs[k] * g for k, g in zip(keys, gs)}}
    return fast


def _loop_meta_gradient(learner, tasks, first_order):
    """Mean query loss over tasks after the inner loop, differentiated with autograd."""
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in learner.params.items()}
    alpha = ({k: v.detach().clone().requires_grad_(True) for k, v in learner.alpha.items()}
             if isinstance(learner, MetaSGD) else None)
    lrs = alpha if alpha is not None else {k: learner.inner_lr for k in theta}
    keys = learner._inner_keys()
    total = 0.0
    for t in tasks:
        fast = _loop_inner(theta, lrs, t, learner.inner_steps, first_order, keys,
                           learner.spec.target)
        xq, yq = torch.as_tensor(t.x_query), torch.as_tensor(t.y_query)
        total = total + _loss(_forward(fast, xq), yq, torch.ones(len(yq)),
                              learner.spec.target) / len(tasks)
    leaves = list(theta.values()) + (list(alpha.values()) if alpha else [])
    grads = torch.autograd.grad(total, leaves)
    out = {"theta": dict(zip(theta, grads[:len(theta)]))}
    if alpha:
        out["alpha"] = dict(zip(alpha, grads[len(theta):]))
    return total.detach(), out


def _mixed_tasks(target: str, seed: int = 0) -> list:
    """Tasks of different K and Q and non-uniform support weights (padding is exercised)."""
    rng = np.random.default_rng(seed)
    if target == "regression":
        base = sinusoid_tasks(6, 8, 9, rng)
    else:
        base = linear_gaussian_tasks(6, 8, 9, rng, n_features=3,
                                     n_classes=3 if target == "multiclass" else 2)
    tasks = []
    for i, t in enumerate(base):
        t = t.with_shots(8 - i % 3)
        w = rng.uniform(0.2, 2.0, t.shots).astype(np.float32)
        q = 9 - i % 4
        tasks.append(replace(t, w_support=w, x_query=t.x_query[:q], y_query=t.y_query[:q],
                             oracle_query=t.oracle_query[:q]))
    return tasks


def _with_w(t):
    return t if t.w_support is not None else replace(t, w_support=np.ones(t.shots, np.float32))


def _rel_err(a: dict, b: dict) -> float:
    num = sum(float((a[g][k] - b[g][k]).pow(2).sum()) for g in a for k in a[g])
    den = sum(float(b[g][k].pow(2).sum()) for g in b for k in b[g])
    return math.sqrt(num / den)


@pytest.mark.parametrize("cls, kwargs, target", [
    (MAML, {}, "regression"),
    (MAML, {"inner_steps": 2}, "binary"),
    (MAML, {"inner_steps": 2}, "multiclass"),
    (FOMAML, {"inner_steps": 2}, "regression"),
    (MetaSGD, {"inner_steps": 2, "alpha_range": (0.005, 0.1)}, "regression"),
    (MetaSGD, {}, "binary"),
    (ANIL, {"inner_steps": 2}, "regression"),
])
def test_batched_meta_gradient_equals_per_task_autograd_loop(cls, kwargs, target) -> None:
    tasks = _mixed_tasks(target)
    learner = cls(hidden=(16, 16), inner_lr=0.05, **kwargs)
    learner.setup(TaskSpec.of(tasks[0]), seed=1)
    loss, grads = learner.meta_gradient(pad_tasks(tasks))
    ref_loss, ref = _loop_meta_gradient(learner, [_with_w(t) for t in tasks],
                                        learner.first_order)
    assert set(grads) == set(ref) and set(grads["theta"]) == set(ref["theta"])
    assert abs(float(loss) - float(ref_loss)) < 1e-5 * abs(float(ref_loss))
    assert _rel_err(grads, ref) < 1e-5
    # the first- and second-order gradients differ (the test can tell them apart)
    if cls is MAML:
        _, fo = _loop_meta_gradient(learner, [_with_w(t) for t in tasks], True)
        assert _rel_err(grads, fo) > 1e-3


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_reptile_update_equals_hand_loop(optimizer: str) -> None:
    tasks = _mixed_tasks("regression", seed=2)
    learner = Reptile(hidden=(16,), inner_lr=0.02, inner_steps=3, outer_lr=0.3,
                      inner_optimizer=optimizer)
    learner.setup(TaskSpec.of(tasks[0]), seed=3)
    theta = {k: v.detach().clone() for k, v in learner.params.items()}
    phis = []
    for t in map(_with_w, tasks):   # the hand loop: torch.optim on a copy per task
        phi = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
        opt = (torch.optim.SGD(phi.values(), lr=0.02) if optimizer == "sgd" else
               torch.optim.Adam(phi.values(), lr=0.02, betas=(0.0, 0.999), eps=1e-8))
        xs, ys, ws = (torch.as_tensor(a) for a in (t.x_support, t.y_support, t.w_support))
        for _ in range(3):
            opt.zero_grad()
            _loss(_forward(phi, xs), ys, ws.float(), "regression").backward()
            opt.step()
        phis.append({k: v.detach() for k, v in phi.items()})
    expect = {k: theta[k] + 0.3 * torch.stack([p[k] - theta[k] for p in phis]).mean(0)
              for k in theta}
    learner.meta_step(pad_tasks(tasks))
    for k in theta:
        torch.testing.assert_close(learner.params[k].detach(), expect[k], rtol=1e-5, atol=1e-6)
        assert not torch.equal(expect[k], theta[k])


def test_anil_inner_loop_changes_only_the_head() -> None:
    tasks = sinusoid_tasks(5, 10, 10, np.random.default_rng(0))
    learner = ANIL(hidden=(16, 16))
    learner.setup(TaskSpec.of(tasks[0]), seed=0)
    assert learner.head_keys == ("4.weight", "4.bias")
    adapted = learner.adapt(TaskBatch.from_tasks(tasks), steps=[0, 3])
    for k, theta in learner.params.items():
        after = adapted.params[k][1]                      # [B, *shape] after 3 steps
        same = torch.equal(after, theta.detach().expand_as(after))
        assert same == (k not in learner.head_keys), k
    before = {k: v.detach().clone() for k, v in learner.params.items()}
    learner.meta_step(TaskBatch.from_tasks(tasks))       # the outer loop updates the body too
    assert all(not torch.equal(before[k], learner.params[k]) for k in before)


def _sinusoid_mse(learner, n_iterations: int, seed: int = 0) -> list[float]:
    """Finn et al. (2017) setting; query MSE on 200 new tasks after 0, 1 and 10 steps."""
    train = sinusoid_tasks(25 * n_iterations, 10, 10, np.random.default_rng(100 + seed))
    test = TaskBatch.from_tasks(sinusoid_tasks(200, 10, 50, np.random.default_rng(999)))
    learner.setup(TaskSpec.of(train[0]), seed=seed)
    learner.meta_fit(train, Budget(iterations=n_iterations, meta_batch=25))
    pred = learner.adapt(test, [0, 1, 10]).predict(test)
    return ((pred - test.y_query) ** 2).mean((1, 2)).tolist()


def test_maml_learns_sinusoids_fast() -> None:
    """400 of the paper's 2,000 meta-iterations. Measured with this helper (torch 2.13 CPU),
    MSE after 0 / 1 / 10 steps: seed 0: 3.09 / 2.13 / 1.41; seeds 1-3: step 1 in 2.05-2.28,
    step 10 in 1.39-1.62. Before meta-training (100 iterations) 10 steps still give ~3.3."""
    mse0, mse1, mse10 = _sinusoid_mse(MAML(), 400)
    assert mse1 < 2.5 and mse10 < 1.8 and mse10 < mse1 < mse0


@pytest.mark.slow
def test_maml_sinusoid_paper_figures() -> None:
    """2,000 meta-iterations as in the paper: MSE after 1 step < 1.0 and after 10 < 0.6
    (measured on 500 test tasks x 100 points, seeds 0 / 1 / 2: 0.90 / 0.85 / 0.84 and
    0.42 / 0.41 / 0.41)."""
    _, mse1, mse10 = _sinusoid_mse(MAML(), 2000)
    assert mse1 < 1.0 and mse10 < 0.6


@pytest.mark.parametrize("n_classes", [2, 4])
def test_binary_and_multiclass_shapes_and_loss_decreases(n_classes: int) -> None:
    rng = np.random.default_rng(4)
    train = linear_gaussian_tasks(300, 10, 20, rng, n_features=3, n_classes=n_classes)
    test = TaskBatch.from_tasks(linear_gaussian_tasks(40, 10, 30, rng, n_features=3,
                                                      n_classes=n_classes))
    learner = MAML(hidden=(16,), inner_lr=0.3, inner_steps=2)
    learner.setup(TaskSpec.of(train[0]), seed=0)
    log = learner.meta_fit(train, Budget(iterations=60, meta_batch=10))
    assert log["iterations"] == 60 and log["skipped_nonfinite"] == 0
    pred = learner.adapt(test, [0, 1, 5]).predict(test)
    if n_classes == 2:
        assert pred.shape == (3, 40, 30) and ((pred > 0) & (pred < 1)).all()
        p1 = torch.stack([1 - pred, pred], -1)
    else:
        assert pred.shape == (3, 40, 30, 4)
        torch.testing.assert_close(pred.sum(-1), torch.ones(3, 40, 30))
        p1 = pred
    nll = -torch.log(p1.gather(-1, test.y_query.long()[None, ..., None].expand(3, -1, -1, 1))
                     ).mean((1, 2, 3))
    assert nll[2] < nll[1] < nll[0]


def test_zero_weight_support_equals_dropping_respondents() -> None:
    tasks = sinusoid_tasks(4, 10, 5, np.random.default_rng(1))
    learner = MAML(hidden=(8,))
    learner.setup(TaskSpec.of(tasks[0]), seed=0)
    w = np.r_[np.ones(6), np.zeros(4)].astype(np.float32)
    weighted = TaskBatch.from_tasks([replace(t, w_support=w) for t in tasks])
    short = TaskBatch.from_tasks([t.with_shots(6) for t in tasks])
    a = learner.adapt(weighted, [2]).predict(weighted)
    b = learner.adapt(short, [2]).predict(short)
    torch.testing.assert_close(a, b)
    c = learner.adapt(TaskBatch.from_tasks(tasks), [2]).predict(short)
    assert not torch.allclose(a, c)


def test_steps_order_and_zero_is_the_initialisation() -> None:
    tasks = sinusoid_tasks(3, 5, 6, np.random.default_rng(2))
    batch = TaskBatch.from_tasks(tasks)
    learner = MAML(hidden=(8,))
    learner.setup(TaskSpec.of(tasks[0]), seed=0)
    p = learner.adapt(batch, [3, 0, 1]).predict(batch)
    q = learner.adapt(batch, [0, 1, 3]).predict(batch)
    torch.testing.assert_close(p[[1, 2, 0]], q)
    theta = {k: v.detach() for k, v in learner.params.items()}
    expect = torch.stack([_forward(theta, x) for x in batch.x_query])[..., 0]
    torch.testing.assert_close(q[0], expect)


def test_determinism_and_online_meta_fit() -> None:
    tasks = sinusoid_tasks(60, 5, 5, np.random.default_rng(3))

    def fitted(seed: int, chunks: list[int]) -> dict[str, torch.Tensor]:
        learner = MAML(hidden=(8, 8))
        learner.setup(TaskSpec.of(tasks[0]), seed=seed)
        for n in chunks:
            learner.meta_fit(tasks, Budget(iterations=n, meta_batch=7))
        return {k: v.detach() for k, v in learner.params.items()}

    a, b, c = fitted(0, [20]), fitted(0, [20]), fitted(1, [20])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    online = fitted(0, [12, 8])   # optimiser state and the sampling stream carry over
    assert all(torch.equal(a[k], online[k]) for k in a)


def test_divergence_never_raises() -> None:
    tasks = sinusoid_tasks(20, 5, 5, np.random.default_rng(0))
    batch = TaskBatch.from_tasks(tasks)
    learner = MAML(hidden=(8,), inner_lr=1e30)
    learner.setup(TaskSpec.of(tasks[0]), seed=0)
    before = {k: v.detach().clone() for k, v in learner.params.items()}
    log = learner.meta_fit(tasks, Budget(iterations=3, meta_batch=5))
    assert log["skipped_nonfinite"] == 3 and math.isnan(log["meta_loss"])
    assert all(torch.equal(before[k], learner.params[k]) for k in before)
    pred = learner.adapt(batch, [0, 1, 2]).predict(batch)
    assert torch.isfinite(pred[0]).all() and not torch.isfinite(pred[1:]).all()


def test_budget_seconds_and_empty_tasks() -> None:
    tasks = sinusoid_tasks(10, 5, 5, np.random.default_rng(0))
    learner = Reptile(hidden=(8,))
    learner.setup(TaskSpec.of(tasks[0]), seed=0)
    log = learner.meta_fit(tasks, Budget(iterations=10**6, meta_batch=4, seconds=0.3))
    assert 0 < log["iterations"] < 10**6 and log["seconds"] < 5
    assert learner.meta_fit([], Budget(iterations=5))["iterations"] == 0


@pytest.mark.parametrize("make, field", [
    (lambda: MAML(inner_lr=-0.1), "inner_lr"),
    (lambda: MAML(outer_lr=float("nan")), "outer_lr"),
    (lambda: MAML(hidden=(40, 0)), "hidden"),
    (lambda: MAML(inner_steps=0), "inner_steps"),
    (lambda: MAML(first_order="yes"), "first_order"),
    (lambda: FOMAML(first_order=False), "first_order"),
    (lambda: MetaSGD(alpha_range=(0.1, 0.01)), "alpha_range"),
    (lambda: Reptile(outer_lr=2.0), "outer_lr"),
    (lambda: Reptile(inner_optimizer="rmsprop"), "inner_optimizer"),
])
def test_hyperparameter_errors_name_the_field(make, field: str) -> None:
    with pytest.raises(ValueError, match=f"hyperparameter {field}="):
        make().setup(TaskSpec("regression", 1))


def test_user_errors_in_use() -> None:
    tasks = sinusoid_tasks(3, 5, 5, np.random.default_rng(0))
    batch = TaskBatch.from_tasks(tasks)
    learner = MAML(hidden=(8,))
    with pytest.raises(ValueError, match="call setup"):
        learner.adapt(batch, [1])
    learner.setup(TaskSpec.of(tasks[0]))
    with pytest.raises(ValueError, match="steps"):
        learner.adapt(batch, [-1])
    with pytest.raises(ValueError, match="steps"):
        learner.adapt(batch, [])
    other = linear_gaussian_tasks(3, 5, 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="set up for target='regression'"):
        learner.meta_fit(other, Budget(iterations=1))
    with pytest.raises(ValueError, match="same tasks"):
        learner.adapt(batch, [1]).predict(TaskBatch.from_tasks(tasks[:2]))


def test_registry_names() -> None:
    learner = simlab.make_learner("maml", inner_lr=0.01)
    assert isinstance(learner, MAML) and learner.inner_lr == 0.01
    assert learner.hyperparameters()["inner_lr"] == 0.01
    for name, cls in [("fomaml", FOMAML), ("metasgd", MetaSGD), ("anil", ANIL),
                      ("reptile", Reptile)]:
        assert type(simlab.make_learner(name)) is cls
    with pytest.raises(ValueError, match="Valid hyperparameters"):
        simlab.make_learner("maml", inner_rate=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("cls", [MAML, Reptile])
def test_compiled_meta_step_matches_eager(cls) -> None:
    tasks = sinusoid_tasks(25, 10, 10, np.random.default_rng(0))
    batch = TaskBatch.from_tasks(tasks)
    eager, compiled = cls(), cls(compile=True)
    for learner in (eager, compiled):
        learner.setup(TaskSpec.of(tasks[0]), seed=0)
        for _ in range(3):
            learner.meta_step(batch)
    for k in eager.params:
        torch.testing.assert_close(compiled.params[k], eager.params[k], rtol=1e-4, atol=1e-6)
