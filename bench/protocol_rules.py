"""Benchmark: what the protocol rules of issue 18 (items 2, 4, 5) change, paired over seeds.

Run by hand (not a test):
    python3 bench/protocol_rules.py [--scenario response_threshold] [--learners maml protonet]
                                    [--seeds 4]

For each learner, the scenario's own protocol (``scenario.protocol()``: its warm-up, budgets, shots
and steps grids; untuned defaults) on seeds 0..seeds-1, and the mean excess loss (oracle) of:

* ``shipped``: as shipped (early-stopping warm-up, online meta-fit on every revealed task,
  scored at the learner's own step count);
* ``fixed400``: the warm-up budget replaced by the old fixed 400 meta-iterations;
* ``newest``: online meta-fit on the newest wave only (the old rule; the instance is marked
  ``incremental``);
* ``step_max``: the shipped runs' records read at the grid's largest step count (the old
  scoring rule) instead of the learner's own.

Each line prints the per-seed values and the paired differences from ``shipped`` (mean and sd
over seeds; below 0: the old rule was better), with the warm-up iterations early stopping chose.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from simlab.evaluation.metrics import cubes
from simlab.evaluation.protocol import evaluate
from simlab.experiment.config import load_scenario
from simlab.learners.base import Budget
from simlab.learners.registry import make_learner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="response_threshold")
    ap.add_argument("--learners", nargs="+", default=["maml", "protonet"])
    ap.add_argument("--seeds", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    sc = load_scenario(f"scenarios/{args.scenario}.toml")
    for name in args.learners:
        t0 = time.process_time()
        rows, best = [], []
        for seed in range(args.seeds):
            settings = sc.protocol()
            stream = sc.stream(seed)
            out = {}
            for rule in ("shipped", "fixed400", "newest"):
                learner = make_learner(name, **sc.hyperparameters(name))
                run = settings
                if rule == "fixed400":
                    run = settings.replace(warmup_budget=Budget(400, settings.budget.meta_batch))
                if rule == "newest":
                    learner.incremental = True
                res = evaluate(learner, stream, run, seed=seed)
                out[rule] = res.summary["mean_excess_loss"]
                if rule == "shipped":
                    excess = cubes(res.records)["excess_loss"]
                    out["step_max"] = float(np.mean(excess.at_steps("max").mean(1)))
                    best.append(res.log["meta_fit"][0].get("best_iteration"))
            rows.append(out)
        print(f"{name} ({args.seeds} seeds, {time.process_time() - t0:.0f} CPU s)", flush=True)
        shipped = np.array([r["shipped"] for r in rows])
        print(f"  shipped   {np.round(shipped, 4).tolist()}  warm-up best iteration {best}")
        for rule in ("fixed400", "newest", "step_max"):
            vals = np.array([r[rule] for r in rows])
            d = vals - shipped
            print(f"  {rule:9s} {np.round(vals, 4).tolist()}  minus shipped: mean {d.mean():+.4f}"
                  f" sd {d.std(ddof=1) if len(d) > 1 else 0:.4f}", flush=True)


if __name__ == "__main__":
    main()
