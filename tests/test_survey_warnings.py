"""A survey's data warnings print once, as one line, without Python file paths (issue 24,
item 8). Run as a user runs it (a subprocess: pytest records warnings instead of printing)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from helpers.scenarios import DATA_OK, write_survey, write_toml

ROOT = Path(__file__).resolve().parents[1]


def test_a_data_warning_prints_once_without_internal_paths(tmp_path) -> None:
    csv = write_survey(tmp_path / "tiny.csv")
    df = pd.read_csv(csv)
    df.loc[df["year"] == 2002, "y"] = None               # a whole survey year lost
    df.to_csv(csv, index=False)
    path = write_toml(tmp_path, "tiny.toml", DATA_OK)
    env = {**os.environ, "SIMLAB_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("PYTHONWARNINGS", None)
    done = subprocess.run([sys.executable, "-m", "simlab", "stream", str(path)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    both = done.stdout + done.stderr
    assert both.count("whole wave(s) lost") == 1
    assert "simlab: warning: " in done.stderr and ".py:" not in done.stderr
