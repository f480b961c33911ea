"""Demo cell time on CPU vs CUDA (``--device cuda``), where a GPU exists.

Run by hand (not a test):

    PYTHONPATH=$PWD python3 bench/cuda_cell.py [--scale 0.25] [--learners maml,meta_lstm]

Prints "CUDA not available" and exits 0 on a machine without one. Otherwise each demo cell
(``bench/demo_cell.py``) runs on the CPU (1 thread) and on CUDA in this process, after one
short warm-up cell per device (CUDA context, kernels); printed: wall seconds per cell (the
CPU's CPU seconds are its wall seconds at one thread; a CUDA cell's CPU seconds are mostly the
host waiting), the ratio, and whether the records are equal within 1e-4 (CUDA kernels round
differently).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_cell import LEARNERS, run_cell


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--learners", default=",".join(LEARNERS))
    p.add_argument("--scale", type=float, default=1.0, help="budget iterations x this")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("CUDA not available")
        return 0
    torch.set_num_threads(1)
    names = [n for n in args.learners.split(",") if n]
    print(f"demo cell (opinion_shift seed 0, budgets x{args.scale:g}): CPU (1 thread) vs "
          f"{torch.cuda.get_device_name()}, wall seconds per cell")
    for dev in ("cpu", "cuda"):          # warm-up: CUDA context, first kernels
        run_cell(names[0], scale=0.01, device=dev)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            files = {d: Path(tmp) / f"{name}-{d}.csv" for d in ("cpu", "cuda")}
            out = {d: run_cell(name, scale=args.scale, device=d, records=str(files[d]))
                   for d in files}
            a, b = (pd.read_csv(files[d]) for d in files)
            diff = (a["value"] - b["value"]).abs().max()
            print(f"{name:<10} cpu {out['cpu']['wall_s']:7.2f} s  cuda {out['cuda']['wall_s']:7.2f}"
                  f" s  cpu/cuda {out['cpu']['wall_s'] / out['cuda']['wall_s']:5.2f}x  "
                  f"max |diff| {diff:.2g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
