"""``compile=True`` gives the same records as eager (issue 23): one tiny MAML cell run both
ways. torch.compile on CPU takes about a minute here (inductor builds C++ kernels), so the
test is slow-marked."""
from __future__ import annotations

import numpy as np
import pytest
from helpers.cost import SCENARIO

#: compiled kernels fuse and reorder float32 operations, so the records agree to rounding,
#: not bit for bit: the largest difference measured over this cell's 20 + 3 x 5 second-order
#: meta-steps is 3e-9 (losses of order 0.7; torch 2.13 CPU); the bound leaves room for other
#: compilers and BLAS builds.
TOLERANCE = 1e-6
METRICS = ("loss", "accuracy", "excess_loss")


def _records(compiled: bool) -> tuple[list[tuple], np.ndarray]:
    """Keys and values of a tiny second-order MAML cell. Fixed K and query size (and no
    group memory) keep every meta-batch one shape, so the compiled step compiles once."""
    from simlab.evaluation.protocol import evaluate
    from simlab.experiment.config import Scenario
    from simlab.learners.base import Budget, Episodes
    from simlab.learners.registry import make_learner

    stream = Scenario.from_dict(SCENARIO).stream(0)
    learner = make_learner("maml", hidden=(8,), inner_lr=0.05, inner_steps=2,
                           compile=compiled)
    ep = Episodes(shots=3, query=4)
    res = evaluate(learner, stream, warmup=2, shots=[3], steps=[0, 1, 2],
                   budget=Budget(5, 4), warmup_budget=Budget(20, 4),
                   online=False, seed=0, episodes=ep)
    rec = res.records[res.records["metric"].isin(METRICS)].sort_values(
        ["metric", "wave", "shots", "steps"])
    keys = [(r.metric, r.wave, r.shots, r.steps) for r in rec.itertuples()]
    return keys, rec["value"].to_numpy(dtype=float)


@pytest.mark.slow
def test_compiled_cell_records_equal_eager(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SIMLAB_CACHE", str(tmp_path / "cache"))
    keys, eager = _records(False)
    keys_c, compiled = _records(True)
    assert keys_c == keys and len(keys) > 20
    assert np.isfinite(compiled).all()
    assert np.max(np.abs(compiled - eager)) <= TOLERANCE
