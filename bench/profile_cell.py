"""Where a demo cell's CPU seconds go: MAML, ANIL, ProtoNet and the meta-LSTM.

Run by hand (not a test), one thread, from the repository root:

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python3 bench/profile_cell.py [--scale 0.25]
        [--learners maml,anil] [--top 12] > bench/profile_cell_output.txt

One demo cell per learner (``bench/demo_cell.py``: opinion_shift seed 0, the demo's protocol
and tuned hyperparameters); ``--scale`` multiplies both budgets' meta-iterations (shares hardly
depend on it; the committed output says which it used). The cell runs once with explicit
timers and once under cProfile:

* **timers**: simlab functions are wrapped by stage; time goes to the innermost stage running
  (exclusive), in CPU seconds (``process_time``). Stages: ``stream I/O`` (loading the cached
  stream), ``setup`` (building the learner), ``episode sampling`` (``EpisodeSampler`` and the
  draw of task indices in ``fit_loop``), ``memory`` (group memory: remember, extend),
  ``inner loop`` (MAML/ANIL ``_inner_loop`` forward; meta-LSTM ``unroll``), ``outer step``
  (the rest of the meta-step: query loss, the backward pass through the inner loop, gradient
  assembly), ``optimiser`` (``apply_update``: finiteness check, clipping, Adam), ``fit loop``
  (what ``fit_loop`` does besides), ``adapt`` (the learner's ``adapt`` and ``predict``),
  ``scoring`` (metrics, poststratification, base-rate check, batching the wave), ``summary``
  (``summarize`` at the end) and ``other`` (the rest of the protocol).
* **cProfile**: the top functions by own time (``tottime``), to see which Python is hot.

A tiny cell of each learner runs first, untimed (imports and torch's first calls are paid once
per worker process, not per cell).
"""
from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_cell import DEMO_HYPERPARAMETERS, LEARNERS, cell_setup


class StageTimer:
    """Exclusive CPU time per stage: a stack of running stages, time goes to the top one."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.stack: list[str] = ["other"]
        self.last = time.process_time()

    def _switch(self) -> None:
        now = time.process_time()
        self.totals[self.stack[-1]] += now - self.last
        self.last = now

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._switch()
        self.stack.append(name)
        try:
            yield
        finally:
            self._switch()
            self.stack.pop()

    def wrap(self, owner: Any, attr: str, name: str) -> Callable[[], None]:
        """Time ``owner.attr`` as stage ``name`` (inside ``adapt``: as adapt); returns the
        undo."""
        original = owner.__dict__[attr]
        kind = type(original) if isinstance(original, (staticmethod, classmethod)) else None
        fn = original.__func__ if kind else original

        @functools.wraps(fn)
        def timed(*a: Any, **k: Any) -> Any:
            if self.stack[-1] == "adapt":       # the inner loop of adapt is adapt's
                return fn(*a, **k)
            with self.stage(name):
                return fn(*a, **k)

        setattr(owner, attr, kind(timed) if kind else timed)
        return lambda: setattr(owner, attr, original)


def instrument(timer: StageTimer) -> list[Callable[[], None]]:
    """Wrap the simlab functions of each stage (module attributes are patched where they are
    looked up: the importing module's namespace)."""
    from simlab.evaluation import metrics, poststrat, protocol
    from simlab.learners import episodes, maml, memory, meta_lstm, relation
    from simlab.learners.base import Learner
    from simlab.tasks import batch

    plan: list[tuple[Any, str, str]] = [
        (Learner, "setup", "setup"),
        (episodes.EpisodeSampler, "__call__", "episode sampling"),
        (episodes.EpisodeSampler, "__init__", "episode sampling"),
        (memory.GroupMemory, "remember", "memory"),
        (memory.GroupMemory, "extend", "memory"),
        (maml._GradientMetaLearner, "_inner_loop", "inner loop"),
        (meta_lstm.MetaLSTM, "unroll", "inner loop"),
        (maml.MAML, "_apply_step", "outer step"),
        (meta_lstm.MetaLSTM, "episode_loss", "outer step"),
        (relation.ProtoNet, "episode_loss", "outer step"),
        (relation.RelationNet, "episode_loss", "outer step"),
        (maml._GradientMetaLearner, "adapt", "adapt"),
        (meta_lstm.MetaLSTM, "adapt", "adapt"),
        (relation._Metric, "adapt", "adapt"),
        (episodes.FunctionalAdapted, "predict", "adapt"),
        (relation.MetricAdapted, "predict", "adapt"),
        (protocol, "score_predictions", "scoring"),
        (protocol, "base_rate", "scoring"),
        (protocol.poststrat, "wave_cells", "scoring"),
        (protocol.poststrat, "predict_prevalence", "scoring"),
        (protocol.poststrat, "wave_error", "scoring"),
        (batch.TaskBatch, "from_tasks", "scoring"),
        (protocol, "summarize", "summary"),
    ]
    undo = []
    for owner, attr, name in plan:
        if owner is not None and attr in owner.__dict__:
            undo.append(timer.wrap(owner, attr, name))
    # stages whose functions are imported by name into the learner modules
    for mod in (maml, meta_lstm, relation):
        for attr, name in (("fit_loop", "fit loop"), ("apply_update", "optimiser"),
                           ("descend", "outer step")):
            if attr in mod.__dict__:
                undo.append(timer.wrap(mod, attr, name))
    # the shared ``episodes.fit_episodes`` of the meta-LSTM and the metric learners
    for attr, name in (("fit_loop", "fit loop"), ("descend", "outer step")):
        undo.append(timer.wrap(episodes, attr, name))
    # descend's optimiser part: apply_update inside episodes
    undo.append(timer.wrap(episodes, "apply_update", "optimiser"))
    # the draw of task indices in fit_loop happens in torch.randperm: count it as sampling
    real_randperm = torch.randperm

    def randperm(*a: Any, **k: Any) -> torch.Tensor:
        with timer.stage("episode sampling"):
            return real_randperm(*a, **k)

    episodes.torch.randperm = randperm    # episodes imports torch: this patches torch itself
    undo.append(lambda: setattr(torch, "randperm", real_randperm))
    del metrics, poststrat
    return undo


def stage_shares(learner: str, scale: float) -> tuple[dict[str, float], float]:
    """Exclusive CPU seconds per stage of one cell, and the total."""
    from simlab.evaluation.protocol import evaluate

    timer = StageTimer()
    c0 = time.process_time()
    with timer.stage("stream I/O"):
        made, stream, kw = cell_setup(learner, 0, scale)
    undo = instrument(timer)
    try:
        timer.last = time.process_time()
        evaluate(made, stream, **kw)
        timer._switch()
    finally:
        for u in reversed(undo):
            u()
    return dict(timer.totals), time.process_time() - c0


def hot_functions(learner: str, scale: float, top: int) -> str:
    """cProfile's top ``top`` functions by own time for one cell."""
    from simlab.evaluation.protocol import evaluate

    made, stream, kw = cell_setup(learner, 0, scale)
    prof = cProfile.Profile()
    prof.enable()
    evaluate(made, stream, **kw)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
    root = str(Path(__file__).resolve().parents[1]) + "/"
    return "\n".join(ln.replace(root, "") for ln in [lines[0]] + lines[start:])


ORDER = ("stream I/O", "setup", "episode sampling", "memory", "inner loop", "outer step",
         "optimiser", "fit loop", "adapt", "scoring", "summary", "other")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--learners", default=",".join(LEARNERS))
    p.add_argument("--scale", type=float, default=0.25,
                   help="budget iterations x this (default 0.25: 100 warm-up, 10 per wave)")
    p.add_argument("--top", type=int, default=12, help="cProfile rows per learner (0: none)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    names = [n for n in args.learners.split(",") if n]
    print(f"demo cell profile: opinion_shift seed 0, budgets x{args.scale:g} "
          f"(demo: 400 warm-up + 15 x 40 online meta-iterations), torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread, CPU seconds (process_time), exclusive per stage")
    for name in names:          # warm-up: imports, torch's first calls (not a cell's cost)
        stage_shares(name, 0.01)
    rows = {}
    for name in names:
        shares, total = stage_shares(name, args.scale)
        rows[name] = (shares, total)
        print(f"\n{name}: {total:.2f} CPU s  ({DEMO_HYPERPARAMETERS[name]})")
        for stage in ORDER:
            s = shares.get(stage, 0.0)
            if s > 0.0005 * total:
                print(f"  {stage:<17} {s:7.2f} s  {100 * s / total:5.1f}%")
    print("\nshares (%)    " + "".join(f"{n:>10}" for n in names))
    for stage in ORDER:
        vals = [100 * rows[n][0].get(stage, 0.0) / rows[n][1] for n in names]
        print(f"{stage:<14}" + "".join(f"{v:>10.1f}" for v in vals))
    print(f"{'CPU s':<14}" + "".join(f"{rows[n][1]:>10.2f}" for n in names))
    if args.top:
        for name in names:
            print(f"\n--- {name}: cProfile, top {args.top} by own time "
                  "(profiler overhead inflates Python-heavy rows) ---")
            print(hot_functions(name, args.scale, args.top))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
