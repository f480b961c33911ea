"""Population cells for MRP (issue 11): what ``survey.population_cells`` costs and buys.

1. Cost. ``scenarios/opinion_shift.toml`` (10 groups of 500, 20 waves), seed 0, generated with
   ``survey.population_cells = M`` for M in 0 (no cells: the stream as before), 32, 64 (the
   default), 128, 500 (every member): best-of-3 generation seconds and the stream file's bytes.
2. Benefit. The gap between the cells' own mean true probability and the group's exact
   prevalence (what an oracle-perfect learner would still score as prevalence error), for the
   systematic sample ordered by the true probability that simlab draws and for a simple random
   sample of the same size (50 draws x 10 groups, the society after 60 ticks).

    python bench/poststrat_cells.py
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

import simlab
from simlab.experiment.config import Scenario
from simlab.society.run import build_society, seed_streams
from simlab.tasks.stream import save_stream

SIZES = (0, 32, 64, 128, 500)


def cost(base: Scenario, folder: Path) -> None:
    print("population_cells  generate s (best of 3)  file bytes  vs none")
    first = None
    for m in SIZES:
        data = base.model_dump(mode="json")
        data["survey"]["population_cells"] = m
        sc = Scenario.from_dict(data)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            stream = sc.generate_stream(0)
            times.append(time.perf_counter() - t0)
        size = os.path.getsize(save_stream(stream, folder / f"m{m}.npz"))
        first = first or size
        print(f"{m:>16}  {min(times):>22.2f}  {size:>10,}  {size / first:>6.2f}x")


def gap(base: Scenario) -> None:
    spec = base.society_spec()
    soc = build_society(spec, seed_streams(0))
    for _ in range(60):
        soc.step()
    rng = np.random.default_rng(1)
    print("\ncells M  |cells' - group's true prevalence|: systematic (sorted)  simple random")
    for m in SIZES[1:-1]:
        sys_gap, srs_gap = [], []
        for _ in range(50):
            for g in range(soc.social.n_groups):
                p = np.sort(soc.oracle(soc.social.members(g)))
                step = len(p) / m
                pos = np.floor(rng.uniform(0, step) + step * np.arange(m)).astype(int)
                sys_gap.append(abs(p[pos].mean() - p.mean()))
                srs_gap.append(abs(rng.choice(p, m, replace=False).mean() - p.mean()))
        print(f"{m:>7}  {np.mean(sys_gap):>45.4f}  {np.mean(srs_gap):>13.4f}")


def main() -> None:
    base = simlab.load_scenario("scenarios/opinion_shift.toml")
    base.generate_stream(0)                          # warm: imports, numba compilation
    with tempfile.TemporaryDirectory() as tmp:
        cost(base, Path(tmp))
    gap(base)


if __name__ == "__main__":
    main()
