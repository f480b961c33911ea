"""The report shows what the society did (its per-tick reporters) under the per-wave scores."""
from __future__ import annotations

import base64

import pandas as pd

from simlab.evaluation.result import SHIFT_COLUMNS
from simlab.report.report import build_report
from simlab.report.society_figures import society_section

from helpers.frames import PNG, RUN_COLS, fake_runs


def test_report_has_the_society_section_for_a_simulated_scenario(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMLAB_CACHE", str(tmp_path / "cache"))
    runs, mets, shifts = fake_runs("contagion_tipping", True, 10, seeds=(0,), waves=range(8, 14),
                                    shots=(2,), steps=(0, 1))
    out = build_report(pd.DataFrame(runs, columns=RUN_COLS), pd.concat(mets, ignore_index=True),
                       pd.DataFrame(shifts, columns=["scenario", "seed"] + SHIFT_COLUMNS),
                       tmp_path / "report", "t", n_boot=50)
    md, html = out["markdown"].read_text(), out["html"].read_text()
    assert md.index("What the society did") > md.index("### Figures")
    assert "adoption share" in md and "response mechanism: glm" in md
    assert (tmp_path / "report" / "figures" / "contagion_tipping_society.png").read_bytes() \
        .startswith(PNG)
    src = html.split('id="contagion_tipping-society"><img src="', 1)[1].split('"', 1)[0]
    assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)


def test_unknown_scenarios_have_no_society_section(tmp_path):
    assert society_section("no such scenario", pd.DataFrame({"seed": [0]}), tmp_path) is None
