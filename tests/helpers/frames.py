"""Synthetic store frames and score tables the report and statistics tests share."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from simlab.evaluation.statistics import MIN_SEEDS
from simlab.experiment.store import Store

PNG = b"\x89PNG\r\n\x1a\n"
RUN_COLS = ["run_id", "scenario", "seed", "learner", "hyperparameters", "status", "error",
            "seconds"]
# learner -> excess-loss offset against partial pooling (None: the oracle)
EFFECTS = {"maml": -0.06, "fomaml": 0.03, "scratch": 0.15, "finetune": 0.05,
           "partial_pooling": 0.0, "oracle": None}


def fake_runs(name: str, oracle: bool, shift_wave: int | None,
              seeds=tuple(range(MIN_SEEDS)), waves=range(2, 12), shots=(2, 8),
              steps=(0, 1, 4)) -> tuple[list, list[pd.DataFrame], list]:
    """Store rows of a synthetic scenario: ``runs`` (``RUN_COLS``), metric frames and shift
    rows of every ``EFFECTS`` learner (the oracle only when ``oracle``), with a bump of excess
    loss after ``shift_wave``."""
    rng = np.random.default_rng(len(name))
    runs, mets, shifts = [], [], []
    W, K, S = np.meshgrid(list(waves), shots, steps, indexing="ij")
    for seed in seeds:
        if shift_wave is not None:
            shifts.append([name, seed, shift_wave, 10 * shift_wave, "abrupt", "media_event",
                           "push", 0.5])
        for learner, off in EFFECTS.items():
            if off is None and not oracle:
                continue
            rid = f"{name}-{learner}-{seed}"
            runs.append([rid, name, seed, learner, json.dumps({"lr": 0.1}), "ok", None, 2.0])
            bump = 0 if shift_wave is None else np.where(
                W >= shift_wave, 0.3 * np.exp(-(W - shift_wave) / 1.5), 0.0)
            exc = (np.zeros(W.shape) if off is None else
                   0.02 + max(off, -0.015) + bump + 0.02 / K + 0.01 / (1 + S)
                   + rng.normal(0, 0.003, W.shape) + rng.normal(0, 0.002))
            cells = {"loss": 0.5 + exc, "accuracy": 0.8 - exc / 2, "diverged": 0 * exc}
            if oracle:
                cells["excess_loss"] = exc
            for metric, v in cells.items():
                mets.append(pd.DataFrame({"run_id": rid, "wave": W.ravel(), "shots": K.ravel(),
                                          "steps": S.ravel(), "metric": metric,
                                          "value": v.ravel()}))
            mets.append(pd.DataFrame({"run_id": rid, "wave": W[:, :, -1].ravel(),
                                      "shots": K[:, :, -1].ravel(), "steps": max(steps),
                                      "metric": "adapt_seconds", "value": 0.01}))
            mets.append(pd.DataFrame({"run_id": rid, "wave": list(waves), "shots": 0,
                                      "steps": 0, "metric": "meta_fit_seconds", "value": 0.2}))
    return runs, mets, shifts


def fake_scores(effects: dict[str, float], seeds: int = MIN_SEEDS, waves: int = 15,
                noise: float = 0.02, shared: float = 0.1, seed: int = 0,
                seed_sd: float = 0.01) -> pd.DataFrame:
    """Per-wave scores: a shared stream difficulty (same for every learner: the pairing) plus
    a learner effect, a per-seed learner effect and independent noise."""
    rng = np.random.default_rng(seed)
    stream = rng.normal(0.3, shared, (seeds, waves))
    rows = []
    for lab, eff in effects.items():
        vals = (stream + eff + rng.normal(0, seed_sd, (seeds, 1))
                + rng.normal(0, noise, (seeds, waves)))
        for s in range(seeds):
            for w in range(waves):
                rows.append(("sc", s, lab, w + 3, vals[s, w]))
    return pd.DataFrame(rows, columns=["scenario", "seed", "label", "wave", "value"])


def stored_metrics(db) -> pd.DataFrame:
    """Every stored number except wall times, in a fixed order."""
    with Store(db) as store:
        f = store.frames()
    runs = f["runs"][["run_id", "seed", "learner", "status"]]
    summ = f["summaries"].assign(wave=-1, shots=-1, steps=-1, metric=f["summaries"]["name"])
    df = runs.merge(pd.concat([f["metrics"], summ.drop(columns="name")]), on="run_id")
    df = df[~df["metric"].str.contains("seconds")]
    return df.drop(columns="run_id").sort_values(
        ["seed", "learner", "wave", "shots", "steps", "metric"]).reset_index(drop=True)
