"""Benchmark (run by hand, not a test): the society tick on its two paths, in one run.

    python bench/society.py                      # 1k, 10k, 100k agents, every family, + 1M
    python bench/society.py --sizes 100000 --families opinion --no-million
    python bench/society.py --ten-million        # also build, 5 ticks, survey at 10,000,000

For each family and size: the numpy reference tick and the fused numba tick
(``simlab.society.kernels``) of the same society, and for the opinion model also the
idiomatic per-agent Mesa version (bench/per_agent_opinion.py), all in this process, so the
ratios compare like with like on the same (possibly shared) machine: the two paths' societies
step in turn, tick by tick, so both see the same load. Speed is agent-steps per second of
wall time from the median tick (robust to other work on the machine); build time is
excluded. ``same`` says whether the two paths ended in identical states. All families run on
the same planted-partition graph (mean degree 10, homophily 0.8, groups of 1,000).

Targets (100k agents, 2 cores): opinion >= 25 M agent-steps/s fused, every family >= 2x its
numpy tick; the 1,000,000-agent society < 1 GiB and the 10,000,000-agent one < 8 GiB of peak
resident memory (each run in a fresh child process, so ``ru_maxrss`` is its own).
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import mesa
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from per_agent_opinion import PerAgentOpinionModel  # noqa: E402

from simlab.society import kernels, society_class  # noqa: E402
from simlab.society.graphs import planted_partition  # noqa: E402
from simlab.society.population import PopulationSpec, make_population  # noqa: E402
from simlab.society.survey import SurveyDesign, sample_wave  # noqa: E402

GROUP = 1000
PARAMS: dict[str, dict] = {
    "opinion": dict(eps=0.3, anchoring=0.2, media_push=0.02),
    "contagion": dict(p_innovation=0.01, threshold_mean=0.3),
    "epidemic": dict(beta=0.08, seed_infected=0.01, import_rate=0.001),
    "coevolving": dict(phi=0.5, act_share=0.05),
}
PLAN = {1_000: (200, 10), 10_000: (60, 3), 100_000: (20, 1)}
"""agents -> (ticks timed per path, ticks of the per-agent version)."""


def build(n: int, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    graph = planted_partition(max(1, n // GROUP), min(n, GROUP), 10.0, 0.8, rng)
    pop = make_population(graph.groups, graph.n_groups, PopulationSpec(), rng)
    return graph, pop


def median_tick(model, ticks: int) -> float:
    """Median wall seconds of one ``step`` (after one untimed step: caches, JIT load)."""
    model.step()
    times = []
    for _ in range(ticks):
        t0 = time.perf_counter()
        model.step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _final_state(society) -> list[np.ndarray]:
    return [np.asarray(getattr(society, name)) for name in society.state_names]


def lockstep_ticks(societies: dict[str, object], ticks: int) -> dict[str, float]:
    """Median wall seconds of one ``step`` per kernel path, the paths' societies stepped in
    turn (numpy, numba, numpy, ...): on a shared machine both then see the same load, so
    their ratio does not depend on when the other jobs ran. One untimed step first."""
    times: dict[str, list[float]] = {path: [] for path in societies}
    for t in range(ticks + 1):
        for path, society in societies.items():
            with kernels.use(path):
                t0 = time.perf_counter()
                society.step()
                if t:
                    times[path].append(time.perf_counter() - t0)
    return {path: float(np.median(v)) for path, v in times.items()}


def compare(family: str, n: int, graph, pop) -> dict:
    """Both paths (and, for opinion, the per-agent version) on the same inputs."""
    ticks, slow_ticks = PLAN.get(n, (10, 1))
    cls = society_class(family)
    societies = {}
    for path in ("numpy", "numba"):
        with kernels.use(path):
            societies[path] = cls(graph, pop, cls.Params(**PARAMS[family]), rng=1)
    out: dict = lockstep_ticks(societies, ticks)
    states = {path: _final_state(s) for path, s in societies.items()}
    out["same"] = all(np.array_equal(a, b) for a, b in zip(states["numpy"], states["numba"]))
    if family == "opinion":
        slow = PerAgentOpinionModel(graph, pop, cls.Params(**PARAMS[family]), rng=1)
        out["per_agent"] = median_tick(slow, slow_ticks)
    return out


def big(n: int) -> None:
    """Child process: build, 5 ticks and one survey wave of an n-agent opinion society."""
    from simlab.society.families.opinion import OpinionParams, OpinionSociety

    t0 = time.perf_counter()
    graph, pop = build(n)
    society = OpinionSociety(graph, pop, OpinionParams(**PARAMS["opinion"]), rng=1)
    t1 = time.perf_counter()
    for _ in range(5):
        society.step()
    t2 = time.perf_counter()
    tasks = sample_wave(society, SurveyDesign(support=20, query=100, nonresponse=1.0),
                        0, np.random.default_rng(2))
    people = society.people(np.arange(100))  # materialise a few agents as Mesa agents
    t3 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)
    print(f"  {n:,} agents, {graph.adj.nnz // 2:,} ties, {len(tasks)} groups surveyed, "
          f"{len(people)} Persons materialised, {kernels.describe()}")
    print(f"  build {t1 - t0:.1f} s, 5 steps {t2 - t1:.2f} s "
          f"({5 * n / (t2 - t1) / 1e6:.1f} M agent-steps/s), survey {t3 - t2:.2f} s")
    print(f"  peak resident memory {peak:.2f} GiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1_000, 10_000, 100_000])
    ap.add_argument("--families", nargs="*", default=list(PARAMS), choices=list(PARAMS))
    ap.add_argument("--no-million", action="store_true", help="skip the 1,000,000-agent run")
    ap.add_argument("--ten-million", action="store_true",
                    help="also build, step 5 ticks and survey 10,000,000 agents (minutes)")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        big(args.child)
        return
    if kernels.numba is None:
        sys.exit(f"numba is not importable here ({kernels.NUMBA_ERROR}): nothing to compare")
    print(f"python {platform.python_version()}, mesa {mesa.__version__}, numpy {np.__version__}"
          f", numba {kernels.numba.__version__}, {kernels.threads()} threads "
          f"(SIMLAB_THREADS), {os.cpu_count()} CPUs")
    print(f"{'family':<11}{'agents':>9} {'numpy':>10} {'numba':>10} {'fused/np':>9} "
          f"{'per-agent':>10} {'fused/agent':>12}  same  (M agent-steps/s, median tick)")
    for n in args.sizes:
        graph, pop = build(n)
        for family in args.families:
            r = compare(family, n, graph, pop)
            rate = {k: n / v / 1e6 for k, v in r.items() if k != "same"}
            agent = (f"{rate['per_agent']:>10.3f} {r['per_agent'] / r['numba']:>11.0f}x"
                     if "per_agent" in r else f"{'':>10} {'':>12}")
            print(f"{family:<11}{n:>9,} {rate['numpy']:>10.2f} {rate['numba']:>10.2f} "
                  f"{r['numpy'] / r['numba']:>8.1f}x {agent}  {'yes' if r['same'] else 'NO'}",
                  flush=True)
    runs = ([] if args.no_million else [1_000_000]) + ([10_000_000] if args.ten_million else [])
    for n in runs:
        print(f"{n:,}-agent opinion society (fresh process, fused path):", flush=True)
        subprocess.run([sys.executable, __file__, "--child", str(n)], check=True)


if __name__ == "__main__":
    main()
