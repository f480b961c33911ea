"""How many seeds a paired verdict needs: false-verdict rate, interval coverage and detectable
difference of the per-seed paired t test (``inference.seed_t_test``) on simulated null data.

Null data: per seed a difference ``u_s`` between two learners that are equally good, plus AR(1)
wave noise (phi = 0.6) over ``--waves`` waves; ``u_s`` is normal, heavy-tailed (t, 3 df),
symmetrically contaminated (10% of seeds 3x off, either learner) or one-sided contaminated (one
learner has a bad seed 10% of the time). Run: ``python bench/verdict_calibration.py``.
"""
from __future__ import annotations

import argparse

import numpy as np
from scipy import stats

from simlab.evaluation.inference import MIN_SEEDS, POWER, seed_means, seed_t_test


def ar1(rng: np.random.Generator, shape: tuple[int, ...], phi: float) -> np.ndarray:
    """Stationary AR(1) series along the last axis (unit innovation variance)."""
    e = rng.normal(size=shape)
    x = np.empty(shape)
    x[..., 0] = e[..., 0] / np.sqrt(1 - phi ** 2)
    for t in range(1, shape[-1]):
        x[..., t] = phi * x[..., t - 1] + e[..., t]
    return x


def seed_effects(rng: np.random.Generator, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    """Per-seed null differences of one of the shapes in the module docstring (mean 0)."""
    if kind == "normal":
        return rng.normal(size=shape)
    if kind == "t3":
        return rng.standard_t(3, size=shape)
    bad = rng.random(shape) < 0.1
    if kind == "contaminated":
        return rng.normal(size=shape) + 3.0 * bad * rng.choice([-1.0, 1.0], shape)
    return rng.normal(size=shape) + 3.0 * (bad - 0.1)                # one-sided


def null_cells(rng: np.random.Generator, kind: str, datasets: int, seeds: int, waves: int,
               seed_sd: float = 0.01, wave_sd: float = 0.02, phi: float = 0.6) -> np.ndarray:
    """``[datasets, seeds, waves]`` learner - reference differences under the null."""
    u = seed_sd * seed_effects(rng, kind, (datasets, seeds))
    return u[..., None] + wave_sd * ar1(rng, (datasets, seeds, waves), phi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", type=int, default=20000)
    ap.add_argument("--waves", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"MIN_SEEDS = {MIN_SEEDS}; {args.datasets} null datasets per cell, {args.waves} waves")
    kinds = ("normal", "t3", "contaminated", "one-sided")
    print("seeds | " + " | ".join(f"{k:>22}" for k in kinds) + " | MDD/sd | sign-flip min p")
    for n in range(2, 11):
        cells = []
        for kind in ("normal", "t3", "contaminated", "one-sided"):
            res = seed_t_test(seed_means(null_cells(rng, kind, args.datasets, n, args.waves)))
            false = float(np.mean(res["p"] < 0.05))
            cover = float(np.mean((res["lo"] <= 0) & (0 <= res["hi"])))
            cells.append(f"false {false:.3f} cov {cover:.3f}")
        mdd = (stats.t.ppf(0.975, n - 1) + stats.t.ppf(POWER, n - 1)) / np.sqrt(n)
        print(f"{n:>5} | " + " | ".join(f"{c:>22}" for c in cells)
              + f" | {mdd:6.2f} | {2 / 2 ** n:.3f}")


if __name__ == "__main__":
    main()
