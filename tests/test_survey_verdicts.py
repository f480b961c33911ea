"""On a real survey the verdict uses the corrected resampled t test (seeds only re-split the
same respondents); the report says which test it used, and no caption keeps a placeholder
(issue 24, items 1 and 8)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from simlab.evaluation.result import SHIFT_COLUMNS
from simlab.evaluation.comparisons import compare, compare_all
from simlab.evaluation.inference import corrected_t_test, seed_t_test, survey_ratio
from simlab.report import build_report

from helpers.frames import RUN_COLS, fake_runs, fake_scores

LEDGER = {"design": "waves", "support": 20, "query": 50, "min_query": 5, "max_lost": 0.2,
          "waves": [], "total": {"read": 700, "tasks": 10, "used": 600, "lost": 0},
          "lost_share": 0.0, "lost_waves": []}


def test_corrected_test_widens_the_seed_interval_by_the_resampling_factor() -> None:
    means = np.array([0.01, 0.03, 0.02, 0.025, 0.015, 0.02])
    plain, fixed = seed_t_test(means), corrected_t_test(means, 2.0)
    same = corrected_t_test(means, 0.0)
    assert float(same["p"]) == pytest.approx(float(plain["p"]))
    width = lambda r: float(r["hi"] - r["lo"])   # noqa: E731
    assert width(fixed) == pytest.approx(width(plain) * math.sqrt(1 + 6 * 2.0))
    assert float(fixed["p"]) > float(plain["p"])
    assert float(plain["p"]) < 0.001 < 0.05 < float(fixed["p"])
    with pytest.raises(ValueError, match="ratio"):
        corrected_t_test(means, -1.0)


def test_survey_ratio_is_query_over_support_of_a_scored_cell() -> None:
    assert survey_ratio(LEDGER) == pytest.approx((600 / 10 - 20) / 20)
    assert survey_ratio(None) is None and survey_ratio({"no": "ledger"}) is None


def test_compare_all_uses_the_survey_test_when_given_a_ratio() -> None:
    scores = fake_scores({"maml": -0.01, "partial_pooling": 0.0})
    seed = compare(scores, "maml", "partial_pooling", "loss")
    survey = compare(scores, "maml", "partial_pooling", "loss", ratio=2.0)
    assert (seed.test, survey.test) == ("seed", "survey")
    assert survey.p_value > seed.p_value and survey.ci_hi - survey.ci_lo > seed.ci_hi - seed.ci_lo
    assert "corrected resampled t test" in survey.verdict
    assert all(c.test == "survey" for c in compare_all(scores, "loss", ratio=2.0))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A survey scenario (no oracle, its ledger in the config, no shifts) and a simulated
    one (oracle and a shift), with figures."""
    runs, mets, shifts = [], [], []
    for name, oracle, shift in (("sim", True, 6), ("survey", False, None)):
        r, m, s = fake_runs(name, oracle, shift, waves=range(2, 9), shots=(4,), steps=(0, 2))
        runs, mets, shifts = runs + r, mets + m, shifts + s
    out = tmp_path_factory.mktemp("rep")
    mets = pd.concat(mets)
    prev = mets[(mets["metric"] == "loss") & mets["run_id"].str.startswith("survey")].copy()
    prev["metric"], prev["value"] = "prevalence_error", (prev["value"] - 0.45) / 4
    paths = build_report(pd.DataFrame(runs, columns=RUN_COLS), pd.concat([mets, prev]),
                         pd.DataFrame(shifts, columns=["scenario", "seed"] + SHIFT_COLUMNS),
                         out, "two", {"sim": {}, "survey": {"ledger": LEDGER}})
    return paths["markdown"].read_text(), paths["html"].read_text()


def test_the_report_says_which_test_and_why(report) -> None:
    md, _ = report
    sim, survey = md.split("## Scenario: survey")
    assert "paired t test over seeds: each seed is an independently simulated" in sim
    assert "corrected resampled t test" not in sim.split("## How to read")[0]
    assert "corrected resampled t test over seeds (Nadeau & Bengio 2003)" in survey
    assert "re-splits the same respondents" in survey


def test_no_placeholder_is_left_in_the_report(report) -> None:
    md, html = report
    assert "{reference}" not in md and "{reference}" not in html
    assert "Difference from partial_pooling around each shift" in md


def test_prevalence_error_gets_its_own_paired_tests(report) -> None:
    md, html = report
    sim, survey = md.split("## Scenario: survey")
    assert "Paired tests on group prevalence error" not in sim      # no record of it there
    part = survey.split("### Paired tests on group prevalence error")[1]
    assert "**On group prevalence error: maml beats partial pooling" in part
    # brackets are escaped in Markdown cells (no link syntax from data: issue 21.10)
    assert (r"| learner | prevalence error (proportion, 0-1) \[95% CI\] | vs partial_pooling "
            r"\[95% CI\] |") in part
    assert "corrected resampled t test" in part.split("###")[0]
    assert "Paired tests on group prevalence error" in html


def test_survey_leaderboard_intervals_are_widened_like_the_test() -> None:
    from simlab.evaluation.inference import seed_interval

    v = [0.60, 0.62, 0.61, 0.63, 0.60, 0.62]
    plain, survey = seed_interval(v), seed_interval(v, ratio=2.0)
    assert survey.hi - survey.lo == pytest.approx((plain.hi - plain.lo) * math.sqrt(1 + 12))


def test_a_report_of_several_scenarios_opens_with_their_verdicts(report) -> None:
    md, html = report
    top = md.split("## Scenario: sim")[0]
    assert "## Across scenarios" in top and "| sim |" in top and "| survey |" in top
    assert "<h2>Across scenarios</h2>" in html
