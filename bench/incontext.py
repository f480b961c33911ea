"""Benchmark: the in-context learners' cost against MAML's, in one process.

Run by hand (not a test):  python3 bench/incontext.py [--device cuda] [--iters 50] [--repeats 5]

Timed per call, interleaved so that load on a shared machine hits every learner alike (see
``bench/learners.py: time_interleaved``; wall and process-CPU ms, median over repeats):

* one **meta-iteration** on a fixed meta-batch (loss, backward, clipping, Adam step; task
  sampling left out): ``MAML.meta_step`` at 1 inner step and at the scenario's step count, and
  ``descend(episode_loss)`` for ``cnp`` and ``pfn``;
* one **adaptation** of the same batch's support sets and the prediction of its queries
  (``adapt(batch, steps).predict(batch)``): MAML runs its inner loop, the in-context learners
  one forward pass.

Two settings, each learner at its default hyperparameters (MAML: the scenario's): the Finn et al.
(2017) sinusoid (K = 10, Q = 10, meta-batch 25) and the contest setting of ``bench/learners.py``
(``scenarios/opinion_shift.toml`` warm-up waves, meta-batch 16).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from learners import (INNER_LR, META_BATCH, QUERY, SHOTS, contest_setting,
                      time_interleaved)

from simlab.learners.base import Learner, TaskSpec
from simlab.learners.cnp import CNP
from simlab.learners.episodes import descend
from simlab.learners.maml import MAML
from simlab.learners.pfn import PFN
from simlab.tasks.batch import TaskBatch
from simlab.tasks.reference import sinusoid_tasks


def meta_iteration(learner: Learner, batch: TaskBatch) -> Callable[[], object]:
    """One outer update of ``learner`` on ``batch``, as its ``meta_fit`` takes it."""
    if isinstance(learner, MAML):
        return lambda: learner.meta_step(batch)
    params = list(learner.params.values())
    return lambda: descend(learner.episode_loss(batch), params, learner._opt, learner.grad_clip)


def adaptation(learner: Learner, batch: TaskBatch, steps: int) -> Callable[[], object]:
    """Adapt to the support sets and predict the queries (``steps`` inner steps for MAML)."""
    return lambda: learner.adapt(batch, [steps]).predict(batch)


def learners(spec: TaskSpec, maml_kw: dict, device: str) -> dict[str, tuple[Learner, int]]:
    """Name -> (set-up learner, adaptation steps): MAML at 1 step and at its own count."""
    out: dict[str, tuple[Learner, int]] = {}
    own = int(maml_kw.get("inner_steps", 1))
    for n in sorted({1, own}):
        m = MAML(**{**maml_kw, "inner_steps": n})
        m.setup(spec, seed=0, device=device)
        out[f"MAML, {n} inner step{'s' * (n > 1)}"] = (m, n)
    for cls in (CNP, PFN):
        m = cls()
        m.setup(spec, seed=0, device=device)
        out[cls.name] = (m, 0)
    return out


def bench(device: str, iters: int, repeats: int) -> dict[str, dict[str, dict]]:
    """{setting: {"meta-iteration" | "adapt+predict": {learner: timings}}}."""
    tasks = sinusoid_tasks(META_BATCH, SHOTS, QUERY, np.random.default_rng(0))
    contest, spec_c, maml_c, _ = contest_setting(device)
    settings = {
        "sinusoid": (TaskBatch.from_tasks(tasks, device=device), TaskSpec.of(tasks[0]),
                     {"hidden": (40, 40), "inner_lr": INNER_LR}),
        "opinion_shift": (contest, spec_c, maml_c)}
    out = {}
    for name, (batch, spec, maml_kw) in settings.items():
        made = learners(spec, maml_kw, device)
        out[name] = {
            "meta-iteration": time_interleaved(
                {k: meta_iteration(m, batch) for k, (m, _) in made.items()}, iters, repeats,
                device),
            "adapt+predict": time_interleaved(
                {k: adaptation(m, batch, s) for k, (m, s) in made.items()}, iters, repeats,
                device)}
    return out


def show(res: dict[str, dict[str, dict]]) -> None:
    for setting, parts in res.items():
        for part, rows in parts.items():
            ref = rows["MAML, 1 inner step"]
            print(f"{setting}, {part}; ms per call (ratio to MAML at 1 inner step):")
            print(f"  {'':24s} {'wall median':>12s} {'cpu median':>11s}   ratio wall / cpu")
            for name, r in rows.items():
                print(f"  {name:24s} {r['wall_median']:12.2f} {r['cpu_median']:11.2f}   "
                      f"{r['wall_median'] / ref['wall_median']:.2f}x / "
                      f"{r['cpu_median'] / ref['cpu_median']:.2f}x")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--iters", type=int, default=50, help="calls per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
          + f", threads {torch.get_num_threads()}")
    show(bench(args.device, args.iters, args.repeats))


if __name__ == "__main__":
    main()
