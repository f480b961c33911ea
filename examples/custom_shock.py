"""Your own shock schedule on a shipped scenario, compared across a few learners.

The shipped ``opinion_shift`` scenario has a media campaign and an education realignment. Here
we replace its shocks with an *election cycle* (the media signal switches on and off, a regime
shock) and a *scandal* (an abrupt fall of support in every community), then ask which learner
recovers fastest. Only the public API is used: ``load_scenario``, ``Scenario.from_dict``,
``run_sweep`` and ``report_from_store``.

    python examples/custom_shock.py                 # about the size of `simlab demo`
    python examples/custom_shock.py --tiny          # seconds: small society, tiny budget
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from simlab.experiment import Scenario, load_scenario, run_sweep
from simlab.report import report_from_store

LEARNERS = ["scratch", "partial_pooling", "maml", "protonet", "oracle"]
TINY_LEARNERS = ["scratch", "partial_pooling", "oracle"]


def shocks(burn_in: int, every: int, waves: int) -> list[dict[str, Any]]:
    """An election cycle from the first third of the run, a scandal at two thirds.

    Ticks are absolute (wave w is surveyed after tick ``burn_in + (w + 1) * every``), so the
    schedule is written in waves and converted here; it then fits any run length.
    """
    def tick(wave: int) -> int:
        return burn_in + wave * every + 1          # just before wave ``wave`` is surveyed

    third = max(waves // 3, 1)
    return [
        {"kind": "regime", "name": "election_cycle", "target": "media_push",
         "start": tick(third), "period": max(every * 2, 1), "values": [0.15, 0.0]},
        {"kind": "abrupt", "name": "scandal", "target": "intercept",
         "at": tick(2 * third), "delta": -1.5},
    ]


def custom_scenario(tiny: bool = False) -> Scenario:
    """``opinion_shift`` with the shock schedule above (and, for ``tiny``, a small run)."""
    data = load_scenario("opinion_shift").model_dump(mode="json")
    data["name"] = "opinion_custom_shock" + ("_tiny" if tiny else "")
    data["description"] = "opinion_shift with an election cycle and a scandal"
    if tiny:
        data["graph"].update(n_groups=4, group_size=40, mean_degree=6.0)
        data["burn_in"] = 5
        data["survey"].update(waves=6, every=2, support=6, query=10)
        data["evaluation"].update(warmup=2, shots=[3, 6], steps=[0, 2],
                                  budget={"iterations": 3, "meta_batch": 4},
                                  # 2 warm-up waves leave none to early-stop on
                                  warmup_budget={"iterations": 3, "meta_batch": 4})
        if data["evaluation"].get("tuning"):   # one warm-up wave to fit on, one to score
            data["evaluation"]["tuning"].update(folds=1)
    data["shocks"] = shocks(data["burn_in"], data["survey"]["every"], data["survey"]["waves"])
    data["evaluation"]["learners"] = TINY_LEARNERS if tiny else LEARNERS
    data["learners"] = {}
    return Scenario.from_dict(data, source="examples/custom_shock.py")


def main(argv: list[str] | None = None) -> dict[str, Path]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="a seconds-long run (for tests)")
    p.add_argument("--seeds", type=int, default=None, help="seed count (default 3, tiny 1)")
    p.add_argument("--db", default="results/custom_shock.db", help="results store")
    p.add_argument("--out", default="reports/custom_shock", help="report folder")
    p.add_argument("--executor", default="process", choices=("inline", "process", "dask"))
    p.add_argument("--jobs", type=int, default=None, help="worker processes")
    args = p.parse_args(argv)

    scenario = custom_scenario(args.tiny)
    print(f"{scenario.name}: shocks " + ", ".join(f"{s.name} ({s.kind})" for s in scenario.shocks))
    summary = run_sweep(scenario, seeds=args.seeds or (1 if args.tiny else 3), store=args.db,
                        executor=args.executor, jobs=args.jobs, quiet=args.tiny)
    print(summary)
    files = report_from_store(args.db, args.out, scenario.name,
                              "Custom shocks: an election cycle and a scandal")
    print(f"report: {files['html']}")
    return files


if __name__ == "__main__":   # required: the process pool re-imports this file in its workers
    main()
