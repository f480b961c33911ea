"""How long ``Store.frames`` takes on a store of 10,000 runs (issue 21: logs with non-finite
numbers). A run's log is now strict JSON (non-finite numbers stored as null), so SQLite's
``json_extract`` reads the log columns; a store written before holds bare ``NaN`` tokens, which
SQLite refuses, and is then parsed in Python. Printed: seconds for each kind of store (median
of 3).

    python bench/store_frames.py [--runs 10000]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from simlab.experiment.store import Store


def build(path: Path, runs: int, nan_tokens: bool) -> None:
    """A store of ``runs`` runs whose logs hold 20 waves of meta-fit numbers and wave times."""
    log = {"meta_fit": [{"wave": w, "loss": 0.5, "grad_norm": 1.2} for w in range(20)],
           "divergence": [], "chunked": [], "wave_times": [str(1990 + w) for w in range(20)],
           "prevalence": "census"}
    text = json.dumps(log)
    if nan_tokens:
        text = text.replace("0.5", "NaN", 1)
    rows = [(f"k{i}", "sc", "fp", i % 50, f"l{i // 50}", "scratch", "{}", "cpu", "1", "ok",
             None, "t", "t", 1.0, "{}", text) for i in range(runs)]
    with Store(path) as store, store._transaction() as con:
        con.executemany(
            "INSERT INTO runs (key, scenario, fingerprint, seed, learner, learner_name, "
            "hyperparameters, device, version, status, error, started, finished, seconds, "
            "timings, log) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for nan_tokens in (False, True):
            path = Path(tmp) / f"nan{int(nan_tokens)}.db"
            build(path, args.runs, nan_tokens)
            times = []
            for _ in range(3):
                with Store(path, create=False) as store:
                    t0 = time.perf_counter()
                    store.frames(latest=False)
                    times.append(time.perf_counter() - t0)
            kind = "older store, bare NaN tokens (parsed in Python)" if nan_tokens else \
                "strict JSON logs (json_extract)"
            print(f"{args.runs:,} runs, {kind}: {statistics.median(times):.3f} s")


if __name__ == "__main__":
    main()
