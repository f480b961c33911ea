"""Benchmark (run by hand, not a test): vectorised opinion society vs the per-agent Mesa version.

    python bench/society.py              # 1k, 10k, 100k agents + the 1,000,000-agent memory run
    python bench/society.py --sizes 1000 --no-million

Both models run the same dynamics on the same planted-partition graph (mean degree 10,
homophily 0.8, groups of 1,000); build time is excluded, only ``step`` is timed. The per-agent
version runs fewer ticks at larger sizes to keep the wall time sane (ticks cost the same).
Targets: >= 15 M agent-steps/s at 100k agents and >= 30x the per-agent version. The
1,000,000-agent build + step + survey runs in a fresh child process, so its peak resident
memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own; target < 4 GiB.
"""
from __future__ import annotations

import argparse
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

from simlab.society.graphs import planted_partition  # noqa: E402
from simlab.society.opinion import OpinionParams, OpinionSociety  # noqa: E402
from simlab.society.population import PopulationSpec, make_population  # noqa: E402
from simlab.society.survey import SurveyDesign, sample_wave  # noqa: E402

GROUP = 1000
PARAMS = OpinionParams(eps=0.3, anchoring=0.2, media_push=0.02)


def build(n: int, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    graph = planted_partition(max(1, n // GROUP), min(n, GROUP), 10.0, 0.8, rng)
    pop = make_population(graph.groups, graph.n_groups, PopulationSpec(), rng)
    return graph, pop


def steps_per_second(model, ticks: int, n: int) -> float:
    model.step()  # warm caches and buffers
    start = time.perf_counter()
    for _ in range(ticks):
        model.step()
    return n * ticks / (time.perf_counter() - start)


def compare(n: int, fast_ticks: int, slow_ticks: int) -> tuple[float, float, float]:
    graph, pop = build(n)
    fast = OpinionSociety(graph, pop, PARAMS, rng=1)
    slow = PerAgentOpinionModel(graph, pop, PARAMS, rng=1)
    for _ in range(3):
        fast.step()
        slow.step()
    diff = float(np.abs(fast.opinion - slow.opinions()).max())
    return steps_per_second(fast, fast_ticks, n), steps_per_second(slow, slow_ticks, n), diff


def million(n: int = 1_000_000) -> None:
    """Child process: build, step and survey an n-agent society; print timings and peak RSS."""
    t0 = time.perf_counter()
    graph, pop = build(n)
    society = OpinionSociety(graph, pop, PARAMS, rng=1)
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
          f"{len(people)} Persons materialised")
    print(f"  build {t1 - t0:.1f} s, 5 steps {t2 - t1:.2f} s "
          f"({5 * n / (t2 - t1) / 1e6:.1f} M agent-steps/s), survey {t3 - t2:.2f} s")
    print(f"  peak resident memory {peak:.2f} GiB (target < 4 GiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1_000, 10_000, 100_000])
    ap.add_argument("--no-million", action="store_true")
    ap.add_argument("--million-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.million_child:
        million()
        return
    print(f"python {platform.python_version()}, mesa {mesa.__version__}, numpy {np.__version__}")
    print(f"{'agents':>8} {'vectorised':>14} {'per-agent':>14} {'ratio':>7} {'max |diff|':>11}")
    plan = {1_000: (500, 20), 10_000: (200, 5), 100_000: (50, 2)}
    for n in args.sizes:
        fast_ticks, slow_ticks = plan.get(n, (20, 2))
        fast, slow, diff = compare(n, fast_ticks, slow_ticks)
        print(f"{n:>8,} {fast / 1e6:>10.2f} M/s {slow / 1e6:>10.3f} M/s {fast / slow:>6.0f}x "
              f"{diff:>11.1e}")
    if not args.no_million:
        print("1,000,000-agent society (fresh process):")
        subprocess.run([sys.executable, __file__, "--million-child"], check=True)


if __name__ == "__main__":
    main()
