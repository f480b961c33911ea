"""Group x time trends of a survey and its twin (issue 24, item 6): measured, calibrated, and
flagged in the twin report's verdict when the survey's groups trend apart and the twin does
not follow."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simlab.evaluation.result import RECORD_COLUMNS, SHIFT_COLUMNS
from simlab.experiment.config import Scenario, load_scenario
from simlab.experiment.survey_scenario import SurveyScenario
from simlab.experiment.twin import fit_twin, group_trends, survey_shape, write_fit
from simlab.report.twin import build_twin_report, twin_fidelity

YEARS = [2000, 2002, 2004, 2006, 2008, 2010]
CAUTION = "Caution: the twin does not follow the survey's diverging group trends"


def synthetic_survey(diverge: bool, n: int = 60, seed: int = 0) -> SurveyScenario:
    """Four groups x six years; logit slope per wave +-0.35 in alternate groups (diverging)
    or +0.1 in every group (parallel), around different group levels."""
    rng = np.random.default_rng(seed)
    parts = []
    for g, name in enumerate("abcd"):
        slope = (0.35 if g % 2 == 0 else -0.35) if diverge else 0.1
        for k, year in enumerate(YEARS):
            age, female = rng.normal(0, 1, n), rng.integers(0, 2, n)
            p = 1 / (1 + np.exp(-(-0.2 + 0.3 * g + slope * k + 0.8 * age + 0.3 * female)))
            parts.append(pd.DataFrame({"year": year, "grp": name, "age": age,
                                       "female": female, "y": (rng.random(n) < p).astype(int)}))
    return SurveyScenario.from_frame(
        pd.concat(parts, ignore_index=True), groups="grp", time="year", target="y",
        features=["age", "female"], name="diverging" if diverge else "parallel", support=10,
        query=30, evaluation={"warmup": 1, "shots": [5], "steps": [0, 1]})


@pytest.fixture(scope="module")
def diverging() -> SurveyScenario:
    return synthetic_survey(True)


@pytest.fixture(scope="module")
def parallel() -> SurveyScenario:
    return synthetic_survey(False)


def frames(scenario: str, losses: dict[str, float], seeds: int = 3) -> dict[str, pd.DataFrame]:
    """Store-like frames: every learner scored on waves 2..5, loss = its level + noise."""
    rng = np.random.default_rng(len(scenario))
    runs, recs = [], []
    for rid, (name, level) in enumerate(
            [(n, lv) for n, lv in losses.items() for _ in range(seeds)], start=1):
        runs.append({"run_id": rid, "scenario": scenario, "seed": (rid - 1) % seeds,
                     "learner": name, "learner_name": name, "hyperparameters": "{}",
                     "status": "ok", "error": None, "seconds": 1.0})
        for wave in range(2, 6):
            loss = level + 0.01 * rng.standard_normal()
            recs += [(rid, wave, 5, 0, "loss", loss), (rid, wave, 5, 0, "accuracy", 0.6)]
    return {"runs": pd.DataFrame(runs),
            "metrics": pd.DataFrame(recs, columns=["run_id", *RECORD_COLUMNS]),
            "shifts": pd.DataFrame(columns=["scenario", "seed", *SHIFT_COLUMNS])}


def verdict(survey: SurveyScenario, twin: Scenario, out: Path) -> tuple[str, str]:
    """The twin report's verdict (markdown's bold answer line) and its html."""
    fidelity, warning = twin_fidelity(survey, twin)
    losses = {"scratch": 0.70, "partial_pooling": 0.60, "maml": 0.65}
    files = build_twin_report(frames("survey", losses), frames("twin", losses), out, "t",
                              n_boot=100, fidelity=fidelity, trend_warning=warning)
    md = files["markdown"].read_text()
    answer = next(line for line in md.splitlines() if line.startswith("**"))
    return answer, html.unescape(files["html"].read_text())


# --- measuring ------------------------------------------------------------------------------------
def test_group_trends_measure_opposite_and_parallel_trends(diverging, parallel) -> None:
    div, par = survey_shape(diverging).trends, survey_shape(parallel).trends
    assert div is not None and par is not None
    assert div.diverging and div.p < 1e-6 and not par.diverging
    assert div.change[0] > 0.15 and div.change[1] < -0.15     # a rises, b falls over 2000-2010
    assert div.change[2] > 0.1 and div.change[3] < -0.1
    assert div.spread > 0.2 and par.spread < 0.05 and div.span == (2000, 2010)
    assert div.spread_change > 0.1                              # the groups drift apart
    assert (div.se > 0).all() and (div.se < 0.1).all()


def test_group_trends_known_values_and_missing_cells() -> None:
    level = np.array([[0.2, 0.3, 0.4], [0.5, np.nan, 0.5], [0.1, np.nan, np.nan]])
    var = np.full_like(level, 1e-4)
    tr = group_trends(level, var, [1, 2, 3])
    assert tr is not None
    np.testing.assert_allclose(tr.change[:2], [0.2, 0.0])       # slope x span (3 - 1)
    assert np.isnan(tr.change[2])                               # one wave: no trend
    # se of each change: sqrt(sum(xc^2 var) / sxx^2) x span = sqrt(2e-4 / 4) x 2; Q about the
    # common change 0.1: 2 x 0.1^2 / se^2 = 100 on 1 df
    np.testing.assert_allclose(tr.se[:2], np.sqrt(2e-4))
    assert tr.q == pytest.approx(100.0) and tr.diverging
    assert group_trends(level[2:], var[2:], [1, 2, 3]) is None


# --- the report's verdict -------------------------------------------------------------------------
def test_twin_report_flags_diverging_trends_the_twin_cannot_follow(diverging, parallel,
                                                                   tmp_path: Path) -> None:
    common = fit_twin(diverging, rounds=1, match_trends=False)   # every group moves alike
    answer, page = verdict(diverging, Scenario.from_dict(common.config), tmp_path / "d")
    assert answer.startswith(f"**{CAUTION}") and "Cochran's Q" in answer
    assert "Too few to tell" in answer                          # the agreement still follows
    assert f'<p class="verdict">{CAUTION}' in page
    assert "prevalence trend 2000-2010, group a" in page
    assert common.trend_flag() is not None and CAUTION in common.summary()

    flat = fit_twin(parallel, rounds=1, match_trends=False)   # parallel trends: no caution
    fidelity, warning = twin_fidelity(parallel, Scenario.from_dict(flat.config))
    assert warning is None and flat.trend_flag() is None and "Caution" not in flat.summary()
    assert any(r.get("trend") for r in fidelity)                # yet measured and shown


# --- calibrating ----------------------------------------------------------------------------------
def test_calibrated_twin_follows_diverging_group_trends(diverging, parallel,
                                                        tmp_path: Path) -> None:
    fit = fit_twin(diverging, rounds=2)
    real, twin = fit.shape.trends, fit.trends
    assert real is not None and twin is not None
    assert np.all(np.sign(twin.change) == np.sign(real.change))
    assert twin.spread == pytest.approx(real.spread, abs=0.1) and fit.trend_flag() is None
    assert all(r["ok"] for r in fit.fidelity() if r.get("trend"))
    deltas = [s["delta"] for s in fit.config["shocks"] if s["kind"] == "abrupt"]
    assert deltas and all(isinstance(d, list) and len(d) == 4 for d in deltas)
    loaded = load_scenario(write_fit(diverging, fit, tmp_path / "twin.toml"))
    assert twin_fidelity(diverging, loaded)[1] is None          # measured afresh: no flag
    # parallel trends measured with noise are shrunk away: every group moves alike
    same = fit_twin(parallel, rounds=1)
    assert all(not isinstance(s.get("delta"), list) for s in same.config["shocks"])
