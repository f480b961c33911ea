"""Tiny demo-like cells whose records must not change when the learners get cheaper.

``cost_golden.json`` holds the records of these cells computed by the code before the speed-ups
(issue 23: the main branch at 0830af4, run as
``PYTHONPATH=/work/main SIMLAB_CACHE=/tmp/golden python3 tests/cost_cells.py``, which writes
the file; this module was ``tests/cost_cells.py`` then and runs the same way as
``tests/helpers/cost.py``); ``test_cost.py`` recomputes them with the current code and bounds
the difference.
Each cell has what makes the demo's cells expensive: group memory, the shots grid in episodes,
several inner steps. The cells run frozen after the warm-up (``online=False``) and compare the
grid's step counts only, because the protocol of issue 18 changed what online meta-fits see
and added each learner's scored step count to the grid; the warm-up meta-fit and the scoring
are the same in both protocols, so the records isolate the learners' arithmetic.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).resolve().parents[1] / "cost_golden.json"

SCENARIO: dict[str, Any] = {
    "name": "tiny_cost",
    "dynamics": {"family": "opinion"},
    "graph": {"kind": "planted_partition", "n_groups": 4, "group_size": 40, "mean_degree": 6},
    "survey": {"waves": 5, "every": 2, "support": 6, "query": 8},
    "burn_in": 4,
    "evaluation": {"warmup": 2, "shots": [3, 6], "steps": [0, 1, 3], "seeds": 1,
                   "learners": ["maml"]},
}
#: learner -> hyperparameters (second order, memory, several inner steps)
CELLS: dict[str, dict[str, Any]] = {
    "maml": {"hidden": [8, 8], "inner_lr": 0.05, "inner_steps": 2, "memory": 1},
    "fomaml": {"hidden": [8], "inner_lr": 0.05, "inner_steps": 2},
    "metasgd": {"hidden": [8], "inner_lr": 0.05},
    "anil": {"hidden": [8], "inner_lr": 0.1, "inner_steps": 3, "memory": 2},
    "reptile": {"hidden": [8], "inner_optimizer": "adam", "inner_steps": 3},
    "meta_lstm": {"hidden": [6], "inner_steps": 3, "memory": 1},
    "protonet": {"hidden": [8], "embed_dim": 4, "memory": 1, "class_prior": True,
                 "learn_temperature": True},
}
METRICS = ("loss", "accuracy", "excess_loss")


def run(learner: str) -> list[list[Any]]:
    """Records ``[wave, shots, steps, metric, value]`` of one tiny cell (seed 0)."""
    from simlab.evaluation.protocol import evaluate
    from simlab.experiment.config import Scenario
    from simlab.learners.base import Budget
    from simlab.learners.registry import make_learner

    stream = Scenario.from_dict(SCENARIO).stream(0)
    made = make_learner(learner, **{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in CELLS[learner].items()})
    res = evaluate(made, stream, warmup=2, shots=[3, 6], steps=[0, 1, 3],
                   budget=Budget(5, 4), warmup_budget=Budget(20, 4), online=False, seed=0)
    rec = res.records[res.records["metric"].isin(METRICS) & res.records["steps"].isin([0, 1, 3])
                      ].sort_values(
        ["metric", "wave", "shots", "steps"])
    return [[int(r.wave), int(r.shots), int(r.steps), r.metric, float(r.value)]
            for r in rec.itertuples()]


if __name__ == "__main__":
    import simlab

    out = {"simlab": str(Path(simlab.__file__).parent), "cells": CELLS, "scenario": SCENARIO,
           "records": {name: run(name) for name in CELLS}}
    GOLDEN.write_text(json.dumps(out, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {GOLDEN} from {out['simlab']}", file=sys.stderr)
