"""One demo cell, run the way ``simlab demo`` runs it, for the cost benchmarks.

A demo cell is ``evaluate(learner, stream, opinion_shift.protocol(), seed=seed)`` (what
``experiment.sweep.run_cell`` does) with the hyperparameters the demo's tuning chose
(``reports/demo/report.md``, "Tuning"; rounded to the 3 digits shown there). Tuning itself is
not run: it is shared by all the seeds of a learner, the cell is what each seed pays.

Used by ``bench/profile_cell.py`` and ``bench/cell_cost.py``; also runnable on its own, so
that ``cell_cost.py`` can run it against another checkout of simlab (``PYTHONPATH=/work/main``,
the code before the speed-ups) and compare:

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python3 bench/demo_cell.py maml [--scale 0.25] [--json]

``--json`` prints the cell's CPU seconds (meta-fit, adapt, total) and a digest of its
records (every metric but the timings, rounded to nothing: bit-for-bit), so two code paths
can be checked to give the same numbers.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from typing import Any

import numpy as np
import torch

#: what the demo's tuning chose (reports/demo/report.md); meta_lstm's hidden=[20] is the
#: scenario's [learners.meta_lstm] table
DEMO_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "maml": {"hidden": (40, 40), "inner_lr": 0.063, "inner_steps": 4, "memory": 1,
             "outer_lr": 0.000263},
    "anil": {"hidden": (20,), "inner_lr": 0.137, "inner_steps": 3, "memory": 4,
             "outer_lr": 0.00137},
    "protonet": {"class_prior": True, "embed_dim": 16, "learn_temperature": True, "memory": 2,
                 "meta_lr": 0.00137, "temperature": 59.8},
    "meta_lstm": {"hidden": (20,), "inner_steps": 6, "memory": 4, "meta_lr": 0.00137},
}
LEARNERS = tuple(DEMO_HYPERPARAMETERS)
SCENARIO = "opinion_shift"
#: record metrics that are wall or CPU times (they differ run to run; not in the digest)
TIMING_METRICS = ("meta_fit_seconds", "meta_fit_cpu_seconds", "adapt_seconds",
                  "adapt_cpu_seconds")


def scaled(budget: Any, scale: float) -> Any:
    """A ``Budget`` with ``scale`` times the iterations (at least 1)."""
    if budget is None or scale == 1.0:
        return budget
    return dataclasses.replace(budget, iterations=max(1, round(budget.iterations * scale)))


def cell_setup(learner: str, seed: int = 0, scale: float = 1.0, device: str = "cpu",
               overrides: dict[str, Any] | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """(learner, stream, evaluate kwargs) of one demo cell; ``scale`` shrinks both budgets'
    iterations (1 = the demo's: 400 warm-up, 40 per online wave)."""
    from simlab.experiment.config import load_scenario
    from simlab.learners.registry import make_learner

    sc = load_scenario(SCENARIO)
    stream = sc.stream(seed)
    if hasattr(sc, "protocol"):         # simlab.settings.ProtocolSettings
        settings = sc.protocol()
        settings = dataclasses.replace(settings, budget=scaled(settings.budget, scale),
                                       warmup_budget=scaled(settings.warmup_budget, scale))
        kw: dict[str, Any] = {"settings": settings, "seed": seed, "device": device}
    else:                               # a checkout from before simlab.settings
        from simlab.experiment.sweep import evaluate_kwargs

        kw = evaluate_kwargs(sc, seed, device)
        kw["budget"], kw["warmup_budget"] = scaled(kw["budget"], scale), scaled(
            kw["warmup_budget"], scale)
    made = make_learner(learner, **{**DEMO_HYPERPARAMETERS[learner], **(overrides or {})})
    return made, stream, kw


def records_digest(records: Any) -> str:
    """sha256 of the records without the timing metrics, values bit-for-bit."""
    rec = records[~records["metric"].isin(TIMING_METRICS)].sort_values(
        ["metric", "wave", "shots", "steps"], kind="stable")
    h = hashlib.sha256()
    for col in ("wave", "shots", "steps"):
        h.update(rec[col].to_numpy(np.int64).tobytes())
    h.update("|".join(rec["metric"]).encode())
    h.update(np.ascontiguousarray(rec["value"].to_numpy(np.float64)).tobytes())
    return h.hexdigest()


def run_cell(learner: str, seed: int = 0, scale: float = 1.0, device: str = "cpu",
             overrides: dict[str, Any] | None = None, records: str | None = None
             ) -> dict[str, Any]:
    """Run one demo cell; its CPU seconds (the protocol's timings) and records digest
    (``records``: also write the records but the timings to this CSV file)."""
    from simlab.evaluation.protocol import evaluate

    made, stream, kw = cell_setup(learner, seed, scale, device, overrides)
    c0, t0 = time.process_time(), time.perf_counter()
    result = evaluate(made, stream, **kw)
    if records:
        rec = result.records
        rec[~rec["metric"].isin(TIMING_METRICS)].to_csv(records, index=False, float_format="%.17g")
    return {"learner": learner, "seed": seed, "scale": scale, "device": device,
            "cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - t0,
            "meta_fit_cpu_s": result.timings["meta_fit_cpu_s"],
            "adapt_cpu_s": result.timings["adapt_cpu_s"],
            "status": result.status, "digest": records_digest(result.records),
            "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("learner", choices=LEARNERS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, default=1.0,
                   help="budget iterations x this (default 1: the demo's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="override a hyperparameter, e.g. --set compile=true")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.add_argument("--records", default=None, metavar="CSV",
                   help="write the records (but the timings) here")
    args = p.parse_args(argv)
    over = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    out = run_cell(args.learner, args.seed, args.scale, args.device, over, args.records)
    out["simlab"] = os.path.dirname(sys.modules["simlab"].__file__)
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:<16} {v:.3f}" if isinstance(v, float) else f"{k:<16} {v}")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    sys.exit(main())
