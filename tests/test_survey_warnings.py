"""A survey's data warnings print once, as one line, without Python file paths (issue 24,
item 8)."""
from __future__ import annotations

import pandas as pd
from test_gss import DATA_OK, write_survey, write_toml

from simlab.cli import main


def test_a_data_warning_prints_once_without_internal_paths(tmp_path, monkeypatch,
                                                           capsys) -> None:
    monkeypatch.setenv("SIMLAB_CACHE", str(tmp_path / "cache"))
    csv = write_survey(tmp_path / "tiny.csv")
    df = pd.read_csv(csv)
    df.loc[df["year"] == 2002, "y"] = None               # a whole survey year lost
    df.to_csv(csv, index=False)
    path = write_toml(tmp_path, "tiny.toml", DATA_OK)
    assert main(["stream", str(path)]) == 0
    out, err = capsys.readouterr()
    both = out + err
    assert both.count("whole wave(s) lost") == 1
    assert "simlab: warning: " in err and ".py:" not in err
