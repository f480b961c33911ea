"""How much running seeds together could save at most: the fixed vs the per-task cost of a
meta-step (issue 23).

Run by hand (not a test), from the repository root, on an otherwise quiet machine:

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python3 bench/batch_ceiling.py [--learners ...]
        [--seeds 6] [--iterations 60] [--repeats 5] [--compile]

Running S seeds' meta-steps in one batched call (a "seed group": their parameter sets
stacked, their tasks concatenated) saves only the part of a step that does not grow with the
number of tasks in it (per-operation overhead: Python, dispatch, small kernels); the
arithmetic and memory traffic of S x 16 tasks stay. This measures both parts on the demo's own
meta-batches: one learner (the demo's tuned hyperparameters, ``bench/demo_cell.py``)
meta-fits on the opinion_shift stream's first 12 waves with meta-batches of 16 tasks (the
demo's) and of S x 16 tasks, the same number of meta-iterations; CPU seconds per meta-step
(episode sampling and group memory included) give the fixed cost f and the per-task cost c
(t(B) = f + c B), and the ceiling of a group of S seeds is t(16) / (t(16 S) / S): the most it
could save per meta-step with no overhead of its own, whatever its implementation. A
lock-step implementation (each seed's protocol in a thread, the k-th meta-steps of all seeds
in one joint call, bit-for-bit the seeds' own records) was built and measured on the demo's
cells: 0.95x for MAML and 0.90x for ANIL per cell (slower: its own overhead exceeds what the
ceiling leaves), 1.00x and 1.02x without group memory; it was not merged (branch
``seed-groups-prototype``, ``bench/seed_group_output.txt`` there).

``--compile`` also times MAML's meta-gradient on one fixed demo meta-batch, eager and with
``compile = true`` (after its compilation), to see whether compiling the step pays where the
shape never changes (the demo's meta-batches do change shape, and each new shape compiles
again).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_cell import cell_setup

from simlab.learners.base import Budget, TaskSpec
from simlab.learners.episodes import EpisodeSampler


def per_step(learner: str, meta_batch: int, iterations: int) -> float:
    """CPU seconds per meta-step of ``learner`` meta-fitting with ``meta_batch`` tasks."""
    made, stream, _ = cell_setup(learner, 0, 1.0)
    tasks = stream.tasks(0, 12)
    made.setup(TaskSpec.of(tasks[0]), seed=0)
    budget = Budget(iterations=3, meta_batch=meta_batch)
    made.meta_fit(tasks, budget)                    # warm the allocator and the caches
    c0 = time.process_time()
    made.meta_fit(tasks, dataclasses.replace(budget, iterations=iterations))
    return (time.process_time() - c0) / iterations


def support_rows(learner: str, draws: int = 20) -> tuple[int, int]:
    """Fewest and most support rows per task (padded, group memory included) of ``draws``
    demo meta-batches of 16 tasks, after a meta-fit has filled the group memory."""
    made, stream, _ = cell_setup(learner, 0, 1.0)
    tasks = stream.tasks(0, 12)
    made.setup(TaskSpec.of(tasks[0]), seed=0)
    made.meta_fit(tasks, Budget(iterations=1, meta_batch=16))
    sampler = EpisodeSampler.for_learner(made, tasks, Budget(meta_batch=16))
    rows = [int(sampler(torch.randperm(len(tasks), generator=made.generator)[:16],
                        made.generator).x_support.shape[1]) for _ in range(draws)]
    return min(rows), max(rows)


def fixed_batch_step(learner: str, compile: bool, iterations: int) -> tuple[float, float]:
    """(CPU seconds of the first meta-gradient, incl. compiling; CPU seconds per later one)
    of ``learner`` on one fixed demo meta-batch of 16 tasks."""
    made, stream, _ = cell_setup(learner, 0, 1.0, overrides={"compile": compile})
    tasks = stream.tasks(0, 12)
    made.setup(TaskSpec.of(tasks[0]), seed=0)
    sampler = EpisodeSampler.for_learner(made, tasks, Budget(meta_batch=16))
    batch = sampler(torch.arange(16), made.generator)
    c0 = time.process_time()
    made.meta_gradient(batch)
    first = time.process_time() - c0
    c0 = time.process_time()
    for _ in range(iterations):
        made.meta_gradient(batch)
    return first, (time.process_time() - c0) / iterations


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--learners", default="maml,anil,protonet,meta_lstm")
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--repeats", type=int, default=5, help="medians of this many runs")
    p.add_argument("--compile", action="store_true",
                   help="also time MAML's meta-gradient on one fixed batch, eager vs compiled")
    args = p.parse_args(argv)
    s = args.seeds
    print(f"demo meta-steps (opinion_shift waves 0-11, tuned hyperparameters), torch "
          f"{torch.__version__}, {torch.get_num_threads()} thread; CPU ms per meta-step, "
          f"medians of {args.repeats}; support rows per task of 20 drawn meta-batches")
    print(f"{'learner':<10} {'B=16':>8} {f'B={16 * s}':>8} {'fixed':>8} {'per task':>9} "
          f"{'ceiling':>8} {'support rows':>13}")
    for learner in args.learners.split(","):
        small = statistics.median(per_step(learner, 16, args.iterations)
                                  for _ in range(args.repeats))
        big = statistics.median(per_step(learner, 16 * s, max(3, args.iterations // s))
                                for _ in range(args.repeats))
        per_task = (big - small) / (16 * s - 16)
        fixed = small - 16 * per_task
        lo, hi = support_rows(learner)
        print(f"{learner:<10} {small * 1e3:8.2f} {big * 1e3:8.2f} {fixed * 1e3:8.2f} "
              f"{per_task * 1e3:9.3f} {small / (big / s):7.2f}x {f'{lo}-{hi}':>13}")
    if args.compile:
        print("\nMAML meta-gradient on one fixed demo meta-batch (CPU ms): first call, then "
              "per call")
        for flag in (False, True):
            first, each = fixed_batch_step("maml", flag, args.iterations)
            print(f"  compile={str(flag):<5} first {first * 1e3:9.1f}  per call {each * 1e3:7.2f}")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    sys.exit(main())
