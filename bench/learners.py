"""Benchmark: one MAML meta-iteration, simlab's vmapped torch.func core vs a per-task loop.

Run by hand (not a test):  python3 bench/learners.py [--device cuda] [--iters 200] [--compile]
                           [--meta-lstm-reference OLD.py] [--skip-meta-lstm]

Setting (Finn et al. 2017 sinusoid): 1-40-40-1 ReLU MLP, K=10 support and 10 query points per
task, meta-batch 25, one inner SGD step at lr 0.01, second order, Adam outer lr 1e-3.

The reference is written here the way learn2learn's ``MAML`` does it (``clone_module`` per task,
``autograd.grad(create_graph=True)``, ``update_module``, a Python loop over the tasks of the
meta-batch, ``backward`` per task); learn2learn itself is not installed. Both run in the same
process on the same tasks and initial weights; ms per meta-iteration is the median over repeats.
If bench/other_learners.py exists (meta-LSTM and relation-net benchmarks), its results are printed.

Meta-LSTM vs MAML (issue 8 item 7, "within 5x MAML's per-iteration time"): one meta-iteration
(loss, backward, clipping, Adam) of ``MetaLSTM`` against ``MAML.meta_step``, interleaved in the
same process, in two settings: the sinusoid setting above (1-40-40-1 learner for both, so the
meta-LSTM has 1761 coordinates per task; T = 5 unrolled steps; MAML at 1 step and at T steps)
and the contest setting (``scenarios/opinion_shift.toml`` warm-up waves, each learner with the
scenario's hyperparameters, meta-batch 16). ``--meta-lstm-reference FILE`` also times the
``MetaLSTM`` class of another version of ``meta_lstm.py`` (e.g. ``git show
e5bc1b8:simlab/learners/meta_lstm.py > /tmp/old.py``) for before/after figures.
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
from simlab.learners.episodes import descend, pad_tasks, take
from simlab.learners.maml import MAML
from simlab.learners.meta_lstm import MetaLSTM
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


# ----- meta-LSTM vs MAML ---------------------------------------------------------------------
def load_class(path: str, name: str) -> type:
    """Class ``name`` from the Python file ``path`` (an older version of a learner module)."""
    spec = importlib.util.spec_from_file_location(f"simlab_bench_ref_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module            # dataclasses look their module up
    spec.loader.exec_module(module)
    return getattr(module, name)


def lstm_step(learner: MetaLSTM, batch: TaskBatch) -> Callable[[], object]:
    """One meta-LSTM meta-iteration on a fixed batch, as ``meta_fit`` takes it."""
    params = list(learner.params.values())
    return lambda: descend(learner.episode_loss(batch), params, learner._opt, learner.grad_clip)


def contest_setting(device: str) -> tuple[TaskBatch, TaskSpec, dict, dict]:
    """A meta-batch of 16 warm-up tasks of opinion_shift (seed 0) and the scenario's
    hyperparameters of MAML and of the meta-LSTM."""
    from simlab.experiment.config import load_scenario
    scenario = load_scenario(Path(__file__).parents[1] / "scenarios" / "opinion_shift.toml")
    stream = scenario.stream(0)
    tasks = [t for wave in stream.waves[:scenario.evaluation.warmup] for t in wave]
    batch = take(pad_tasks(tasks, device), torch.arange(min(16, len(tasks)), device=device))
    return (batch, TaskSpec.of(tasks[0]), scenario.hyperparameters("maml"),
            scenario.hyperparameters("meta_lstm"))


def bench_meta_lstm(device: str, iters: int, repeats: int, reference: str | None
                    ) -> dict[str, dict[str, dict[str, float]]]:
    """ms per meta-iteration of the meta-LSTM and of MAML in both settings (see the module
    docstring); ``reference``: a file whose ``MetaLSTM`` is timed too."""
    classes = {"meta-LSTM": MetaLSTM}
    if reference:
        classes["meta-LSTM (reference file)"] = load_class(reference, "MetaLSTM")
    out = {}
    tasks = sinusoid_tasks(META_BATCH, SHOTS, QUERY, np.random.default_rng(0))
    batch, spec = TaskBatch.from_tasks(tasks, device=device), TaskSpec.of(tasks[0])
    settings = {"sinusoid": (batch, spec, {"hidden": (40, 40), "inner_lr": INNER_LR},
                             {"hidden": (40, 40)}),
                "opinion_shift": contest_setting(device)}
    for name, (batch, spec, maml_kw, lstm_kw) in settings.items():
        steps: dict[str, Callable[[], object]] = {}
        lstm_t = MetaLSTM(**lstm_kw).inner_steps
        for n_inner in sorted({1, lstm_t}):
            maml = MAML(**{**maml_kw, "inner_steps": n_inner})
            maml.setup(spec, seed=0, device=device)
            steps[f"MAML, {n_inner} inner step{'s' * (n_inner > 1)}"] = (
                lambda m=maml, b=batch: m.meta_step(b))
        for label, cls in classes.items():
            for hidden in (20, 0):
                lstm = cls(**{**lstm_kw, "lstm_hidden": hidden})
                lstm.setup(spec, seed=0, device=device)
                key = f"{label}, T={lstm.inner_steps}, lstm_hidden={hidden}"
                steps[key] = lstm_step(lstm, batch)
        out[name] = time_interleaved(steps, iters, repeats, device)
    return out


def print_meta_lstm(res: dict[str, dict[str, dict[str, float]]]) -> None:
    """One table per setting: ms per meta-iteration and the ratio to MAML at 1 inner step."""
    for setting, rows in res.items():
        print(f"meta-LSTM vs MAML, {setting}; ms per meta-iteration, ratio to MAML (1 step):")
        ref = next(r for k, r in rows.items() if k.startswith("MAML, 1 "))
        print(f"  {'':48s} {'wall median':>12s} {'cpu median':>11s}   ratio wall / cpu")
        for name, r in rows.items():
            print(f"  {name:48s} {r['wall_median']:12.2f} {r['cpu_median']:11.2f}   "
                  f"{r['wall_median'] / ref['wall_median']:.1f}x / "
                  f"{r['cpu_median'] / ref['cpu_median']:.1f}x")


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
    ap.add_argument("--skip-meta-lstm", action="store_true", help="skip meta-LSTM vs MAML")
    ap.add_argument("--meta-lstm-reference", metavar="FILE",
                    help="also time the MetaLSTM class defined in FILE (before/after)")
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
    if not args.skip_meta_lstm:
        print_meta_lstm(bench_meta_lstm(args.device, args.iters, args.repeats,
                                        args.meta_lstm_reference))
    others = None if args.skip_others else other_learners()
    for name, r in (others or {}).items():
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in r.items()))


if __name__ == "__main__":
    main()
