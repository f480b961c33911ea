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
#: of order 0.7; torch 2.13 CPU); the bound leaves room for other BLAS builds. The meta-LSTM
#: and ProtoNet cells are bit-identical.
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
