"""Benchmark (run by hand, not a test): how the lab's costs grow, as fitted power laws.

    python bench/scaling.py                   # agents 1k-1M, waves 10-200, groups 10-1,000,
                                              # runs 10-1,000 (a few minutes)
    python bench/scaling.py --runs 10 100 1000 10000 --only report   # the 10,000-run store
    python bench/scaling.py --quick           # smaller grids (about a minute)
    python bench/scaling.py --report-runs 1000 10000   # one report build per store size:
                                              # wall and CPU seconds (about a minute)

Four curves, each timed in this process on the active society-kernel path:

* stream generation (``Scenario.generate_stream``: build the society, tick, survey) against
  agents (10 groups, 10 waves), waves (10,000 agents) and groups (100,000 agents, so groups
  get smaller as they get more numerous);
* one learner's prequential run (``partial_pooling``, 1 meta-fit iteration, torch on one
  thread as in a sweep worker) against the stream's waves (10 groups) and groups (10 waves);
* ``simlab report`` (``report_from_store``) against the runs in a store, the store made
  synthetic: one real 6-run sweep, then its rows copied in SQL with new seeds and jittered
  values (seconds for 10,000 runs).

Each row of the table: the sizes, the seconds, the exponent b of ``seconds ~ a * size^b``
(least squares on the log-log points; 1 = linear) and where the time goes at the second
largest size (the functions with the most own time under cProfile, share of the total).
"""
from __future__ import annotations

import argparse
import cProfile
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pstats

from simlab.experiment.config import Scenario
from simlab.experiment.executors import single_thread
from simlab.experiment.sweep import run_sweep
from simlab.learners.registry import make_learner
from simlab.report import report_from_store
from simlab.society import kernels

BASE = {
    "name": "scaling",
    "dynamics": {"family": "opinion", "params": {"media_push": 0.02}},
    "graph": {"kind": "planted_partition", "n_groups": 10, "group_size": 100,
              "mean_degree": 10.0, "homophily": 0.8},
    "survey": {"waves": 10, "every": 1, "support": 10, "query": 20},
    "burn_in": 5,
    "evaluation": {"warmup": 3, "shots": [2, 5], "steps": [0, 1], "seeds": 1,
                   "learners": ["partial_pooling"],
                   "budget": {"iterations": 1, "meta_batch": 4}},
}


def scenario(agents: int = 1_000, groups: int = 10, waves: int = 10) -> Scenario:
    cfg = {**BASE, "graph": {**BASE["graph"], "n_groups": groups,
                             "group_size": max(40, agents // groups)},
           "survey": {**BASE["survey"], "waves": waves}}
    return Scenario.from_dict(cfg)


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def profiled(fn: Callable[[], object]) -> pstats.Stats:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    return pstats.Stats(prof)


def where(stats: pstats.Stats, top: int = 3) -> str:
    """The ``top`` functions by own time, with their share of the profiled total."""
    rows = [(v[2], f"{Path(k[0]).stem}.{k[2]}") for k, v in stats.stats.items()]
    total = sum(t for t, _ in rows) or 1.0
    rows.sort(reverse=True)
    return ", ".join(f"{name.replace('~.', '')} {100 * t / total:.0f}%"
                     for t, name in rows[:top])


def exponent(sizes: list[int], seconds: list[float]) -> float:
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def curve(label: str, sizes: list[int], make: Callable[[int], Callable[[], object]]) -> None:
    """Time every size (after one untimed call at the smallest: imports, JIT cache loads);
    profile the second largest (a profile of the largest would cost as much again) to say
    where the time goes."""
    make(sizes[0])()
    seconds = [timed(make(n)) for n in sizes]
    probe = sizes[-2] if len(sizes) > 1 else sizes[-1]
    stats = profiled(make(probe))
    cells = " ".join(f"{n:,}:{s:.2f}s" for n, s in zip(sizes, seconds))
    print(f"{label:<28} {exponent(sizes, seconds):>5.2f}  {cells}")
    print(f"{'':<28}        time at {probe:,}: {where(stats)}", flush=True)


def learner_run(sc: Scenario) -> Callable[[], object]:
    from simlab.evaluation.protocol import evaluate

    stream = sc.generate_stream(0)
    settings = sc.protocol()
    return lambda: evaluate(make_learner("partial_pooling"), stream, settings, seed=0)


# --- a synthetic store of many runs -------------------------------------------------------------
def base_store(path: Path) -> None:
    """A real 6-run store (3 learners x 2 seeds) to copy from."""
    sc = Scenario.from_dict({**BASE, "survey": {**BASE["survey"], "waves": 12}})
    summary = run_sweep(sc, learners=["scratch", "oracle", "partial_pooling"], seeds=2,
                        store=path, executor="inline", quiet=True)
    if summary.failed:
        raise RuntimeError(f"the base sweep failed: {summary}")


def synthetic_store(base: Path, path: Path, n_runs: int) -> None:
    """Copy ``base``'s runs (with their metrics, summaries and shifts) until ``n_runs``: copy c
    gets run ids shifted by c*R and seeds by c*S, values jittered by up to 2% (so seeds differ)."""
    shutil.copy(base, path)
    con = sqlite3.connect(path)
    r = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    s = con.execute("SELECT COUNT(DISTINCT seed) FROM runs").fetchone()[0]
    copies = -(-n_runs // r)
    cols = [c[1] for c in con.execute("PRAGMA table_info(runs)")]
    rest = [c for c in cols if c not in ("run_id", "key", "seed")]
    cte = ("WITH RECURSIVE cp(c) AS (SELECT 1 UNION ALL SELECT c + 1 FROM cp "
           f"WHERE c < {copies - 1})")
    jitter = "(1.0 + (abs(random()) % 2000) / 100000.0)"
    with con:
        if copies > 1:
            con.execute(f"{cte} INSERT INTO runs (run_id, key, seed, {', '.join(rest)}) "
                        f"SELECT run_id + c * {r}, key || '-' || c, seed + c * {s}, "
                        f"{', '.join(rest)} FROM runs, cp WHERE run_id <= {r}")
            con.execute(f"{cte} INSERT INTO metrics SELECT run_id + c * {r}, wave, shots, "
                        f"steps, metric, value * {jitter} FROM metrics, cp WHERE run_id <= {r}")
            con.execute(f"{cte} INSERT INTO summaries SELECT run_id + c * {r}, name, "
                        f"value * {jitter} FROM summaries, cp WHERE run_id <= {r}")
            con.execute(f"{cte} INSERT INTO shifts SELECT fingerprint, seed + c * {s}, wave, "
                        f"tick, kind, name, target, size FROM shifts, cp WHERE seed < {s}")
        for table in ("runs", "metrics", "summaries"):
            con.execute(f"DELETE FROM {table} WHERE run_id > {n_runs}")
    con.execute("VACUUM")
    con.close()


def report_build(base: Path, tmp: Path, n_runs: int) -> Callable[[], object]:
    path = tmp / f"store-{n_runs}.db"
    t0 = time.perf_counter()
    synthetic_store(base, path, n_runs)
    rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    print(f"{'':<28}        (store of {n_runs:,} runs, {rows:,} metric rows, made in "
          f"{time.perf_counter() - t0:.1f} s)", flush=True)
    return lambda: report_from_store(path, tmp / f"report-{n_runs}")


def report_costs(sizes: list[int]) -> None:
    """One ``report_from_store`` build per store size (after one untimed build at the smallest:
    imports), its wall and CPU seconds (``time.process_time``: every thread of this process)
    -- the issue-14 target is <= 30 s at 10,000 runs on 2 cores."""
    print(f"{'report build (stored runs)':<28} {'runs':>7} {'metric rows':>12} {'wall s':>7} "
          f"{'CPU s':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base.db"
        base_store(base)
        report_build(base, Path(tmp), sizes[0])()
        for n in sizes:
            build = report_build(base, Path(tmp), n)
            rows = sqlite3.connect(Path(tmp) / f"store-{n}.db").execute(
                "SELECT COUNT(*) FROM metrics").fetchone()[0]
            t0, c0 = time.perf_counter(), time.process_time()
            build()
            print(f"{'':<28} {n:>7,} {rows:>12,} {time.perf_counter() - t0:>7.1f} "
                  f"{time.process_time() - c0:>7.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller grids (about a minute)")
    ap.add_argument("--runs", type=int, nargs="*", default=None,
                    help="stored-run counts for the report curve (default 10 100 1000; "
                         "10000 adds minutes)")
    ap.add_argument("--only", nargs="*", default=["stream", "learner", "report"],
                    choices=["stream", "learner", "report"])
    ap.add_argument("--report-runs", type=int, nargs="+", default=None, metavar="N",
                    help="only time one report build per store of N runs (wall and CPU s)")
    args = ap.parse_args()
    if args.report_runs:
        if min(args.report_runs) < 1:
            raise SystemExit(f"--report-runs {args.report_runs}: every N must be >= 1")
        report_costs(sorted(args.report_runs))
        return
    q = args.quick
    single_thread()                      # as in a sweep worker: torch and kernels on 1 thread
    agents = [1_000, 10_000, 100_000] if q else [1_000, 10_000, 100_000, 1_000_000]
    waves = [10, 50] if q else [10, 50, 200]
    groups = [10, 100] if q else [10, 100, 1_000]
    l_waves = [10, 20] if q else [10, 20, 50]
    l_groups = [10, 30] if q else [10, 30, 100]
    runs = args.runs or ([10, 100] if q else [10, 100, 1_000])
    print(f"{kernels.describe()}; python {sys.version.split()[0]}")
    print(f"{'what (against)':<28} {'exp.':>5}  size:seconds")
    if "stream" in args.only:
        curve("stream generation (agents)", agents,
              lambda n: lambda: scenario(agents=n).generate_stream(0))
        curve("stream generation (waves)", waves,
              lambda n: lambda: scenario(agents=10_000, waves=n).generate_stream(0))
        curve("stream generation (groups)", groups,
              lambda n: lambda: scenario(agents=100_000, groups=n).generate_stream(0))
    if "learner" in args.only:
        curve("partial_pooling run (waves)", l_waves,
              lambda n: learner_run(scenario(waves=n)))
        curve("partial_pooling run (groups)", l_groups,
              lambda n: learner_run(scenario(agents=40 * n, groups=n)))
    if "report" in args.only:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp) / "base.db"
            base_store(base)
            curve("report build (stored runs)", runs,
                  lambda n: report_build(base, Path(tmp), n))


if __name__ == "__main__":
    main()
