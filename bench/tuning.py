"""Tuning that searches (issue 18, item 3): the pruned rolling-origin search against the old
6-trial tuner, in the same process, on the same warm-up waves.

The scenario is ``response_threshold`` shrunk to its warm-up plus two waves, without its late
shock (the scored waves are never read by tuning; the stream only has to have some), smaller
groups, one seed; the protocol settings (warm-up 4, shots, steps, the 400-iteration warm-up
budget, the online budget) are the scenario's unless ``--iterations`` scales both budgets to a
quick run. Per learner it prints, for

* old: 6 trials, one fold (meta-fit on waves 0-2, score wave 3), no pruning. Its TPE start-up
  is 5 here (the old tuner used Optuna's default 10, so all 6 were random: the same except
  that the 6th trial is TPE's);
* new: the shipped search (``simlab.evaluation.tuning.DEFAULT_SEARCH``: 24 trials, 8 start-up,
  successive halving on 3 budget rungs, 3 rolling-origin folds),

the trials completed / pruned / diverged, the wall seconds, the untuned and the best score and
the gain on its own objective (one wave vs the mean over three folds: compare gains and seconds,
not scores across rows), and ``held-out``: the chosen configuration run through the protocol
on the whole shrunk stream, its mean loss on the two scored waves (which tuning never read; one
seed, two waves: a noisy check that the choice carries over, not a verdict).

    PYTHONPATH=$PWD python bench/tuning.py [--learners maml,partial_pooling] [--group-size 200]
                                           [--iterations 100] [--rungs 2] [--skip-old]
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from simlab.evaluation.protocol import evaluate
from simlab.evaluation.tuning import DEFAULT_SEARCH, Search, tune
from simlab.settings import TuningSettings
from simlab.learners.registry import make_learner
from simlab.experiment.config import load_scenario

OLD = Search(trials=6, startup=5, pruner="none", folds=1, rungs=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--learners", default="maml,partial_pooling")
    ap.add_argument("--group-size", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rungs", type=int, default=None, help="the new search's rungs")
    ap.add_argument("--skip-old", action="store_true", help="run the new search only")
    ap.add_argument("--iterations", type=int, default=None,
                    help="warm-up iterations (online: a tenth); default: the scenario's")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = load_scenario("response_threshold")
    warmup = base.evaluation.warmup
    budgets = {} if args.iterations is None else {
        "warmup_budget": {"iterations": args.iterations},
        "budget": {"iterations": max(1, args.iterations // 10)}}
    sc = base.override({"survey": {"waves": warmup + 2}, "shocks": [],
                        "graph": {"group_size": args.group_size}, "evaluation": budgets})
    stream = sc.stream(args.seed)
    settings = sc.protocol()
    print(f"{sc.name} shrunk: {len(stream)} waves x {len(stream.waves[0])} groups, warm-up "
          f"{warmup}, warm-up budget {settings.warm().iterations} iterations, online "
          f"{settings.budget.iterations}; torch threads 1")
    print(f"{'learner':<16} {'search':<5} {'trials (complete/pruned/diverged)':>34} "
          f"{'seconds':>8} {'untuned':>8} {'best':>8} {'gain':>8} {'held-out':>9}")
    for name in args.learners.split(","):
        new = DEFAULT_SEARCH if args.rungs is None else dataclasses.replace(
            DEFAULT_SEARCH, rungs=args.rungs)
        for label, search in (("old", OLD), ("new", new))[int(args.skip_old):]:
            t0 = time.perf_counter()
            # each trial's warm-up budget: the run's (tuning.budget None), as this bench had it
            res = tune(name, {}, stream, settings.replace(tuning=TuningSettings(search)),
                       seed=args.seed)
            secs = time.perf_counter() - t0
            counts = (f"{res.trials} ({res.count('complete')}/{res.count('pruned')}/"
                      f"{res.count('diverged')})")
            untuned = "-" if res.untuned_value is None else f"{res.untuned_value:.4f}"
            gain = "-" if res.gain is None else f"{res.gain:+.4f}"
            held = evaluate(make_learner(name, **res.best_params), stream, settings,
                            seed=args.seed).summary["mean_loss"]
            print(f"{name:<16} {label:<5} {counts:>34} {secs:8.1f} {untuned:>8} "
                  f"{res.best_value:8.4f} {gain:>8} {held:9.4f}", flush=True)


if __name__ == "__main__":
    main()
