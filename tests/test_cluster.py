"""Big sweeps: each (scenario, seed) stream generated once and shared by its cells, also on a
Dask scheduler + worker running as separate processes."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simlab.experiment.config import Scenario
from simlab.experiment.store import Store
from simlab.experiment.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny_shared",
    "dynamics": {"family": "opinion"},
    "graph": {"kind": "planted_partition", "n_groups": 3, "group_size": 30, "mean_degree": 5},
    "survey": {"waves": 4, "every": 1, "support": 4, "query": 6},
    "burn_in": 2,
    "evaluation": {"warmup": 2, "shots": [2], "steps": [0, 1], "seeds": 2,
                   "learners": ["scratch", "oracle"], "budget": {"iterations": 2,
                                                                 "meta_batch": 2}},
}


def test_each_stream_is_generated_once_for_all_its_cells(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMLAB_CACHE", str(tmp_path / "cache"))
    calls: list[int] = []
    real = Scenario.generate_stream

    def counting(self, seed):
        calls.append(seed)
        return real(self, seed)

    monkeypatch.setattr(Scenario, "generate_stream", counting)
    scenario = Scenario.from_dict(TINY)
    summary = run_sweep(scenario, learners=["scratch", "oracle", "partial_pooling"], seeds=2,
                        store=tmp_path / "a.db", executor="inline", quiet=True)
    assert summary.ok + summary.diverged == 6 and summary.failed == 0, summary
    assert sorted(calls) == [0, 1]               # 6 cells, 2 streams, each made once
    run_sweep(scenario, learners=["scratch"], seeds=2, store=tmp_path / "b.db",
              executor="inline", quiet=True)
    assert sorted(calls) == [0, 1]               # a new store, the same cached streams


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the Dask process did not start: {proc.args}")
        time.sleep(0.2)


@pytest.mark.slow
def test_a_sweep_on_a_dask_scheduler_and_worker_processes(tmp_path, monkeypatch):
    """A scheduler and a worker as separate processes (as on a cluster); the worker runs in
    another directory without SIMLAB_CACHE, and still reads the streams the sweep prepared
    (the parent passes its cache directory), so none is generated twice."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SIMLAB_CACHE", str(cache))
    file = tmp_path / "scheduler.json"
    elsewhere = tmp_path / "worker_cwd"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "SIMLAB_CACHE"}
    env |= {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", "0", "--no-dashboard", "--scheduler-file", str(file)],
        env=env, cwd=elsewhere, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        _wait_for(file, scheduler)
        worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(file),
             "--nworkers", "1", "--nthreads", "1", "--no-dashboard"],
            env=env, cwd=elsewhere, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import json

        from distributed import Client

        address = json.loads(file.read_text())["address"]
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
        summary = run_sweep(Scenario.from_dict(TINY), seeds=2, store=tmp_path / "dask.db",
                            executor="dask", scheduler=address, quiet=True)
        assert summary.cells == 4 and summary.failed == 0, summary
        with Store(tmp_path / "dask.db") as store:
            assert len(store.frames()["runs"]) == 4
        assert len(list(cache.rglob("*.npz"))) == 2         # one stream per seed
        assert not (elsewhere / ".cache").exists()          # the worker made none of its own
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
