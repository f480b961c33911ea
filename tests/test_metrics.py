"""Metrics against hand-computed values, and run summaries on synthetic records frames."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from simlab.evaluation.metrics import (EPS, SummaryOptions, auc_steps, cubes,
                                       expected_calibration_error, normalised_trapezoid,
                                       score_predictions, shift_response, shots_to_target,
                                       summarize, wave_curve)
from simlab.evaluation.result import SHIFT_COLUMNS


def _one(pred, y, w=None, target="binary", n_classes=2, oracle=None):
    """Score a single step of one or more tasks; returns metric -> float."""
    pred = np.asarray(pred, np.float64)[None]
    y = np.asarray(y)
    w = np.ones(y.shape) if w is None else np.asarray(w, np.float64)
    out = score_predictions(pred, y, w, target, n_classes, oracle)
    return {k: float(v[0]) for k, v in out.items()}


def test_binary_log_loss_brier_accuracy_by_hand():
    m = _one([[0.8, 0.3]], [[1.0, 0.0]])
    assert m["loss"] == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)
    assert m["brier"] == pytest.approx((0.2 ** 2 + 0.3 ** 2) / 2)
    assert m["accuracy"] == 1.0
    assert m["diverged"] == 0.0
    assert "excess_loss" not in m and "prevalence_error_oracle" not in m   # absent, not zero


def test_survey_weights_within_a_group_and_groups_count_equally():
    # group 0: weights 1 and 3; group 1: one respondent (the second slot is padding, w = 0)
    m = _one([[0.8, 0.3], [0.6, 0.5]], [[1.0, 0.0], [0.0, 0.0]], w=[[1, 3], [1, 0]])
    g0 = -(math.log(0.8) * 1 + math.log(0.7) * 3) / 4
    g1 = -math.log(0.4)
    assert m["loss"] == pytest.approx((g0 + g1) / 2)
    # prevalence: group 0 weighted mean prediction (0.8 + 3*0.3)/4 = 0.425 vs observed 1/4
    assert m["prevalence_error"] == pytest.approx((abs(0.425 - 0.25) + 0.6) / 2)


def test_excess_loss_and_oracle_prevalence_by_hand():
    p, y, o = [[0.8, 0.3]], [[1.0, 0.0]], np.array([[0.6, 0.2]])
    m = _one(p, y, w=[[1, 3]], oracle=o)
    model = -(math.log(0.8) + 3 * math.log(0.7)) / 4
    oracle = -(math.log(0.6) + 3 * math.log(0.8)) / 4
    assert m["excess_loss"] == pytest.approx(model - oracle)
    assert m["prevalence_error_oracle"] == pytest.approx(abs(0.425 - (0.6 + 3 * 0.2) / 4))


def test_oracle_predictions_have_zero_excess_loss():
    rng = np.random.default_rng(0)
    o = rng.uniform(0.01, 0.99, (4, 7))
    y = (rng.random((4, 7)) < o).astype(float)
    m = _one(o, y, oracle=o)
    assert m["excess_loss"] == 0.0 and m["prevalence_error_oracle"] == 0.0
    probs = rng.dirichlet(np.ones(3), (2, 5))
    yc = rng.integers(0, 3, (2, 5))
    assert _one(probs, yc, target="multiclass", n_classes=3, oracle=probs)["excess_loss"] == 0.0


def test_multiclass_by_hand():
    p = [[[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]]
    m = _one(p, [[0, 1]], target="multiclass", n_classes=3)
    assert m["loss"] == pytest.approx(-(math.log(0.7) + math.log(0.3)) / 2)
    assert m["brier"] == pytest.approx(((0.09 + 0.04 + 0.01) + (0.01 + 0.49 + 0.36)) / 2)
    assert m["accuracy"] == pytest.approx(0.5)
    # class shares predicted (0.4, 0.25, 0.35) vs observed (0.5, 0.5, 0): TV = 0.35
    assert m["prevalence_error"] == pytest.approx(0.5 * (0.1 + 0.25 + 0.35))


def test_regression_mse_and_mean_error():
    m = _one([[1.0, 3.0]], [[2.0, 2.0]], target="regression", oracle=np.array([[2.0, 2.5]]))
    assert m["loss"] == pytest.approx(1.0)
    assert m["excess_loss"] == pytest.approx(1.0 - 0.125)
    assert m["prevalence_error"] == pytest.approx(0.0)
    assert m["prevalence_error_oracle"] == pytest.approx(0.25)
    assert "accuracy" not in m and "ece" not in m


def test_log_loss_is_clipped_not_infinite():
    m = _one([[1.0, 0.0]], [[0.0, 1.0]])
    assert m["loss"] == pytest.approx(-math.log(EPS), rel=1e-6)


def test_ece_by_hand():
    conf = np.array([[0.05, 0.15, 0.95, 0.85, 0.62, 0.68]])
    hit = np.array([[0.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
    # bins: 0 -> .05, 1 -> .85, 9 -> .05, 8 -> .15, 6 (two) -> |0.5 - 0.65| * 2
    want = (0.05 + 0.85 + 0.05 + 0.15 + 2 * 0.15) / 6
    assert expected_calibration_error(conf, hit, np.ones(6))[0] == pytest.approx(want)
    w = np.array([1, 1, 1, 1, 3, 1.0])
    wb6 = abs(0.75 - (3 * 0.62 + 0.68) / 4) * 4
    assert expected_calibration_error(conf, hit, w)[0] == pytest.approx(
        (0.05 + 0.85 + 0.05 + 0.15 + wb6) / 8)


def test_non_finite_step_is_diverged_and_padding_is_ignored():
    pred = np.array([[[0.8, np.nan]], [[np.nan, 0.2]]])          # [S=2, B=1, Q=2]
    out = score_predictions(pred, np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]), "binary")
    assert out["diverged"].tolist() == [0.0, 1.0]
    assert out["loss"][0] == pytest.approx(-math.log(0.8))
    assert np.isnan(out["loss"][1]) and np.isnan(out["accuracy"][1])


# --------------------------------------------------------------------------- summaries

def _records(values: dict[str, np.ndarray], waves, shots, steps) -> pd.DataFrame:
    """Records frame from metric -> [W, K, S] arrays."""
    parts = []
    for metric, arr in values.items():
        w, k, s = np.meshgrid(waves, shots, steps, indexing="ij")
        parts.append(pd.DataFrame({"wave": w.ravel(), "shots": k.ravel(), "steps": s.ravel(),
                                   "metric": metric, "value": np.asarray(arr, float).ravel()}))
    return pd.concat(parts, ignore_index=True)


def test_normalised_trapezoid():
    assert normalised_trapezoid(np.array([0, 10]), np.array([3.0, 3.0])) == pytest.approx(3.0)
    assert normalised_trapezoid(np.array([0, 10]), np.array([1.0, 0.0])) == pytest.approx(0.5)
    # uneven grid: (0.75 * 1 + 0.5 * 4) / 5
    assert normalised_trapezoid(np.array([0, 1, 5]), np.array([1.0, 0.5, 0.5])) == \
        pytest.approx(0.55)
    assert normalised_trapezoid(np.array([3]), np.array([0.4])) == pytest.approx(0.4)


def test_auc_steps_per_shots():
    loss = np.empty((2, 2, 3))
    loss[:, 0, :] = [1.0, 0.5, 0.5]        # K = 2: area 0.55
    loss[:, 1, :] = [0.5, 0.5, 0.5]        # K = 8: area 0.5
    rec = _records({"loss": loss}, [4, 5], [2, 8], [0, 1, 5])
    assert auc_steps(rec) == pytest.approx({2: 0.55, 8: 0.5})
    assert summarize(rec)["auc_steps"] == pytest.approx(0.525)


def test_wave_curve_uses_largest_steps_and_keeps_nan():
    loss = np.arange(2 * 2 * 2, dtype=float).reshape(2, 2, 2)
    loss[1, 0, 1] = np.nan
    curve = wave_curve(_records({"loss": loss}, [3, 4], [1, 2], [0, 5]), "loss")
    assert curve.index.tolist() == [3, 4]
    assert curve.iloc[0] == pytest.approx((1 + 3) / 2)
    assert np.isnan(curve.iloc[1])


def _curve_records(excess: list[float], first_wave: int = 3) -> pd.DataFrame:
    waves = list(range(first_wave, first_wave + len(excess)))
    exc = np.array(excess)[:, None, None]
    return _records({"excess_loss": exc, "loss": exc + 0.5}, waves, [5], [3])


def _shifts(*waves: int) -> pd.DataFrame:
    return pd.DataFrame([[w, 10 * w, "abrupt", f"s{i}", "push", 1.0] for i, w in enumerate(waves)],
                        columns=SHIFT_COLUMNS)


def test_recovery_against_the_common_ceiling_line_sustained():
    # ceiling loss 0.5 (loss = excess + 0.5): line = 0.1 * 0.5 + 0.01 = 0.06 for every learner
    exc = [0.02] * 5 + [0.5, 0.3, 0.05, 0.2, 0.05, 0.04, 0.03]
    s = summarize(_curve_records(exc), _shifts(8))
    # wave 10 dips below the line but leaves it again: the sustained recovery starts at wave 12
    assert s["recovery_waves[0]"] == 4.0 and s["recovery_censored[0]"] == 0.0
    assert s["recovery_horizon[0]"] == 7.0
    assert s["peak_excess[0]"] == pytest.approx(0.5)
    assert s["excess_jump[0]"] == pytest.approx(0.48)
    assert s["recovery_line[0]"] == pytest.approx(0.06)
    assert s["ceiling_change[0]"] == pytest.approx(0.0, abs=1e-12)
    assert s["regret"] == pytest.approx(sum(exc))
    assert s["recovered"] == 1.0 and s["unrecovered"] == 0.0
    assert "mean_recovery_waves" not in s                # a mean that drops censored values
    once = summarize(_curve_records(exc), _shifts(8), SummaryOptions(sustain=1))
    assert once["recovery_waves[0]"] == 2.0


def test_a_better_baseline_is_not_penalised():
    # two learners with the same post-shift curve: the one that was better before is not
    # told it recovers later (the line is the ceiling's, not the learner's own level)
    post = [0.3, 0.05, 0.05, 0.05]
    good = summarize(_curve_records([0.0] * 4 + post), _shifts(7))
    fair = summarize(_curve_records([0.05] * 4 + post), _shifts(7))
    assert good["recovery_waves[0]"] == fair["recovery_waves[0]"] == 1.0


def test_recovery_censored_by_the_end_and_by_the_next_shift_and_warmup_shift():
    never = summarize(_curve_records([0.01] * 4 + [0.5, 0.4, 0.3]), _shifts(7))
    assert math.isnan(never["recovery_waves[0]"]) and never["recovery_censored[0]"] == 1.0
    assert never["recovery_horizon[0]"] == 3.0 and never["unrecovered"] == 1.0
    # the second shift at wave 9 comes before the first one's recovery is sustained
    two = summarize(_curve_records([0.01] * 4 + [0.5, 0.02, 0.6, 0.01, 0.01]), _shifts(7, 9))
    assert two["recovery_censored[0]"] == 1.0 and two["recovery_horizon[0]"] == 2.0
    assert two["peak_excess[0]"] == pytest.approx(0.5)
    assert two["recovery_waves[1]"] == 1.0
    # a recovery that starts on the last wave cannot be sustained: censored, not recovered
    late = summarize(_curve_records([0.01] * 4 + [0.5, 0.5, 0.01]), _shifts(7))
    assert late["recovery_censored[0]"] == 1.0
    warm = summarize(_curve_records([0.3, 0.1, 0.1]), _shifts(1))
    assert math.isnan(warm["recovery_waves[0]"]) and math.isnan(warm["recovery_censored[0]"])
    assert warm["unrecovered"] == 0.0 and warm["recovered"] == 0.0


def test_ceiling_change_and_the_reachable_ceiling_is_preferred():
    exc = np.array([0.02] * 4 + [0.2, 0.02, 0.02])[:, None, None]
    oracle_loss = np.array([0.5] * 4 + [0.7] * 3)[:, None, None]
    rec = _records({"excess_loss": exc, "loss": exc + oracle_loss,
                    "excess_loss_reachable": exc * 0 + 0.001}, list(range(3, 10)), [5], [3])
    s = summarize(rec, _shifts(7))
    assert s["recovery_waves[0]"] == 0.0                 # on the reachable excess: always within
    assert s["peak_excess[0]"] == pytest.approx(0.001)
    plain = summarize(rec[rec["metric"] != "excess_loss_reachable"], _shifts(7))
    assert plain["recovery_waves[0]"] == 1.0
    assert plain["ceiling_change[0]"] == pytest.approx(0.2)


def test_shift_response_own_level_rule_and_tolerance():
    curve = pd.Series([1.0, 0.0, 0.0, 0.5, 0.09, 0.05], index=[0, 1, 2, 3, 4, 5])
    (r,) = shift_response(curve, [3], SummaryOptions(window=2, rel_tol=0.0, abs_tol=0.1))
    assert (r.baseline, r.recovery, r.peak, r.censored, r.horizon) == (0.0, 1.0, 0.5, 0.0, 3)
    (r,) = shift_response(curve, [3], SummaryOptions(window=3, rel_tol=0.0, abs_tol=0.0,
                                                     sustain=1))
    assert r.baseline == pytest.approx(1 / 3) and r.recovery == 1.0
    line = pd.Series(0.06, index=curve.index)
    (r,) = shift_response(curve, [3], SummaryOptions(sustain=1), line)
    assert r.recovery == 2.0
    with pytest.raises(ValueError, match="sustain"):
        SummaryOptions(sustain=0)


def test_shots_to_target_relative_to_oracle_and_absolute():
    loss = np.array([[[0.9], [0.62], [0.52]]] * 2)            # K = 2, 5, 10
    exc = loss - 0.5                                          # oracle loss 0.5: target 0.55
    rec = _records({"loss": loss, "excess_loss": exc}, [3, 4], [2, 5, 10], [1])
    assert shots_to_target(rec) == 10.0
    assert shots_to_target(rec, target=0.7) == 5.0
    assert math.isnan(shots_to_target(rec, target=0.1))
    no_oracle = _records({"loss": loss}, [3, 4], [2, 5, 10], [1])
    assert math.isnan(shots_to_target(no_oracle))


def test_summary_without_oracle_has_no_excess_keys():
    rec = _records({"loss": np.full((4, 1, 1), 0.6)}, [2, 3, 4, 5], [5], [1])
    s = summarize(rec, _shifts(4))
    assert "regret" not in s and "mean_excess_loss" not in s and "peak_excess[0]" not in s
    assert s["recovery_waves[0]"] == 0.0          # on the loss curve: never left its level


def test_cubes_dense_shape():
    loss = np.arange(24.0).reshape(3, 2, 4)
    rec = _records({"loss": loss, "brier": -loss}, [1, 2, 3], [2, 8], [0, 1, 2, 5])
    rec = rec.sample(frac=1.0, random_state=0)            # cells are placed by key, not row order
    rec = rec[~((rec.metric == "loss") & (rec.wave == 2) & (rec.shots == 8) & (rec.steps == 1))]
    cs = cubes(rec)
    c = cs["loss"]
    assert c.values.shape == (3, 2, 4) and c.steps.tolist() == [0, 1, 2, 5]
    assert c.waves.tolist() == [1, 2, 3] and c.shots.tolist() == [2, 8]
    want = loss.copy()
    want[1, 1, 1] = np.nan                                # a missing record is a NaN cell
    np.testing.assert_array_equal(c.values, want)
    np.testing.assert_array_equal(cs["brier"].values, -loss)
