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

from simlab.learners import Budget, TaskSpec
from simlab.learners.maml import MAML, _tensors
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


def reference_step(model: nn.Module, opt: torch.optim.Optimizer, xs, ys, xq, yq) -> float:
    """One second-order MAML meta-iteration, learn2learn style."""
    opt.zero_grad()
    total = 0.0
    for t in range(xs.shape[0]):
        learner = clone_module(model)
        loss = ((learner(xs[t]).squeeze(-1) - ys[t]) ** 2).mean()
        grads = torch.autograd.grad(loss, list(learner.parameters()), create_graph=True)
        update_module(learner, INNER_LR, list(grads))
        qloss = ((learner(xq[t]).squeeze(-1) - yq[t]) ** 2).mean() / xs.shape[0]
        qloss.backward()
        total += float(qloss)
    opt.step()
    return total


# ----- timing -------------------------------------------------------------------------------
def per_iteration_ms(step: Callable[[], object], iters: int, repeats: int, device: str) -> float:
    """Median over ``repeats`` of the mean wall time of ``iters`` calls (after a warm-up)."""
    for _ in range(max(3, iters // 10)):
        step()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) / iters * 1e3)
    return statistics.median(times)


def bench_maml(device: str, iters: int, repeats: int, with_compile: bool) -> dict[str, float]:
    tasks = sinusoid_tasks(META_BATCH, SHOTS, QUERY, np.random.default_rng(0))
    batch = TaskBatch.from_tasks(tasks, device=device)
    learner = MAML(hidden=(40, 40), inner_lr=INNER_LR, inner_steps=1, outer_lr=1e-3)
    learner.setup(TaskSpec.of(tasks[0]), seed=0, device=device)
    tensors = _tensors(batch)

    model = copy.deepcopy(learner.net)
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.copy_(learner.params[k])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xs, ys, xq, yq = batch.x_support, batch.y_support, batch.x_query, batch.y_query

    res = {"reference_ms": per_iteration_ms(lambda: reference_step(model, opt, xs, ys, xq, yq),
                                            iters, repeats, device),
           "simlab_ms": per_iteration_ms(lambda: learner._apply_step(tensors), iters, repeats,
                                         device)}
    res["ratio"] = res["reference_ms"] / res["simlab_ms"]
    if with_compile:
        fast = MAML(hidden=(40, 40), inner_lr=INNER_LR, inner_steps=1, outer_lr=1e-3,
                    compile=True)
        fast.setup(TaskSpec.of(tasks[0]), seed=0, device=device)
        t0 = time.perf_counter()
        fast._apply_step(tensors)
        res["compile_s"] = time.perf_counter() - t0
        res["simlab_compiled_ms"] = per_iteration_ms(lambda: fast._apply_step(tensors), iters,
                                                     repeats, device)
        res["ratio_compiled"] = res["reference_ms"] / res["simlab_compiled_ms"]
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
    print(f"  learn2learn-style loop  {res['reference_ms']:8.3f} ms")
    print(f"  simlab vmap torch.func  {res['simlab_ms']:8.3f} ms   ratio {res['ratio']:.1f}x")
    if args.compile:
        print(f"  simlab + torch.compile  {res['simlab_compiled_ms']:8.3f} ms   ratio "
              f"{res['ratio_compiled']:.1f}x   (compile took {res['compile_s']:.1f} s)")
    others = None if args.skip_others else other_learners()
    for name, r in (others or {}).items():
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in r.items()))


if __name__ == "__main__":
    main()
