"""Cheaper cells, same numbers (issue 23): tiny demo-like cells against the records of the
code before the speed-ups, and the device check that runs before any cell."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from simlab.errors import LearnerError, SimlabError

from helpers.cost import CELLS, GOLDEN, run

#: The MAML family's batched inner loop (written-out backpropagation instead of vmapped
#: autograd) rounds differently, so its records agree to float32 rounding, not bit for bit:
#: over these cells' 20 + 3 x 5 meta-steps the largest difference measured is 2e-8 (losses
#: of order 0.7; torch 2.13 CPU); the bound leaves room for other BLAS builds. The meta-LSTM's
#: written-out learner gradient and fused gate backward round differently too (largest
#: difference measured 4e-9); the ProtoNet cell is bit-identical.
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN.read_text())


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SIMLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cost_cache"))


@pytest.mark.parametrize("learner", list(CELLS))
def test_records_equal_those_before_the_speed_ups(learner, golden) -> None:
    assert golden["cells"][learner] == CELLS[learner], "regenerate cost_golden.json"
    before, after = golden["records"][learner], run(learner)
    assert [r[:4] for r in after] == [r[:4] for r in before]
    old = np.array([r[4] for r in before])
    new = np.array([r[4] for r in after])
    assert np.isfinite(new).all() and len(new) > 20
    assert np.max(np.abs(new - old)) <= TOLERANCE, learner


def test_cuda_without_a_gpu_is_one_clear_error(monkeypatch) -> None:
    from simlab.experiment.sweep import plan_cells
    from simlab.learners.device import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(LearnerError, match=r"--device 'cuda': CUDA is not available.*--device "
                                           r"cpu"):
        check_device("cuda")
    assert check_device("cpu") == torch.device("cpu")
    for bad in ("tpu", "gpu!"):
        with pytest.raises(SimlabError, match="--device"):
            check_device(bad)
    ran = []
    monkeypatch.setattr("simlab.experiment.sweep.make_learner",
                        lambda *a, **k: ran.append(a))
    with pytest.raises(LearnerError, match="CUDA is not available"):
        plan_cells([], None, [0], device="cuda")
    assert not ran


def test_cli_refuses_cuda_before_any_cell(monkeypatch, tmp_path, capsys) -> None:
    from simlab.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    db = tmp_path / "r.db"
    code = main(["run", "opinion_shift", "--learners", "maml", "--seeds", "1", "--device",
                 "cuda", "--db", str(db)])
    err = capsys.readouterr().err
    assert code != 0 and "CUDA is not available" in err and len(err.strip().splitlines()) == 1
    assert not db.exists()


def _tasks(kind: str, n: int = 3, k: int = 7, q: int = 5, d: int = 3) -> list:
    from simlab.tasks.task import Task

    rng = np.random.default_rng(1)
    out = []
    for _ in range(n):
        x = rng.normal(size=(k + q, d)).astype(np.float32)
        s = x @ rng.normal(size=d)
        y = {"regression": s.astype(np.float32), "binary": (s > 0).astype(np.float32),
             "multiclass": np.digitize(s, [-0.5, 0.5]).astype(np.int64)}[kind]
        out.append(Task(x[:k], y[:k], x[k:], y[k:], kind,
                        n_classes=3 if kind == "multiclass" else 2))
    return out


@pytest.mark.parametrize("kind", ["regression", "binary", "multiclass"])
def test_meta_lstm_written_out_gradient_equals_autograd(kind: str) -> None:
    """The meta-LSTM's inner gradients (batched backpropagation written out) and losses equal
    autograd's on a batched forward, support weights (zero-weight padding) included."""
    from simlab.learners.base import TaskSpec
    from simlab.learners.losses import task_loss
    from simlab.learners.meta_lstm import MetaLSTM
    from simlab.tasks.batch import TaskBatch

    tasks = _tasks(kind)
    m = MetaLSTM(hidden=(6, 5), inner_steps=2, lstm_hidden=3)
    m.setup(TaskSpec.of(tasks[0]), seed=0)
    batch = TaskBatch.from_tasks(tasks)
    w = batch.w_support.clone()
    w[0, -2:] = 0.0                                               # padding rows
    theta = m.params["c0"].detach().expand(3, -1) + 0.3 * torch.randn(
        3, m.n_learner_params, generator=torch.Generator().manual_seed(0))
    grad, loss = m._loss_and_grad(theta, batch.x_support, batch.y_support, w)
    ref_theta = theta.clone().requires_grad_(True)
    ref = task_loss(m._batched_forward(ref_theta, batch.x_support), batch.y_support, kind, w)
    (ref_grad,) = torch.autograd.grad(ref.sum(), ref_theta)
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)
    assert grad.abs().sum() > 0


def test_meta_lstm_gates_backward_equals_autograd() -> None:
    """``Gates``' hand-written backward against autograd through ``gate`` (float64)."""
    from simlab.learners.meta_lstm import Gates

    g = torch.Generator().manual_seed(0)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_(True)

    args = (r(4, 9), r(9), torch.rand(9, generator=g, dtype=torch.float64).requires_grad_(True),
            torch.rand(9, generator=g, dtype=torch.float64).requires_grad_(True),
            r(6), r(), r(6), r())
    assert torch.autograd.gradcheck(Gates.apply, args)
