"""CPU seconds per demo cell before and after the speed-ups of issue 23, in one run.

Run by hand (not a test), from the repository root, on an otherwise quiet machine:

    PYTHONPATH=$PWD python3 bench/cell_cost.py [--before fdf291b] [--scale 1]
        [--learners maml,anil,protonet,meta_lstm] [--repeats 1]

Each cell (``bench/demo_cell.py``: opinion_shift seed 0, the demo's protocol, budgets and
tuned hyperparameters, one thread) runs in a fresh subprocess, once with ``--before`` first on
``PYTHONPATH`` (the code before: a folder holding a checkout, or a commit of this repository,
extracted with ``git archive``; the default, fdf291b, is the main commit the second round of
issue 23 branched from: it has the first round's MAML/ANIL speed-ups. The first round's
baseline, 0830af4, no longer reads the shipped scenario files, whose schema changed with issue
18, so the first round's ratios are those of its own committed run) and once with this
checkout, alternating so that load from other processes hits both alike. Printed per learner:
CPU seconds per cell (the whole
``evaluate`` call: meta-fit, adapt, scoring), the meta-fit part, the ratio before / after, and
whether the records are the same: bit-for-bit (sha256 of every record but the timings) or the
largest absolute difference of each compared metric (loss, accuracy, Brier, excess losses).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LEARNERS = ("maml", "anil", "protonet", "meta_lstm")
#: the main commit the second round of issue 23 branched from (0830af4, the first round's,
#: cannot read today's scenario files)
BEFORE = "fdf291b"
COMPARED = ("loss", "accuracy", "excess_loss", "excess_loss_reachable", "brier")


def one(code: Path, learner: str, scale: float, records: Path, extra: list[str]) -> dict:
    """Run one cell with ``code`` first on the path; its JSON line."""
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    env.setdefault("SIMLAB_CACHE", str(ROOT / ".cache" / "simlab"))
    done = subprocess.run([sys.executable, str(HERE / "demo_cell.py"), learner, "--scale",
                           str(scale), "--json", "--records", str(records), *extra],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{learner} with {code} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(out["simlab"]).resolve() != (code / "simlab").resolve():
        raise SystemExit(f"{learner}: imported simlab from {out['simlab']}, not {code}")
    return out


def max_difference(a: Path, b: Path) -> dict[str, float]:
    """Largest |difference| per compared metric between two records files."""
    keys = ["metric", "wave", "shots", "steps"]
    x, y = pd.read_csv(a), pd.read_csv(b)
    m = x[x.metric.isin(COMPARED)].merge(y[y.metric.isin(COMPARED)], on=keys, how="outer")
    if m[["value_x", "value_y"]].isna().any().any():
        return {"rows": float("nan")}
    m["diff"] = (m.value_x - m.value_y).abs()
    return {k: float(v) for k, v in m.groupby("metric")["diff"].max().items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default=BEFORE,
                   help=f"the code before: a checkout folder or a commit (default {BEFORE})")
    p.add_argument("--after", default=str(ROOT), help="checkout of the code after (this one)")
    p.add_argument("--learners", default=",".join(LEARNERS))
    p.add_argument("--scale", type=float, default=1.0,
                   help="budget iterations x this (1: the demo's, 400 + 15 x 40)")
    p.add_argument("--repeats", type=int, default=1, help="cells per code path (median)")
    p.add_argument("--device", default="cpu", help="device of the after runs")
    args = p.parse_args(argv)
    after = Path(args.after).resolve()
    with tempfile.TemporaryDirectory() as src:
        if Path(args.before).is_dir():
            before = Path(args.before).resolve()
            rev = subprocess.run(["git", "-C", str(before), "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip() or "?"
        else:                          # a commit: extract its simlab/ into a temporary folder
            before, rev = Path(src), args.before
            tar = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "simlab"],
                                 capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", src], input=tar, check=True)
        return compare(args, before, rev, after)


def compare(args: argparse.Namespace, before: Path, rev: str, after: Path) -> int:
    """Run and print the comparison (``before``: a folder holding simlab/)."""
    rev_after = subprocess.run(["git", "-C", str(after), "rev-parse", "--short", "HEAD"],
                               capture_output=True, text=True).stdout.strip() or "?"
    print(f"demo cell (opinion_shift seed 0, budgets x{args.scale:g}), 1 thread, CPU s per "
          f"cell; before: {before} @ {rev}, after: {after} @ {rev_after}"
          + (f" on {args.device}" if args.device != "cpu" else ""))
    print(f"{'learner':<10} {'before':>8} {'after':>8} {'ratio':>6}   {'meta-fit before':>15} "
          f"{'after':>7} {'ratio':>6}   same records")
    with tempfile.TemporaryDirectory() as tmp:
        for learner in [n for n in args.learners.split(",") if n]:
            runs: dict[str, list[dict]] = {"before": [], "after": []}
            files = {k: Path(tmp) / f"{learner}-{k}.csv" for k in runs}
            for _ in range(args.repeats):
                runs["before"].append(one(before, learner, args.scale, files["before"], []))
                runs["after"].append(one(after, learner, args.scale, files["after"],
                                         ["--device", args.device]))

            def med(k: str, field: str) -> float:
                vals = sorted(r[field] for r in runs[k])  # noqa: B023 - called in this iteration
                return vals[len(vals) // 2]

            b, a = med("before", "cpu_s"), med("after", "cpu_s")
            mb, ma = med("before", "meta_fit_cpu_s"), med("after", "meta_fit_cpu_s")
            if runs["before"][0]["digest"] == runs["after"][0]["digest"]:
                same = "bit-for-bit"
            else:
                diffs = max_difference(files["before"], files["after"])
                same = "max |diff| " + ", ".join(f"{k} {v:.2g}" for k, v in diffs.items())
            print(f"{learner:<10} {b:8.2f} {a:8.2f} {b / a:5.2f}x   {mb:15.2f} {ma:7.2f} "
                  f"{mb / ma:5.2f}x   {same}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
