"""Benchmark: fixed splits vs resampled episodes for meta-training (issue 8, item 1).

Run by hand (not a test):
    python3 bench/episodes.py [--scenario gss_happiness] [--learners protonet maml]
                              [--modes stream grid matched] [--seeds 3] [--shots 5]

For each learner and episode mode, the scenario's own prequential protocol (its warm-up,
budgets, shots and steps grids) is run on seeds 0..seeds-1 and the held-out query log loss at
``--shots`` (largest step count, mean over the scored waves) is printed with the last
meta-training loss of the run (a memorising learner has a tiny training loss and a large
held-out one). Modes: ``stream`` = the stream's one fixed support/query split per task (the
old behaviour), ``grid`` = a fresh split per episode with K drawn from the shots grid (the
default), ``matched`` = one model per scored K trained on K-shot episodes.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from simlab.evaluation.protocol import evaluate
from simlab.experiment.config import load_scenario
from simlab.learners.base import Episodes
from simlab.learners.registry import make_learner


def held_out(records, shots: int) -> float:
    """Mean query loss at K=shots and the largest step count over the scored waves."""
    loss = records[(records["metric"] == "loss") & (records["shots"] == shots)]
    return float(loss[loss["steps"] == loss["steps"].max()]["value"].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="gss_happiness")
    ap.add_argument("--learners", nargs="+", default=["protonet", "maml"])
    ap.add_argument("--modes", nargs="+", default=["stream", "grid", "matched"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--shots", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    sc = load_scenario(args.scenario)
    print(f"{sc.name}: shots {sc.evaluation.shots}, steps {sc.evaluation.steps}, warm-up "
          f"{sc.evaluation.warmup}, budget {sc.evaluation.budget.iterations} x "
          f"{sc.evaluation.budget.meta_batch}; held-out log loss at K={args.shots}, "
          f"mean over seeds 0..{args.seeds - 1} (+- sd)")
    print(f"{'learner':10s} {'episodes':9s} {'held-out':>16s} {'train loss':>11s} "
          f"{'cpu s/run':>9s}")
    for name in args.learners:
        for mode in args.modes:
            losses, train, cpu = [], [], []
            for seed in range(args.seeds):
                settings = sc.protocol().replace(episodes=Episodes(mode))
                t0 = time.process_time()
                res = evaluate(make_learner(name, **sc.hyperparameters(name)), sc.stream(seed),
                               settings, seed=seed)
                cpu.append(time.process_time() - t0)
                losses.append(held_out(res.records, args.shots))
                fits = [e.get("meta_loss", np.nan) for e in res.log["meta_fit"]
                        if e.get("episode_shots", args.shots) == args.shots]
                train.append(fits[-1] if fits else np.nan)
            print(f"{name:10s} {mode:9s} {np.mean(losses):9.3f} +- {np.std(losses):4.2f} "
                  f"{np.nanmean(train):11.3f} {np.mean(cpu):9.1f}", flush=True)


if __name__ == "__main__":
    main()
