"""``iter_evaluate`` yields each wave's records as it goes; ``evaluate`` is it run to the end,
with torch pinned to one thread and the numeric environment in the log."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from simlab.evaluation.protocol import WaveRecords, evaluate, iter_evaluate
from simlab.learners.registry import make_learner

from helpers.learners import BUDGET, make_stream


GRID = {"warmup": 2, "shots": [3, 6], "steps": [0, 2], "budget": BUDGET, "seed": 1}


def _timeless(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[~frame["metric"].str.contains("seconds")].reset_index(drop=True)


def test_iter_evaluate_yields_every_scored_wave_and_returns_evaluates_result():
    stream = make_stream(waves=5)
    waves = iter_evaluate(make_learner("scratch"), stream, **GRID)
    got: list[WaveRecords] = []
    while True:
        try:
            got.append(next(waves))
        except StopIteration as done:
            result = done.value
            break
    assert [w.wave for w in got] == [2, 3, 4] and all(w.status == "ok" for w in got)
    assert all(w.shots == (3, 6) for w in got)
    for w in got[1:]:                       # each slice holds only its own wave's rows
        assert set(w.records["wave"]) == {w.wave}
    assert set(got[0].records["wave"]) == {1, 2}   # the warm-up meta-fit comes first
    joined = pd.concat([w.records for w in got], ignore_index=True)
    pd.testing.assert_frame_equal(_timeless(joined), _timeless(result.records))
    again = evaluate(make_learner("scratch"), stream, **GRID)
    pd.testing.assert_frame_equal(_timeless(again.records), _timeless(result.records),
                                  check_exact=True)


def test_evaluate_pins_torch_threads_and_records_the_environment():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        waves = iter_evaluate(make_learner("scratch"), make_stream(waves=4), **GRID)
        for _ in waves:
            seen.append(torch.get_num_threads())
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2           # restored when it ended
        result = evaluate(make_learner("scratch"), make_stream(waves=4), **GRID, threads=None)
        assert torch.get_num_threads() == 2
        env = result.log["environment"]
        assert env["torch"] == torch.__version__ and env["torch_threads"] == 2
        assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert {"numpy", "numpy_blas", "torch_blas"} <= set(env)
        assert evaluate(make_learner("scratch"), make_stream(waves=4), **GRID
                        ).log["environment"]["torch_threads"] == 1
        with pytest.raises(ValueError, match="threads=0"):
            evaluate(make_learner("scratch"), make_stream(waves=4), **GRID, threads=0)
    finally:
        torch.set_num_threads(before)
