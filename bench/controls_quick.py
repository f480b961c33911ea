"""Quick measurement on the positive control (issue 18): excess loss of a few learners at the
shipped budget (untuned defaults), through the public API.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python3 bench/controls_quick.py --seeds 0 \
        --learners floor,partial_pooling,maml
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import simlab

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=str(ROOT / "scenarios/control_positive.toml"))
    ap.add_argument("--learners", default="floor,partial_pooling,maml")
    ap.add_argument("--seeds", default="0", help="comma-separated stream seeds")
    args = ap.parse_args()
    scenario = simlab.load_scenario(args.scenario)
    for seed in (int(s) for s in args.seeds.split(",")):
        stream = scenario.stream(seed)
        for name in args.learners.split(","):
            t0 = time.perf_counter()
            learner = simlab.make_learner(name, **scenario.hyperparameters(name))
            result = simlab.evaluate(learner, stream, scenario.protocol(), seed=seed)
            print(f"seed {seed} {name:16s} excess {result.summary['mean_excess_loss']:.4f} "
                  f"loss {result.summary['mean_loss']:.4f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)


if __name__ == "__main__":
    main()
