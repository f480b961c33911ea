"""Numbers unchanged: run the same small set of sweep cells on this checkout and on a git ref,
and compare their per-wave records exactly.

Why: a refactor (moving the protocol's settings, splitting modules) must not change a single
number. The script checks the ref out into a temporary ``git worktree``, runs each tree's own
code on each tree's own scenario files in a subprocess (``PYTHONPATH`` = that tree, torch on
one thread, a fresh stream cache per tree), and compares, cell by cell, the records (every
metric but the timings: loss, prevalence error, accuracy, excess loss, diverged, ...), the run
summaries (but the timings) and what tuning chose (every trial's parameters, values and
states). The cells go through the sweep's own code paths (``plan_cells``, ``tune_learner``,
``run_cell``), so the settings plumbing from scenario file to protocol is exercised:

* the demo scenario (``opinion_shift``), reduced (100 agents a community, one seed, short
  budgets, 3 tuning trials): maml, protonet, partial_pooling, cpd:partial_pooling,
  persistence, oracle, every one tuned;
* a response-kinds scenario (``response_threshold``), reduced and untuned;
* the GSS happiness survey (``gss_happiness``), one seed, short budgets, its own tuning table
  (the full search: 24 trials) for partial pooling and the naive forecast, 3 trials for MAML.

Prints "identical" or the differences (exit status 1). A few minutes on 2 cores:

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python3 bench/records_unchanged.py [--ref REF]

``--ref`` defaults to the commit this branch forked from main (``git merge-base HEAD main``).
"""
from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: (scenario file, overrides, learners, seeds): the cells compared
CASES: list[tuple[str, dict[str, Any], list[str], list[int]]] = [
    ("opinion_shift", {
        "graph": {"group_size": 100},
        "evaluation": {
            "warmup_budget": {"iterations": 60, "eval_every": 20, "seconds": 120},
            "budget": {"iterations": 4},
            "tuning": {"trials": 3, "startup": 2, "rungs": 2, "folds": 2,
                       "budget": {"iterations": 18}}}},
     ["maml", "protonet", "partial_pooling", "cpd:partial_pooling", "persistence", "oracle"],
     [0]),
    ("response_threshold", {
        "graph": {"group_size": 100},
        "evaluation": {"warmup_budget": {"iterations": 40, "eval_every": 20, "seconds": 120},
                       "budget": {"iterations": 4}, "tuning": False}},
     ["maml", "partial_pooling", "group_mean", "oracle"], [0]),
    ("gss_happiness", {"evaluation": {"budget": {"iterations": 6}}},
     ["partial_pooling", "persistence"], [0]),
    ("gss_happiness", {"name": "gss_happiness_maml",
                       "evaluation": {"budget": {"iterations": 6},
                                      "tuning": {"trials": 3, "startup": 2}}},
     ["maml"], [0]),
]

#: what one tree runs (its own simlab, its own scenario files); writes a pickle
RUNNER = r'''
import dataclasses, pickle, sys, time, warnings
import torch
torch.set_num_threads(1)
warnings.simplefilter("ignore")
from simlab.experiment.config import load_scenario
from simlab.experiment.sweep import LearnerSpec, TuningJob, plan_cells, run_cell, tune_learner

cases, out_path, cache = pickle.loads(bytes.fromhex(sys.argv[1])), sys.argv[2], sys.argv[3]
out = {}
for file, overrides, learners, seeds in cases:
    sc = load_scenario(f"scenarios/{file}.toml").override(overrides)
    jobs = plan_cells([sc], [LearnerSpec(n) for n in learners], seeds)
    tuned = {}
    for job in jobs:
        t0 = time.process_time()
        job = dataclasses.replace(job, cache_dir=cache)
        if job.space is not None:
            if job.cell.label not in tuned:
                tuned[job.cell.label] = tune_learner(TuningJob.of(job))
            job = dataclasses.replace(job, tuned=tuned[job.cell.label])
        res = run_cell(job).result
        key = f"{sc.name} {job.cell.label} seed {job.cell.seed}"
        if not hasattr(res, "records"):
            out[key] = {"error": res.message}
            continue
        rec = res.records[~res.records["metric"].str.contains("seconds")]
        rec = rec.sort_values(["metric", "wave", "shots", "steps"], kind="stable")
        summary = {k: v for k, v in res.summary.items() if "second" not in k and not
                   k.endswith("_s")}
        tune = res.log.get("tuning")
        trials = None if tune is None else (tune["best_params"], [
            (t["params"], t["value"], t["state"], t["rungs"]) for t in tune["trace"]])
        out[key] = {"records": rec.reset_index(drop=True), "summary": summary,
                    "status": res.status, "tuning": trials}
        print(f"  {key}: {res.status} ({time.process_time() - t0:.0f} CPU s incl. tuning)",
              flush=True)
with open(out_path, "wb") as f:
    pickle.dump(out, f)
'''


def run_tree(tree: Path, label: str, workdir: Path) -> dict[str, Any]:
    """The cells' results computed by the simlab in ``tree``."""
    out, cache = workdir / f"{label}.pkl", workdir / f"cache-{label}"
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "SIMLAB_CACHE": str(cache)}
    t0 = time.perf_counter()
    print(f"{label}: {tree}", flush=True)
    subprocess.run([sys.executable, "-c", RUNNER, pickle.dumps(CASES).hex(), str(out),
                    str(cache / "streams")], cwd=tree, env=env, check=True)
    print(f"{label}: {time.perf_counter() - t0:.0f} s", flush=True)
    with open(out, "rb") as f:
        return pickle.load(f)


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Every way the two trees' cells differ (empty: identical)."""
    import pandas as pd

    diffs = [f"{k}: only in {'ref' if k in old else 'this checkout'}"
             for k in sorted(set(old) ^ set(new))]
    for key in sorted(set(old) & set(new)):
        a, b = old[key], new[key]
        if "error" in a or "error" in b:
            if a != b:
                diffs.append(f"{key}: {a.get('error', 'ok')} vs {b.get('error', 'ok')}")
            continue
        try:
            pd.testing.assert_frame_equal(a["records"], b["records"], check_exact=True)
        except AssertionError as err:
            diffs.append(f"{key}: records differ: {str(err).splitlines()[0:6]}")
        for part in ("summary", "status", "tuning"):
            if repr(a[part]) != repr(b[part]):      # repr: NaN == NaN, floats bit-exact
                diffs.append(f"{key}: {part} differs:\n    ref  {a[part]!r}\n    here "
                             f"{b[part]!r}")
    return diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default=None, help="git ref to compare with (default: the "
                    "merge-base of HEAD and main)")
    args = ap.parse_args()
    ref = args.ref or subprocess.run(["git", "merge-base", "HEAD", "main"], cwd=ROOT,
                                     check=True, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="records-unchanged-") as tmp:
        work, tree = Path(tmp), Path(tmp) / "ref"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree), ref],
                       cwd=ROOT, check=True)
        try:
            old = run_tree(tree, "ref", work)
            new = run_tree(ROOT, "here", work)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           check=False)
    diffs = differences(old, new)
    n_rows = sum(len(c["records"]) for c in new.values() if "records" in c)
    print(f"{len(new)} cells, {n_rows} record rows, ref {ref[:12]} vs {ROOT}")
    print("identical" if not diffs else "\n".join(diffs))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
