"""Intervals across seeds, the paired bootstrap + Wilcoxon comparison, leaderboard."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from simlab.evaluation.statistics import (best_baseline, block_bootstrap_means, compare,
                                          compare_all, leaderboard, overall_verdict,
                                          run_summaries, seed_interval, wave_scores)


def _scores(effects: dict[str, float], seeds: int = 3, waves: int = 15, noise: float = 0.02,
            shared: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """Per-wave scores: a shared stream difficulty (same for every learner: the pairing) plus
    a learner effect plus independent noise."""
    rng = np.random.default_rng(seed)
    stream = rng.normal(0.3, shared, (seeds, waves))
    rows = []
    for lab, eff in effects.items():
        vals = stream + eff + rng.normal(0, noise, (seeds, waves))
        for s in range(seeds):
            for w in range(waves):
                rows.append(("sc", s, lab, w + 3, vals[s, w]))
    return pd.DataFrame(rows, columns=["scenario", "seed", "label", "wave", "value"])


def test_t_interval_covers_the_mean_at_its_level():
    rng = np.random.default_rng(1)
    hits = [(iv := seed_interval(rng.normal(2.0, 1.0, 5))).lo <= 2.0 <= iv.hi
            for _ in range(1000)]
    assert 0.93 <= np.mean(hits) <= 0.97


def test_t_interval_edge_cases():
    one = seed_interval([1.5, float("nan")])
    assert one.mean == 1.5 and one.n == 1 and math.isnan(one.lo)
    assert seed_interval([]).n == 0
    iv = seed_interval([1.0, 2.0, 3.0])
    assert iv.mean == 2.0 and iv.hi - 2.0 == pytest.approx(4.302653 * 1 / math.sqrt(3), rel=1e-5)


def test_paired_test_detects_a_clear_difference():
    sc = _scores({"maml": -0.05, "partial_pooling": 0.0})
    c = compare(sc, "maml", "partial_pooling", n_boot=1000)
    assert c.outcome == "beats" and c.ci_hi < 0 and c.p_value < 1e-3
    assert c.n_pairs == 45 and c.n_seeds == 3 and c.n_dropped == 0
    assert c.ci_lo < c.mean_diff < c.ci_hi
    assert c.mean_diff == pytest.approx(c.mean_learner - c.mean_reference)
    assert "lower than partial_pooling's" in c.verdict and c.verdict.endswith(
        "it beats partial_pooling.")
    worse = compare(sc, "partial_pooling", "maml", n_boot=500)
    assert worse.outcome == "worse"


def test_paired_test_is_silent_under_the_null():
    beats = [compare(_scores({"maml": 0.0, "partial_pooling": 0.0}, seed=i), "maml",
                     "partial_pooling", n_boot=300).outcome for i in range(40)]
    assert beats.count("beats") + beats.count("worse") <= 4          # nominal 5%


def test_pairing_removes_the_shared_stream_difficulty():
    # the stream's difficulty varies 10x more than the learner effect: only pairing finds it
    sc = _scores({"maml": -0.02, "partial_pooling": 0.0}, shared=0.3, noise=0.005)
    assert compare(sc, "maml", "partial_pooling", n_boot=500).outcome == "beats"


def test_block_bootstrap_covers_the_mean_of_autocorrelated_waves():
    rng = np.random.default_rng(2)
    hits = []
    for _ in range(60):
        e = rng.normal(size=(4, 30))
        d = np.empty_like(e)
        d[:, 0] = e[:, 0]
        for t in range(1, 30):                                        # AR(1), phi = 0.5
            d[:, t] = 0.5 * d[:, t - 1] + e[:, t]
        lo, hi = np.percentile(block_bootstrap_means(d, 400, rng), [2.5, 97.5])
        hits.append(lo <= 0.0 <= hi)
    assert np.mean(hits) >= 0.8


def test_diverged_cells_are_dropped_and_counted():
    sc = _scores({"maml": -0.05, "partial_pooling": 0.0})
    sc.loc[(sc["label"] == "maml") & (sc["wave"] == 3), "value"] = np.nan
    c = compare(sc, "maml", "partial_pooling", n_boot=300)
    assert c.n_dropped == 3 and c.n_pairs == 42


def test_verdicts_and_best_baseline():
    sc = _scores({"maml": 0.01, "relation": -0.08, "scratch": 0.2, "finetune": -0.03,
                  "partial_pooling": 0.0, "oracle": -0.3})
    assert best_baseline(sc) == "finetune"
    comps = compare_all(sc, n_boot=300)
    pairs = {(c.learner, c.reference): c for c in comps}
    assert set(pairs) == {("maml", "finetune"), ("maml", "partial_pooling"),
                          ("relation", "finetune"), ("relation", "partial_pooling")}
    assert "it has not earned its place" in pairs[("maml", "partial_pooling")].verdict
    assert "has not earned" not in pairs[("maml", "finetune")].verdict
    assert pairs[("relation", "partial_pooling")].outcome == "beats"
    text = overall_verdict(comps, sc)
    assert text.startswith("relation beats partial pooling") and "finetune" in text
    none = _scores({"maml": 0.05, "partial_pooling": 0.0})
    assert "No meta-learner beats partial pooling" in overall_verdict(
        compare_all(none, n_boot=300), none)
    no_pp = _scores({"maml": 0.0, "scratch": 0.1})
    assert "not run" in overall_verdict(compare_all(no_pp, n_boot=100), no_pp)


def _store(n_seeds: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs, mets = [], []
    for seed in range(n_seeds):
        for name, level in (("maml", 0.2), ("partial_pooling", 0.3)):
            rid = f"{name}-{seed}"
            runs.append((rid, "sc", seed, name, json.dumps({"lr": 0.1}), "ok", None, 1.0))
            for w in range(2, 8):
                for metric, v in (("loss", level + 0.5 + 0.01 * seed), ("excess_loss",
                                                                        level + 0.01 * seed)):
                    mets.append((rid, w, 5, 1, metric, v))
    runs.append(("bad", "sc", 0, "relation", "{}", "failed", "ValueError: x", 0.0))
    return (pd.DataFrame(runs, columns=["run_id", "scenario", "seed", "learner",
                                        "hyperparameters", "status", "error", "seconds"]),
            pd.DataFrame(mets, columns=["run_id", "wave", "shots", "steps", "metric", "value"]))


def test_leaderboard_from_store_frames():
    runs, mets = _store()
    summ = run_summaries(runs, mets)
    board = leaderboard(summ)
    assert board["label"].tolist() == ["maml", "partial_pooling", "relation"]
    top = board.iloc[0]
    assert top["mean_excess_loss"] == pytest.approx(0.21)
    assert top["mean_excess_loss_lo"] < 0.21 < top["mean_excess_loss_hi"]
    assert top["regret"] == pytest.approx(0.21 * 6)
    assert board.iloc[2]["failed"] == 1 and math.isnan(board.iloc[2]["mean_excess_loss"])
    ws = wave_scores(runs, mets, "excess_loss")
    assert len(ws) == 2 * 3 * 6 and set(ws["label"]) == {"maml", "partial_pooling"}


def test_same_learner_with_two_settings_is_not_pooled():
    runs, mets = _store(1)
    extra = runs.iloc[[0]].assign(run_id="maml-b", hyperparameters=json.dumps({"lr": 0.5}))
    mets2 = mets[mets["run_id"] == "maml-0"].assign(run_id="maml-b")
    summ = run_summaries(pd.concat([runs, extra]), pd.concat([mets, mets2]))
    labels = set(summ["label"])
    assert "partial_pooling" in labels and sum(lab.startswith("maml@") for lab in labels) == 2


def test_store_labels_use_the_registry_name_to_find_baselines():
    sc = _scores({"maml[inner_lr=0.1]": -0.05, "partial_pooling[window=3]": 0.0,
                  "partial_pooling[window=9]": 0.02, "scratch": 0.1})
    names = {"maml[inner_lr=0.1]": "maml", "partial_pooling[window=3]": "partial_pooling",
             "partial_pooling[window=9]": "partial_pooling", "scratch": "scratch"}
    sc["learner_name"] = sc["label"].map(names)
    assert best_baseline(sc) == "partial_pooling[window=3]"
    (c,) = compare_all(sc, n_boot=300)
    assert (c.learner, c.reference, c.reference_name) == (
        "maml[inner_lr=0.1]", "partial_pooling[window=3]", "partial_pooling")
    assert overall_verdict([c], sc).startswith("maml[inner_lr=0.1] beats partial pooling")
