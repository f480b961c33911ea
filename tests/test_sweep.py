"""Sweeps: same numbers with every executor, resume, failures recorded, sweep files."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pandas as pd
import pytest

from simlab.experiment.config import Scenario
from simlab.experiment.executors import DaskExecutor, InlineExecutor, make_executor
from simlab.experiment.store import Store
from simlab.experiment.sweep import (LearnerSpec, evaluate_kwargs, load_sweep, plan_cells,
                                    run_sweep)

from helpers.frames import stored_metrics
from helpers.learners import Broken
from helpers.scenarios import TINY, toml_text


def test_every_executor_gives_the_same_numbers(tiny, tmp_path):
    dbs = {}
    for name, executor in [("inline", "inline"), ("process", "process"),
                           ("dask", DaskExecutor(jobs=2, processes=False))]:
        dbs[name] = tmp_path / f"{name}.db"
        jobs = 1 if name == "process" else 2   # spawning workers costs seconds; dask: 2 threads
        summary = run_sweep(tiny, store=dbs[name], executor=executor, jobs=jobs, quiet=True)
        if not isinstance(executor, str):
            executor.close()
        assert (summary.cells, summary.ok + summary.diverged, summary.failed) == (4, 4, 0), summary
    ref = stored_metrics(dbs["inline"])
    assert len(ref) > 0 and set(ref["learner"]) == {"scratch", "maml"}
    for name in ("process", "dask"):
        pd.testing.assert_frame_equal(stored_metrics(dbs[name]), ref, check_exact=True)


def test_failing_cell_is_recorded_and_the_rest_complete(tiny, tmp_path):
    db = tmp_path / "r.db"
    s = run_sweep(tiny, ["scratch", Broken], [0, 1], db, executor="inline", quiet=True)
    assert (s.cells, s.ok + s.diverged, s.failed) == (4, 2, 2)
    assert all("broken on purpose" in reason for _, _, reason in s.failures)
    with Store(db) as store:
        runs = store.frames()["runs"]
        failed = runs[runs["status"] == "failed"]
        assert set(failed["learner"]) == {"broken"}
        assert "Traceback" in failed["error"].iloc[0]
        assert "ValueError: broken on purpose" in store.show(int(failed["run_id"].iloc[0]))
    again = run_sweep(tiny, ["scratch", Broken], [0, 1], db, executor="inline", quiet=True)
    assert (again.skipped, again.failed) == (2, 2)          # finished skipped, failed retried


def test_failing_stream_fails_only_its_cells(tiny, tmp_path, monkeypatch):
    real = Scenario.stream

    def flaky(self, seed, *args, **kwargs):
        if seed == 1:
            raise ValueError("too few respondents for K+Q")
        return real(self, seed, *args, **kwargs)

    monkeypatch.setattr(Scenario, "stream", flaky)
    s = run_sweep(tiny, ["scratch", "oracle"], [0, 1], tmp_path / "r.db", executor="inline",
                  quiet=True)
    assert (s.ok + s.diverged, s.failed) == (2, 2)
    assert {r for _, _, r in s.failures} == {
        "stream generation failed: ValueError: too few respondents for K+Q"}


class _KilledAfter(InlineExecutor):
    """Yields ``n`` results, then dies as a killed sweep would."""

    def __init__(self, n: int) -> None:
        self.n = n

    def map_unordered(self, fn, items) -> Iterator:
        for i, pair in enumerate(super().map_unordered(fn, items)):
            if fn.__name__ == "run_cell" and i == self.n:
                raise KeyboardInterrupt
            yield pair


def test_killed_sweep_resumes(tiny, tmp_path):
    db = tmp_path / "r.db"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tiny, store=db, executor=_KilledAfter(3), quiet=True)
    with Store(db) as store:
        assert len(store.done_keys()) == 3
    rest = run_sweep(tiny, store=db, executor="inline", quiet=True)
    assert (rest.skipped, rest.ok + rest.diverged) == (3, 1)
    run_sweep(tiny, store=tmp_path / "clean.db", executor="inline", quiet=True)
    pd.testing.assert_frame_equal(stored_metrics(db), stored_metrics(tmp_path / "clean.db"))


def test_unreachable_scheduler_fails_fast():
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        make_executor("dask", scheduler="tcp://127.0.0.1:9", timeout=1.0)
    assert time.perf_counter() - t0 < 10
    with pytest.raises(ValueError, match="needs the dask executor"):
        make_executor("inline", scheduler="tcp://127.0.0.1:9")
    with pytest.raises(ValueError, match="choose one of inline, process, dask"):
        make_executor("threads")


def test_plan_validates_before_running(tiny):
    with pytest.raises(ValueError, match="unknown learner 'mamll'.*Did you mean maml"):
        plan_cells([tiny], [LearnerSpec("mamll")], [0])
    with pytest.raises(ValueError, match="hidden"):
        plan_cells([tiny], [LearnerSpec("maml", {"hiden": [4]})], [0])
    jobs = plan_cells([tiny], None, [0, 1], grid={"maml": {"inner_lr": [0.01, 0.1]}})
    labels = sorted({j.cell.label for j in jobs})
    assert labels == ["maml[inner_lr=0.01]", "maml[inner_lr=0.1]", "scratch"]
    assert len(jobs) == 6 and len({j.cell.key for j in jobs}) == 6
    # adding a learner or a seed to the scenario's lists keeps the other cells' keys
    more = Scenario.from_dict({**TINY, "evaluation": {**TINY["evaluation"], "seeds": 3}})
    assert {j.cell.key for j in plan_cells([tiny], None, [0])} == \
        {j.cell.key for j in plan_cells([more], None, [0])}



def test_budgets_are_part_of_the_cell_key(tiny):
    """Changing the warm-up or the online budget re-runs the cells; both reach evaluate()."""
    ev = TINY["evaluation"]
    warm = Scenario.from_dict({**TINY, "evaluation": {
        **ev, "warmup_budget": {"iterations": 9, "meta_batch": 4}}})
    online = Scenario.from_dict({**TINY, "evaluation": {
        **ev, "budget": {"iterations": 4, "meta_batch": 4}}})
    keys = [{j.cell.key for j in plan_cells([sc], None, [0])} for sc in (tiny, warm, online)]
    assert not keys[0] & keys[1] and not keys[0] & keys[2] and not keys[1] & keys[2]
    kw = evaluate_kwargs(warm, 0, "cpu")
    assert (kw["warmup_budget"].iterations, kw["budget"].iterations) == (9, 3)
    assert evaluate_kwargs(tiny, 0, "cpu")["warmup_budget"] is None


def test_sweep_file(tiny, tmp_path):
    (tmp_path / "tiny.toml").write_text(toml_text(TINY))
    sweep = tmp_path / "sweep.toml"
    sweep.write_text('scenarios = ["tiny"]\nlearners = ["scratch", "maml"]\nseeds = [0]\n'
                     'db = "out.db"\n[hyperparameters.maml]\nhidden = [4]\n'
                     '[grid.maml]\ninner_lr = [0.01, 0.1]\n')
    plan = load_sweep(sweep)
    assert plan.scenarios[0].name == "tiny" and str(plan.db) == "out.db"
    jobs = plan_cells(plan.scenarios, plan.learners, plan.seeds, plan.grid)
    assert sorted(j.cell.label for j in jobs) == ["maml[inner_lr=0.01]", "maml[inner_lr=0.1]",
                                                  "scratch"]
    assert all(j.cell.hyperparameters["hidden"] == [4] for j in jobs if "maml" in j.cell.label)
    sweep.write_text('scenarios = ["tiny"]\nlearner = ["maml"]\n')
    with pytest.raises(ValueError, match="learner: Extra inputs are not permitted"):
        load_sweep(sweep)


def test_result_the_store_refuses_is_a_failed_cell(tiny, tmp_path):
    """A malformed result is recorded as a failed cell; the sweep and the store go on."""
    from simlab.evaluation.result import RunResult
    from simlab.experiment.sweep import Outcome, SweepSummary, _record

    job = plan_cells([tiny], [LearnerSpec("scratch")], [0])[0]
    bad = RunResult(records=pd.DataFrame({"wave": [2]}), summary={}, shifts=pd.DataFrame())
    summary = SweepSummary(tmp_path / "r.db")
    with Store(tmp_path / "r.db") as store:
        _record(store, job, Outcome(bad, "t0", "t1"), {job.cell.fingerprint: {}}, summary)
        runs = store.frames()["runs"]
    assert summary.failed == 1 and "RunResult.records lacks columns" in summary.failures[0][2]
    assert list(runs["status"]) == ["failed"]


def test_one_cell_gives_identical_records_twice_inline_in_a_worker_and_in_a_notebook(tiny):
    """The same cell run twice here, once in a process-pool worker, and once as a notebook
    would (``evaluate`` on the stream, torch left at two threads): identical records."""
    import torch

    from simlab.evaluation.protocol import evaluate
    from simlab.experiment.sweep import run_cell

    [job] = plan_cells([tiny], [LearnerSpec("maml")], [1], None)
    inline = InlineExecutor()
    first = [out.result for _, out in inline.map_unordered(run_cell, [job, job])]
    pool = make_executor("process", jobs=1)
    try:
        first += [out.result for _, out in pool.map_unordered(run_cell, [job])]
    finally:
        pool.close()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        from simlab.learners.registry import make_learner

        first.append(evaluate(make_learner("maml", hidden=[8]), tiny.stream(1),
                              **evaluate_kwargs(tiny, 1, "cpu")))
    finally:
        torch.set_num_threads(before)
    records = [r.records[~r.records["metric"].str.contains("seconds")].reset_index(drop=True)
               for r in first]
    assert len(records[0]) > 0
    for other in records[1:]:
        pd.testing.assert_frame_equal(other, records[0], check_exact=True)
    assert {r.log["environment"]["torch_threads"] for r in first} == {1}
