"""Benchmark: one MAML meta-iteration, simlab's vmapped torch.func core vs a per-task loop.

Run by hand (not a test):  python3 bench/learners.py [--device cuda] [--iters 200] [--compile]

Setting (Finn et al. 2017 sinusoid): 1-40-40-1 ReLU MLP, K=10 support and 10 query points per
task, meta-batch 25, one inner SGD step at lr 0.01, second order, Adam outer lr 1e-3.

The reference is written here the way learn2learn's ``MAML`` does it (``clone_module`` per task,
``autograd.grad(create_graph=True)``, ``update_module``, a Python loop over the tasks of the
meta-batch, ``backward`` per task); learn2learn itself is not installed. Both run in the same
process on the same tasks and initial weights; ms per meta-iteration is the median over repeats.
If bench/other_learners.py exists (meta-LSTM and relation-net benchmarks), its results are printed.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import statistics
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from simlab.learners import TaskSpec
from simlab.learners.maml import MAML
from simlab.tasks.batch import TaskBatch
from simlab.tasks.reference import sinusoid_tasks

META_BATCH, SHOTS, QUERY, INNER_LR = 25, 10, 10, 0.01


# ----- learn2learn-style reference (clone the module per task, loop over tasks) -------------
def clone_module(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose parameters are differentiable clones of the originals
    (learn2learn.utils.clone_module): gradients flow back to the original parameters."""
    clone = copy.copy(module)
    clone.__dict__ = module.__dict__.copy()
    clone._parameters = OrderedDict((k, None if p is None else p.clone())
                                    for k, p in module._parameters.items())
    clone._buffers = OrderedDict((k, b) for k, b in module._buffers.items())
    clone._modules = OrderedDict((k, clone_module(m)) for k, m in module._modules.items())
    return clone


def update_module(module: nn.Module, lr: float, grads: list[torch.Tensor]) -> None:
    """p <- p - lr * g in place of the module's parameters (learn2learn.utils.update_module)."""
    it = iter(grads)

    def walk(m: nn.Module) -> None:
        for k, p in m._parameters.items():
            if p is not None:
                m._parameters[k] = p - lr * next(it)
        for child in m._modules.values():
            walk(child)

    walk(module)


def reference_step(model: nn.Module, opt: torch.optim.Optimizer, xs, ys, xq, yq) -> None:
    """One second-order MAML meta-iteration, learn2learn style (no per-task .item() syncs)."""
    opt.zero_grad()
    for t in range(xs.shape[0]):
        learner = clone_module(model)
        loss = ((learner(xs[t]).squeeze(-1) - ys[t]) ** 2).mean()
        grads = torch.autograd.grad(loss, list(learner.parameters()), create_graph=True)
        update_module(learner, INNER_LR, list(grads))
        qloss = ((learner(xq[t]).squeeze(-1) - yq[t]) ** 2).mean() / xs.shape[0]
        qloss.backward()
    opt.step()


# ----- timing -------------------------------------------------------------------------------
def time_interleaved(steps: dict[str, Callable[[], object]], iters: int, repeats: int,
                     device: str) -> dict[str, dict[str, float]]:
    """ms per call of each step: wall and process-CPU time, median and min over ``repeats``.

    The steps are interleaved (each repeat times every step once, in turn), so that load from
    other processes on a shared machine hits them alike; CPU time is what the process itself
    spent, less sensitive to being descheduled than wall time."""
    for step in steps.values():                      # warm-up (allocator, lazy init)
        for _ in range(max(3, iters // 10)):
            step()
    wall: dict[str, list[float]] = {k: [] for k in steps}
    cpu: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            if device == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(iters):
                step()
            if device == "cuda":
                torch.cuda.synchronize()
            wall[name].append((time.perf_counter() - t0) / iters * 1e3)
            cpu[name].append((time.process_time() - c0) / iters * 1e3)
    return {k: {"wall_median": statistics.median(wall[k]), "wall_min": min(wall[k]),
                "cpu_median": statistics.median(cpu[k]), "cpu_min": min(cpu[k])}
            for k in steps}


def bench_maml(device: str, iters: int, repeats: int, with_compile: bool
               ) -> dict[str, dict[str, float]]:
    """Time the three implementations of the same meta-iteration on the same weights."""
    tasks = sinusoid_tasks(META_BATCH, SHOTS, QUERY, np.random.default_rng(0))
    batch = TaskBatch.from_tasks(tasks, device=device)
    spec = TaskSpec.of(tasks[0])
    learner = MAML(hidden=(40, 40), inner_lr=INNER_LR, inner_steps=1, outer_lr=1e-3)
    learner.setup(spec, seed=0, device=device)

    model = copy.deepcopy(learner.net)
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.copy_(learner.params[k])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xs, ys, xq, yq = batch.x_support, batch.y_support, batch.x_query, batch.y_query

    steps: dict[str, Callable[[], object]] = {
        "learn2learn-style loop": lambda: reference_step(model, opt, xs, ys, xq, yq),
        "simlab vmap torch.func": lambda: learner.meta_step(batch)}
    extra: dict[str, float] = {}
    if with_compile:
        fast = MAML(hidden=(40, 40), inner_lr=INNER_LR, inner_steps=1, outer_lr=1e-3,
                    compile=True)
        fast.setup(spec, seed=0, device=device)
        t0 = time.perf_counter()
        fast.meta_step(batch)
        extra["compile_s"] = time.perf_counter() - t0
        steps["simlab + torch.compile"] = lambda: fast.meta_step(batch)
    res = time_interleaved(steps, iters, repeats, device)
    res["_meta"] = extra
    return res


def other_learners() -> dict[str, dict] | None:
    """Results of bench/other_learners.py (meta-LSTM, relation net) when that file exists."""
    path = Path(__file__).with_name("other_learners.py")
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("simlab_bench_other_learners", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return {"meta_lstm": module.bench_meta_lstm(), "relation": module.bench_relation()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--iters", type=int, default=200, help="meta-iterations per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--compile", action="store_true", help="also time MAML(compile=True)")
    ap.add_argument("--skip-others", action="store_true", help="skip bench/other_learners.py")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
          + f", threads {torch.get_num_threads()}")
    print(f"MAML sinusoid, K={SHOTS}, Q={QUERY}, meta-batch {META_BATCH}, 1 inner step, "
          "second order; ms per meta-iteration:")
    res = bench_maml(args.device, args.iters, args.repeats, args.compile)
    meta = res.pop("_meta")
    ref = res["learn2learn-style loop"]
    print(f"  {'':24s} {'wall median':>12s} {'wall min':>9s} {'cpu median':>11s} {'cpu min':>8s}"
          "   ratio (wall median / cpu median)")
    for name, r in res.items():
        ratio = ("" if r is ref else f"   {ref['wall_median'] / r['wall_median']:.1f}x / "
                 f"{ref['cpu_median'] / r['cpu_median']:.1f}x")
        print(f"  {name:24s} {r['wall_median']:12.3f} {r['wall_min']:9.3f} "
              f"{r['cpu_median']:11.3f} {r['cpu_min']:8.3f}{ratio}")
    if "compile_s" in meta:
        print(f"  (torch.compile of the meta-step took {meta['compile_s']:.1f} s)")
    others = None if args.skip_others else other_learners()
    for name, r in (others or {}).items():
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in r.items()))


if __name__ == "__main__":
    main()
