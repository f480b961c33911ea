"""`simlab run` / `sweep` / `demo` end with the verdict paragraph (issue 24, item 7)."""
from __future__ import annotations

import re

import pytest

from simlab.cli import main

from helpers.scenarios import TINY, toml_text


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMLAB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "tiny.toml").write_text(toml_text(TINY))
    return tmp_path


def test_run_ends_with_the_reports_verdict(tiny, capsys) -> None:
    db, report = tiny / "r.db", tiny / "rep"
    code = main(["run", str(tiny / "tiny.toml"), "-l", "scratch,partial_pooling,persistence",
                 "-s", "2", "--db", str(db), "--executor", "inline", "-q", "--report",
                 str(report)])
    out = capsys.readouterr().out
    assert code == 0
    tail = out[out.index("verdict ("):]
    said = " ".join(tail.split(": ", 1)[1].split())
    bold = re.search(r"\n\*\*(.+?)\*\*\n", (report / "report.md").read_text()).group(1)
    assert said == " ".join(bold.split())
    assert out.rstrip().endswith(said.split()[-1])          # the finding is the last thing
    # the same verdicts as data, for a notebook
    import simlab

    table = simlab.compare(db)
    assert set(table["test"]) == {"seed"} and set(table["metric"]) >= {"excess_loss"}
    row = table[(table["learner"] == "scratch") & (table["reference"] == "persistence")
                & (table["metric"] == "excess_loss")]
    assert len(row) == 1 and row["outcome"].iloc[0] == "too few seeds"
