"""Headroom diagnostic: a flexible model gains on a nonlinear response, not on the GLM."""
from __future__ import annotations

import pytest

from simlab.cli import main
from simlab.experiment.config import load_scenario
from simlab.society.diagnostics.headroom import default_waves, headroom, headroom_table

SMALL = {"graph": {"n_groups": 4, "group_size": 600}, "shocks": []}


def test_default_waves_spread_over_long_streams() -> None:
    assert default_waves(5) == [0, 1, 2, 3, 4]
    waves = default_waves(60)
    assert len(waves) == 12 and waves[0] == 0 and waves[-1] == 59


def test_too_few_agents_per_group_is_one_clear_error() -> None:
    sc = load_scenario("response_threshold").override(SMALL)
    with pytest.raises(ValueError, match="lower --respondents to <= 550"):
        headroom(sc, n=580, waves=[0])


def test_cli_reports_a_bad_wave(capsys) -> None:
    assert main(["stream", "response_threshold", "--headroom", "--waves", "99"]) == 1
    assert "--waves [99]: the survey has waves 0..19" in capsys.readouterr().err


@pytest.mark.slow
def test_threshold_has_headroom_and_the_glm_control_none() -> None:
    gains = {}
    for name in ("response_glm_control", "response_threshold"):
        rows = headroom(load_scenario(name).override(SMALL), n=400, waves=[2, 8])
        gains[name] = sum(r.gain for r in rows) / len(rows)
        assert all(r.ceiling < r.glm for r in rows)
        assert "mean gain" in headroom_table(rows, 400)
    assert gains["response_threshold"] > 0.02 > abs(gains["response_glm_control"])
