"""Intervals across seeds, the paired t test over seeds (calibration included), Holm,
leaderboard."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from simlab.evaluation.comparisons import compare, compare_all
from simlab.evaluation.frames import best_baseline, leaderboard, run_summaries, wave_scores
from simlab.evaluation.inference import (MIN_SEEDS, holm, seed_interval, seed_means,
                                         seed_t_test)
from simlab.evaluation.verdicts import fmt, overall_verdict

from helpers.frames import fake_scores


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
    sc = fake_scores({"maml": -0.05, "partial_pooling": 0.0})
    c = compare(sc, "maml", "partial_pooling")
    assert c.outcome == "beats" and c.ci_hi < 0 and c.p_value < 1e-3
    assert c.n_pairs == 15 * MIN_SEEDS and c.n_seeds == MIN_SEEDS and c.n_dropped == 0
    assert c.ci_lo < c.mean_diff < c.ci_hi and 0 < c.mdd < abs(c.mean_diff)
    assert c.mean_diff == pytest.approx(c.mean_learner - c.mean_reference)
    assert "lower than partial_pooling's" in c.verdict and c.verdict.endswith(
        "it beats partial_pooling.")
    assert compare(sc, "partial_pooling", "maml").outcome == "worse"


def test_the_t_test_is_on_per_seed_means():
    sc = fake_scores({"maml": -0.01, "partial_pooling": 0.0}, seed=3)
    c = compare(sc, "maml", "partial_pooling")
    wide = sc.pivot_table(index=["seed", "wave"], columns="label", values="value")
    per_seed = (wide["maml"] - wide["partial_pooling"]).groupby("seed").mean()
    want = stats.ttest_1samp(per_seed, 0.0)
    assert c.p_value == pytest.approx(want.pvalue, rel=1e-9)
    ci = want.confidence_interval(0.95)
    assert (c.ci_lo, c.ci_hi) == pytest.approx((ci.low, ci.high), rel=1e-9)
    # more waves per seed do not make the seeds more numerous: n stays the seed count
    assert seed_t_test(np.array([0.1, 0.3]))["n"] == 2


def test_too_few_seeds_gives_no_verdict_and_says_why():
    sc = fake_scores({"maml": -0.05, "partial_pooling": 0.0}, seeds=MIN_SEEDS - 1)
    c = compare(sc, "maml", "partial_pooling")
    assert c.outcome == "too few seeds" and np.isfinite(c.p_value)
    assert f"calibrated from {MIN_SEEDS}" in c.verdict and c.verdict.startswith("No verdict")
    one = compare(fake_scores({"maml": -0.05, "partial_pooling": 0.0}, seeds=1), "maml",
                  "partial_pooling")
    assert one.outcome == "too few seeds" and math.isnan(one.ci_lo)
    assert "1 paired seed," in one.verdict and "nan" not in one.verdict.lower()


def test_disjoint_seeds_and_waves_and_a_failed_reference_are_stated():
    sc = fake_scores({"maml": -0.05, "partial_pooling": 0.0})
    apart = sc[~((sc["label"] == "maml") & (sc["seed"] < 3))
               & ~((sc["label"] == "partial_pooling") & (sc["seed"] >= 3))]
    c = compare(apart, "maml", "partial_pooling")
    assert c.outcome == "no data" and "share no seed" in c.verdict
    waves = sc[~((sc["label"] == "maml") & (sc["wave"] < 10))
               & ~((sc["label"] == "partial_pooling") & (sc["wave"] >= 10))]
    c = compare(waves, "maml", "partial_pooling")
    assert c.outcome == "no data" and "no scored wave" in c.verdict
    gone = sc[sc["label"] != "partial_pooling"]
    c = compare(gone, "maml", "partial_pooling")
    assert c.outcome == "no data" and "partial_pooling has no scored wave" in c.verdict
    text = overall_verdict(compare_all(gone), gone, failed=["partial_pooling"])
    assert text.startswith("No verdict") and "failed on every seed" in text


def test_calibration_on_null_data_at_the_minimum_seed_count():
    """Null differences: a per-seed effect + AR(1) wave noise (phi 0.6) that is the same for
    both learners in distribution; 1000 datasets (Monte Carlo SE ~0.7%). The verdict path
    (per-seed means, t test) must give "beats"/"worse" at most 6% of the time and cover 0 at
    least 93% of the time."""
    rng = np.random.default_rng(20261201)
    n_data, waves, phi = 1000, 16, 0.6
    e = rng.normal(size=(n_data, MIN_SEEDS, waves))
    ar = np.empty_like(e)
    ar[..., 0] = e[..., 0] / math.sqrt(1 - phi ** 2)
    for t in range(1, waves):
        ar[..., t] = phi * ar[..., t - 1] + e[..., t]
    d = 0.01 * rng.normal(size=(n_data, MIN_SEEDS, 1)) + 0.02 * ar
    res = seed_t_test(seed_means(d))
    false = float(np.mean(res["p"] < 0.05))
    cover = float(np.mean((res["lo"] <= 0) & (res["hi"] >= 0)))
    assert false <= 0.06 and cover >= 0.93, (false, cover)
    # the same numbers through compare() on a few of the datasets (same code path)
    for i in range(5):
        rows = [("sc", s, "maml", w, d[i, s, w]) for s in range(MIN_SEEDS) for w in range(waves)]
        rows += [("sc", s, "partial_pooling", w, 0.0) for s in range(MIN_SEEDS)
                 for w in range(waves)]
        frame = pd.DataFrame(rows, columns=["scenario", "seed", "label", "wave", "value"])
        c = compare(frame, "maml", "partial_pooling")
        assert c.p_value == pytest.approx(res["p"][i]) and c.ci_lo == pytest.approx(res["lo"][i])
        assert (c.outcome in ("beats", "worse")) == (res["p"][i] < 0.05)


def test_holm_adjustment():
    p = holm([0.01, 0.04, np.nan, 0.03])
    np.testing.assert_allclose(p[[0, 3, 1]], [0.03, 0.06, 0.06])
    assert math.isnan(p[2])
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]      # running maximum


def test_compare_all_adjusts_within_the_family():
    effects = {f"m{i}": 0.0 for i in range(5)} | {"partial_pooling": 0.0}
    sc = fake_scores(effects, seed=7)
    comps = compare_all(sc)
    assert all(c.n_family == 5 for c in comps)
    raw = [c.p_value for c in comps]
    np.testing.assert_allclose([c.p_adjusted for c in comps], holm(raw))
    assert all(c.p_adjusted >= c.p_value for c in comps)


def test_one_number_format():
    assert fmt(9.29e-05) == "0.0000929" and fmt(13.14) == "13.1" and fmt(0.5) == "0.5"
    assert fmt(123456.0) == "123,456" and fmt(float("nan")) == "–" and fmt(None) == "–"
    assert fmt(3) == "3" and fmt(-0.01234) == "-0.0123"


def test_diverged_cells_are_dropped_and_counted():
    sc = fake_scores({"maml": -0.05, "partial_pooling": 0.0})
    sc.loc[(sc["label"] == "maml") & (sc["wave"] == 3), "value"] = np.nan
    c = compare(sc, "maml", "partial_pooling")
    assert c.n_dropped == MIN_SEEDS and c.n_pairs == 14 * MIN_SEEDS


def test_verdicts_and_best_baseline():
    sc = fake_scores({"maml": 0.01, "relation": -0.08, "scratch": 0.2, "finetune": -0.03,
                  "partial_pooling": 0.0, "oracle": -0.3})
    assert best_baseline(sc) == "finetune"
    comps = compare_all(sc)
    pairs = {(c.learner, c.reference): c for c in comps}
    assert set(pairs) == {("maml", "finetune"), ("maml", "partial_pooling"),
                          ("relation", "finetune"), ("relation", "partial_pooling")}
    assert "it has not earned its place" in pairs[("maml", "partial_pooling")].verdict
    assert "has not earned" not in pairs[("maml", "finetune")].verdict
    assert pairs[("relation", "partial_pooling")].outcome == "beats"
    text = overall_verdict(comps, sc)
    assert text.startswith("relation beats partial pooling") and "finetune" in text
    none = fake_scores({"maml": 0.05, "partial_pooling": 0.0})
    assert "No meta-learner beats partial pooling" in overall_verdict(
        compare_all(none), none)
    no_pp = fake_scores({"maml": 0.0, "scratch": 0.1})
    assert "not run" in overall_verdict(compare_all(no_pp), no_pp)


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
    sc = fake_scores({"maml[inner_lr=0.1]": -0.05, "partial_pooling[window=3]": 0.0,
                  "partial_pooling[window=9]": 0.02, "scratch": 0.1})
    names = {"maml[inner_lr=0.1]": "maml", "partial_pooling[window=3]": "partial_pooling",
             "partial_pooling[window=9]": "partial_pooling", "scratch": "scratch"}
    sc["learner_name"] = sc["label"].map(names)
    assert best_baseline(sc) == "partial_pooling[window=3]"
    (c,) = compare_all(sc)
    assert (c.learner, c.reference, c.reference_name) == (
        "maml[inner_lr=0.1]", "partial_pooling[window=3]", "partial_pooling")
    assert overall_verdict([c], sc).startswith("maml[inner_lr=0.1] beats partial pooling")


def test_a_plugin_declaring_role_baseline_is_compared_as_a_baseline():
    """Who is a baseline is the role each run's log recorded (the store's ``role`` column), not
    its name: a plug-in declaring ``role = "baseline"`` becomes the best baseline every method
    is tested against and is never tested as a method; a log without a role (an older store)
    reads the built-in names, so partial_pooling stays the reference."""
    runs, mets = _store(MIN_SEEDS)
    extra_runs, extra_mets = [], []
    for seed in range(MIN_SEEDS):
        rid = f"acme-{seed}"
        extra_runs.append((rid, "sc", seed, "acme_glm", "{}", "ok", None, 1.0))
        extra_mets += [(rid, w, 5, 1, "excess_loss", 0.1 + 0.01 * seed + 0.001 * w)
                       for w in range(2, 8)]
    runs = pd.concat([runs, pd.DataFrame(extra_runs, columns=runs.columns)], ignore_index=True)
    mets = pd.concat([mets, pd.DataFrame(extra_mets, columns=mets.columns)], ignore_index=True)
    declared = runs.assign(role=np.where(runs["learner"] == "acme_glm", "baseline", None))
    ws = wave_scores(declared, mets, "excess_loss")
    assert best_baseline(ws) == "acme_glm"
    comps = compare_all(ws)
    assert {(c.learner, c.reference) for c in comps} == {("maml", "acme_glm"),
                                                          ("maml", "partial_pooling")}
    assert all(c.reference_role == "baseline" and c.learner_role == "meta" for c in comps)
    # the same runs without recorded roles: acme_glm is then a method under test
    legacy = compare_all(wave_scores(runs, mets, "excess_loss"))
    assert best_baseline(wave_scores(runs, mets, "excess_loss")) == "partial_pooling"
    assert {c.learner for c in legacy} == {"maml", "acme_glm"}


def test_the_store_reads_each_runs_recorded_role_back(tmp_path):
    """``log["role"]`` (written by the protocol) comes back as the runs frame's ``role``
    column; a run whose log has none (an older store, a failed cell) reads as its built-in
    name's role, so a plug-in baseline is a baseline and old stores keep their verdicts."""
    from simlab.evaluation.frames import labelled_runs
    from simlab.evaluation.result import SHIFT_COLUMNS, RunResult
    from simlab.experiment.store import Cell, Store

    records = pd.DataFrame({"wave": [1], "shots": [5], "steps": [1], "metric": ["loss"],
                            "value": [0.5]})
    with Store(tmp_path / "r.db") as db:
        for name, log in (("acme_glm", {"role": "baseline"}), ("partial_pooling", {}),
                          ("maml", {"role": "meta"})):
            db.write(Cell("sc", "fp", 0, name), RunResult(
                records, {}, pd.DataFrame(columns=SHIFT_COLUMNS), log=log))
        db.write(Cell("sc", "fp", 0, "oracle"), RuntimeError("boom"))
        runs = db.frames()["runs"]
    stored = runs.set_index("learner")["role"]
    assert stored[["acme_glm", "maml"]].tolist() == ["baseline", "meta"]
    assert stored[["partial_pooling", "oracle"]].isna().all()
    roles = labelled_runs(runs).set_index("learner")["role"].to_dict()
    assert roles == {"acme_glm": "baseline", "partial_pooling": "baseline", "maml": "meta",
                     "oracle": "oracle"}


def test_verdicts_state_the_targets_unit():
    """A verdict's difference carries its unit: nats of log loss where the runs recorded
    accuracy (a binary or multiclass target), squared error where they did not (regression);
    the comparison keeps it (``Comparison.unit``)."""
    runs, mets = _store(MIN_SEEDS)
    regression = compare_all(wave_scores(runs, mets, "excess_loss"))
    acc = mets[mets["metric"] == "loss"].assign(metric="accuracy", value=0.7)
    classification = compare_all(wave_scores(runs, pd.concat([mets, acc]), "excess_loss"))
    assert regression[0].unit == "squared error/respondent above the oracle"
    assert "squared error/respondent above the oracle, 95% CI" in regression[0].verdict
    assert classification[0].unit == "nats/respondent above the oracle"
    assert "nats/respondent above the oracle, 95% CI" in classification[0].verdict
