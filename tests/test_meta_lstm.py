"""Meta-learner LSTM (Ravi & Larochelle 2017): preprocessing, gates, init, SGD limit, training."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simlab.learners import make_learner
from simlab.learners.base import Budget, TaskSpec
from simlab.learners.losses import task_loss
from simlab.learners.meta_lstm import CoordinateLSTM, MetaLSTM, gate, preprocess
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task

torch.set_num_threads(1)


def linear_tasks(n: int, kind: str = "regression", k: int = 8, q: int = 12, d: int = 2,
                 seed: int = 0, n_classes: int = 3) -> list[Task]:
    """Tasks whose weights scatter around a shared centre, so a learned init helps."""
    rng = np.random.default_rng(seed)
    centre = np.array([2.0, -1.0, 0.5])[:d]
    out = []
    for _ in range(n):
        w = centre + 0.3 * rng.normal(size=d)
        x = rng.normal(size=(k + q, d)).astype(np.float32)
        s = x @ w
        if kind == "regression":
            y = (s + 0.1 * rng.normal(size=k + q)).astype(np.float32)
        elif kind == "binary":
            y = (s > 0).astype(np.float32)
        else:
            y = np.digitize(s, [-1.0, 1.0]).astype(np.int64)
        out.append(Task(x[:k], y[:k], x[k:], y[k:], kind,  # type: ignore[arg-type]
                        n_classes=n_classes if kind == "multiclass" else 2))
    return out


def small(**kw) -> MetaLSTM:
    return MetaLSTM(**{"hidden": (8,), "inner_steps": 3, "lstm_hidden": 4, **kw})


def test_preprocess_matches_hand_computed_values() -> None:
    x = torch.tensor([1.0, -0.01, 1e-5, 0.0, -2e-5, math.exp(-10)])
    got = preprocess(x, p=10.0)
    want = torch.tensor([[0.0, 1.0],
                         [math.log(0.01) / 10, -1.0],            # -0.4605...
                         [-1.0, math.exp(10) * 1e-5],            # 0.2203 (|x| < e^-10)
                         [-1.0, 0.0],
                         [-1.0, -math.exp(10) * 2e-5],
                         [-1.0, 1.0]])                           # |x| = e^-p: first branch
    assert torch.allclose(got, want, atol=1e-6)
    assert got[1, 0].item() == pytest.approx(-0.460517, abs=1e-6)


def test_gate_matches_hand_computed_value() -> None:
    w = torch.tensor([0.1, 0.2, 0.3, 0.4])                       # [x1, x2, theta, prev]
    x = torch.tensor([[0.5, -1.0]])
    z = 0.1 * 0.5 + 0.2 * -1.0 + 0.3 * 2.0 + 0.4 * 0.25 + 1.0    # = 1.55
    got = gate(w, torch.tensor(1.0), x, torch.tensor([2.0]), torch.tensor([0.25]))
    assert got.item() == pytest.approx(1 / (1 + math.exp(-z)), abs=1e-6)
    assert got.item() == pytest.approx(0.824914, abs=1e-5)


@pytest.mark.parametrize("zero_state", [False, True])
def test_coordinate_lstm_matches_lstm_cell_and_its_gradients(zero_state: bool) -> None:
    """The fused coordinates-last step equals ``nn.LSTMCell`` (value and every gradient but
    the constant input's); ``h = c = None`` is the zero state."""
    g = torch.Generator().manual_seed(0)
    n, hid = 7, 3
    cell = torch.nn.LSTMCell(4, hid).double()
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    h = torch.zeros(n, hid, dtype=torch.float64) if zero_state else torch.randn(
        n, hid, generator=g, dtype=torch.float64)
    c = torch.zeros_like(h) if zero_state else torch.randn(n, hid, generator=g,
                                                           dtype=torch.float64)
    h.requires_grad_(not zero_state)
    c.requires_grad_(not zero_state)
    with torch.no_grad():
        cell.bias_hh.zero_()                                 # one bias, as in the meta-LSTM
    w = [cell.weight_ih, cell.weight_hh, cell.bias_ih]
    mix = torch.randn(2, hid, n, generator=g, dtype=torch.float64)      # arbitrary upstream
    ref_h, ref_c = cell(x, (h, c))
    ours = CoordinateLSTM.apply(x.T.contiguous(), None if zero_state else h.T.contiguous(),
                                None if zero_state else c.T.contiguous(), *w)
    assert torch.allclose(ours[0], ref_h.T) and torch.allclose(ours[1], ref_c.T)
    inputs = [*w] + ([] if zero_state else [h, c])
    want = torch.autograd.grad((ref_h.T * mix[0]).sum() + (ref_c.T * mix[1]).sum(), inputs)
    ours = CoordinateLSTM.apply(x.T.contiguous(), None if zero_state else h.T,
                                None if zero_state else c.T, *w)
    got = torch.autograd.grad((ours[0] * mix[0]).sum() + (ours[1] * mix[1]).sum(), inputs)
    for a, b in zip(got, want):
        assert torch.allclose(a, b)


@pytest.mark.parametrize("kind", ["regression", "multiclass"])
def test_batched_forward_equals_vmap_of_functional_call(kind: str) -> None:
    tasks = linear_tasks(3, kind)
    m = MetaLSTM(hidden=(8, 5))
    m.setup(TaskSpec.of(tasks[0]), seed=0)
    batch = TaskBatch.from_tasks(tasks)
    flat = m.params["c0"].detach() + 0.1 * torch.randn(3, m.n_learner_params,
                                                         generator=torch.Generator().manual_seed(1))
    want = torch.vmap(m._forward)(flat, batch.x_query)
    assert torch.allclose(m._batched_forward(flat, batch.x_query), want, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gate_biases_start_in_their_ranges(seed: int) -> None:
    m = small()
    m.setup(TaskSpec("regression", 2), seed=seed)
    assert 4.0 <= m.params["b_f"].item() <= 6.0
    assert -5.0 <= m.params["b_i"].item() <= -4.0
    for k in ("w_f", "w_i", "w_ih", "w_hh", "b"):
        assert m.params[k].abs().max().item() <= 0.01
    m2 = small(forget_bias=(1.0, 1.5), input_bias=(-2.0, -1.0))
    m2.setup(TaskSpec("regression", 2), seed=seed)
    assert 1.0 <= m2.params["b_f"].item() <= 1.5
    assert -2.0 <= m2.params["b_i"].item() <= -1.0


def sgd_gates(m: MetaLSTM, lr: float) -> None:
    """Make f = 1 and i = lr exactly at every coordinate (gate weights zero)."""
    with torch.no_grad():
        m.params["w_f"].zero_()
        m.params["w_i"].zero_()
        m.params["b_f"].fill_(40.0)                  # sigmoid(40) == 1.0 in float32
        m.params["b_i"].fill_(math.log(lr / (1 - lr)))


@pytest.mark.parametrize("kind", ["regression", "binary", "multiclass"])
def test_forget_one_input_lr_equals_sgd(kind: str) -> None:
    tasks = linear_tasks(3, kind)
    m = small()
    m.setup(TaskSpec.of(tasks[0]), seed=0)
    lr = 0.1
    sgd_gates(m, lr)
    batch = TaskBatch.from_tasks(tasks)
    flat = m.adapt(batch, [0, 1, 2]).flat                          # [3, B, P]
    c0 = m.params["c0"].detach()
    for b in range(len(tasks)):                                    # per-task reference SGD
        theta = c0.clone()
        for step in (1, 2):
            theta = theta.requires_grad_(True)
            out = m._forward(theta, batch.x_support[b])
            loss = task_loss(out, batch.y_support[b], kind, batch.w_support[b])  # type: ignore
            (g,) = torch.autograd.grad(loss, theta)
            theta = (theta - lr * g).detach()
            assert torch.allclose(flat[step, b], theta, atol=1e-6)
        assert torch.equal(flat[0, b], c0)


def test_meta_gradient_ignores_second_derivatives() -> None:
    """With constant gates c_T = c_0 - lr * sum(detached grads), so dL/dc_0 = grad L(c_T)."""
    tasks = linear_tasks(2)
    m = small()
    m.setup(TaskSpec.of(tasks[0]), seed=0)
    sgd_gates(m, 0.05)
    batch = TaskBatch.from_tasks(tasks)
    m.episode_loss(batch).backward()
    c_t = m.unroll(batch, m.inner_steps, [m.inner_steps])[0].detach().requires_grad_(True)
    out = torch.vmap(m._forward)(c_t, batch.x_query)
    task_loss(out, batch.y_query, "regression", batch.w_query).mean().backward()
    want = c_t.grad.sum(0)                                          # c_0 is shared by tasks
    assert torch.allclose(m.params["c0"].grad, want, atol=1e-6)
    assert m.params["b_i"].grad.abs().item() > 0                    # the step size is learned


def reference_episode_loss(m: MetaLSTM, batch: TaskBatch) -> torch.Tensor:
    """The paper's equations task by task with plain autograd ops (no batching, no fused
    cell): the batched unroll must give the same meta-loss and meta-gradients."""
    q, total, hid = m.params, torch.zeros(()), m.lstm_hidden
    for b in range(batch.size):
        c = q["c0"]
        h = cell = torch.zeros(c.numel(), hid)
        f = i = torch.zeros_like(c)
        for _ in range(m.inner_steps):
            theta = c.detach().requires_grad_(True)
            loss = task_loss(m._forward(theta, batch.x_support[b]), batch.y_support[b],
                             m.spec.target, batch.w_support[b])
            (grad,) = torch.autograd.grad(loss, theta)
            x = torch.cat((preprocess(loss.detach(), m.p).expand(c.numel(), 2),
                           preprocess(grad, m.p)), 1)
            zi, zf, zg, zo = (x @ q["w_ih"].T + h @ q["w_hh"].T + q["b"]).split(hid, 1)
            cell = torch.sigmoid(zf) * cell + torch.sigmoid(zi) * torch.tanh(zg)
            h = torch.sigmoid(zo) * torch.tanh(cell)
            f = torch.sigmoid(torch.cat((h, c[:, None], f[:, None]), 1) @ q["w_f"] + q["b_f"])
            i = torch.sigmoid(torch.cat((h, c[:, None], i[:, None]), 1) @ q["w_i"] + q["b_i"])
            c = f * c - i * grad
        total = total + task_loss(m._forward(c, batch.x_query[b]), batch.y_query[b],
                                  m.spec.target, batch.w_query[b])
    return total / batch.size


@pytest.mark.parametrize("kind", ["regression", "binary"])
def test_batched_unroll_matches_per_task_reference(kind: str) -> None:
    tasks = linear_tasks(3, kind)
    m = small(init_scale=0.3, input_bias=(-2.0, -1.0))         # gates far from constant
    m.setup(TaskSpec.of(tasks[0]), seed=0)
    batch = TaskBatch.from_tasks(tasks)
    ours = m.episode_loss(batch)
    got = torch.autograd.grad(ours, list(m.params.values()))
    ref = reference_episode_loss(m, batch)
    want = torch.autograd.grad(ref, list(m.params.values()))
    assert torch.allclose(ours, ref, rtol=1e-5)
    for k, a, b in zip(m.params, got, want):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), k


@pytest.mark.parametrize("kind,tail", [("regression", ()), ("binary", ()), ("multiclass", (3,))])
def test_prediction_shapes_and_step_order(kind: str, tail: tuple[int, ...]) -> None:
    tasks = linear_tasks(4, kind)
    m = small()
    m.setup(TaskSpec.of(tasks[0]), seed=0)
    batch = TaskBatch.from_tasks(tasks)
    steps = [5, 0, 2]
    pred = m.adapt(batch, steps).predict(batch)
    assert pred.shape == (3, 4, 12, *tail)
    assert torch.isfinite(pred).all()
    again = m.adapt(batch, [0, 2, 5]).predict(batch)
    assert torch.allclose(pred[[1, 2, 0]], again)
    if kind == "multiclass":
        assert torch.allclose(pred.sum(-1), torch.ones(3, 4, 12), atol=1e-5)
    if kind == "binary":
        assert ((pred > 0) & (pred < 1)).all()


def test_meta_fit_improves_adapted_query_loss() -> None:
    tasks = linear_tasks(60, seed=1)
    test = TaskBatch.from_tasks(linear_tasks(20, seed=2))
    m = small(meta_lr=0.01)
    m.setup(TaskSpec.of(tasks[0]), seed=0)

    def query_mse() -> float:
        pred = m.adapt(test, [m.inner_steps]).predict(test)[0]
        return float(((pred - test.y_query) ** 2).mean())

    before = query_mse()
    log = m.meta_fit(tasks, Budget(iterations=60, meta_batch=10))
    after = query_mse()
    assert log["iterations"] == 60 and math.isfinite(log["meta_loss"])
    assert after < 0.5 * before, (before, after)


def test_same_seed_same_result_and_tasks_of_mixed_shots() -> None:
    tasks = linear_tasks(10) + linear_tasks(10, k=5, seed=3)
    batch = TaskBatch.from_tasks(tasks[:4])
    preds = []
    for _ in range(2):
        m = small()
        m.setup(TaskSpec.of(tasks[0]), seed=7)
        m.meta_fit(tasks, Budget(iterations=4, meta_batch=4))
        preds.append(m.adapt(batch, [0, 3]).predict(batch))
    assert torch.equal(preds[0], preds[1])
    other = small()
    other.setup(TaskSpec.of(tasks[0]), seed=8)
    assert not torch.equal(other.adapt(batch, [0]).predict(batch)[0], preds[0][0])


def test_without_first_lstm_and_from_registry() -> None:
    tasks = linear_tasks(4)
    m = make_learner("meta_lstm", hidden=[8], inner_steps=2, lstm_hidden=0)
    m.setup(TaskSpec.of(tasks[0]), seed=0)
    assert isinstance(m, MetaLSTM) and "w_ih" not in m.params
    assert m.params["w_f"].shape == (6,)
    m.meta_fit(tasks, Budget(iterations=2, meta_batch=2))
    batch = TaskBatch.from_tasks(tasks)
    assert m.adapt(batch, [0, 1]).predict(batch).shape == (2, 4, 12)


@pytest.mark.parametrize("field,value", [("hidden", (0,)), ("inner_steps", 0),
                                         ("lstm_hidden", -1), ("meta_lr", 0.0),
                                         ("grad_clip", 0.0), ("p", -1.0),
                                         ("forget_bias", (6.0, 4.0)), ("input_bias", (1.0,)),
                                         ("init_scale", -0.1)])
def test_bad_hyperparameters_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"{field}="):
        MetaLSTM(**{field: value}).setup(TaskSpec("regression", 2))


def test_user_errors_are_clear() -> None:
    tasks = linear_tasks(3)
    batch = TaskBatch.from_tasks(tasks)
    with pytest.raises(ValueError, match="setup"):
        small().adapt(batch, [1])
    m = small()
    m.setup(TaskSpec("regression", 3), seed=0)
    with pytest.raises(ValueError, match="n_features"):
        m.meta_fit(tasks, Budget(iterations=1))
    m.setup(TaskSpec.of(tasks[0]), seed=0)
    with pytest.raises(ValueError, match="steps"):
        m.adapt(batch, [-1])
    with pytest.raises(ValueError, match="no tasks"):
        m.meta_fit([], Budget(iterations=1))
    with pytest.raises(ValueError, match="same tasks"):
        m.adapt(batch, [1]).predict(TaskBatch.from_tasks(tasks[:2]))
