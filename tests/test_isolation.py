"""Cells are isolated: a cell that kills its worker is recorded as crashed, retried once, and
the rest of the sweep is stored; pool workers die with their parent."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from typing import ClassVar


from simlab.experiment.executors import ProcessExecutor, WorkerCrash
from simlab.experiment.store import Store
from simlab.experiment.sweep import LearnerSpec, run_sweep
from simlab.learners.baselines import Scratch

from helpers.crash import square_or_die


@dataclass
class ExitsOnSeedOne(Scratch):
    """Scratch, except that its worker process exits hard on seed 1 (a segfault, the OOM
    killer or a stray ``os._exit`` in user code look the same to the sweep)."""

    name: ClassVar[str] = "exits_on_seed_one"

    def meta_fit(self, tasks, budget):
        if self.generator.initial_seed() == 1:
            print("about to die", file=sys.stderr, flush=True)
            os._exit(3)
        return super().meta_fit(tasks, budget)


def test_a_dying_item_is_retried_then_reported_and_the_rest_finish():
    ex = ProcessExecutor(jobs=2, retries=1)
    try:
        out = dict(ex.map_unordered(square_or_die, [0, 1, 2, 3, 4]))
    finally:
        ex.close()
    assert {k: v for k, v in out.items() if k != 2} == {0: 0, 1: 1, 3: 9, 4: 16}
    crash = out[2]
    assert isinstance(crash, WorkerCrash) and crash.attempts == 2
    assert "signal 9 (SIGKILL)" in crash.describe()


def test_a_cell_that_exits_is_recorded_as_crashed_and_the_sweep_goes_on(tiny, tmp_path):  # noqa: F811
    learner = LearnerSpec(f"{__name__}:ExitsOnSeedOne", label="exits")
    s = run_sweep(tiny, [learner], [0, 1], tmp_path / "r.db", executor="process", jobs=2,
                  quiet=True)
    assert (s.ok + s.diverged, s.failed) == (1, 1)
    (cell, run_id, reason), = s.failures
    assert "seed=1" in cell and reason.startswith("crashed: the worker process died (exit code 3)")
    assert "about to die" in reason
    with Store(tmp_path / "r.db") as store:
        assert "about to die" in store.show(run_id)


def test_workers_exit_when_the_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from simlab.experiment.executors import ProcessExecutor
        from helpers.crash import sleep
        if __name__ == "__main__":
            ex = ProcessExecutor(jobs=2)
            for _ in ex.map_unordered(sleep, [60, 60]):
                pass
    """))
    parent = subprocess.Popen([sys.executable, str(script)])
    try:
        children = _children(parent.pid, wait=60.0, count=2)
        assert len(children) == 2
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline and any(_alive(p) for p in children):
        time.sleep(0.2)
    assert not any(_alive(p) for p in children)


def _children(pid: int, wait: float, count: int) -> list[int]:
    deadline = time.monotonic() + wait
    found: list[int] = []
    while time.monotonic() < deadline:
        found = [int(p) for p in os.listdir("/proc")
                 if p.isdigit() and _ppid(int(p)) == pid and "spawn_main" in _cmdline(int(p))]
        if len(found) >= count:
            break
        time.sleep(0.2)
    return found


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
