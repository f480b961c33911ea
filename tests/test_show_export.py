"""`simlab show` / `simlab export` show the hyperparameters a tuned run used (issue 24, item 5)."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import torch

from simlab.cli import main
from simlab.experiment.config import Scenario
from simlab.experiment.store import Store, to_json
from simlab.experiment.sweep import run_sweep

from helpers.scenarios import TUNED

torch.set_num_threads(1)


#: l2 searched away from its default (2.0), so the tuned value always differs from it
AWAY = {**TUNED, "evaluation": {**TUNED["evaluation"], "tuning": {
    "trials": 2, "startup": 1, "folds": 1, "space": {"scratch": {"l2": {"low": 5.0, "high": 10.0}}}}}}


def test_show_and_export_give_the_tuned_values(tmp_path: Path, capsys) -> None:
    db = tmp_path / "r.db"
    run_sweep(Scenario.from_dict(AWAY), ["scratch"], [0], db, executor="inline", quiet=True)
    with Store(db) as store:
        info = store.run_info(1)
        text = store.show(1)
    chosen = info["tuned"]
    assert chosen and "l2" in chosen
    assert info["hyperparameters"]["l2"] == chosen["l2"]
    assert info["hyperparameters_configured"]["l2"] == 2.0 != chosen["l2"]
    assert f"hyperparams   {to_json(info['hyperparameters'])}" in text
    assert "tuned         " in text and "configured    " in text
    assert main(["show", "1", "--db", str(db)]) == 0
    assert to_json(info["hyperparameters"]) in capsys.readouterr().out
    out = tmp_path / "x.csv"
    assert main(["export", str(db), "-o", str(out)]) == 0
    for path in (out, tmp_path / "x.runs.csv"):
        hp = json.loads(pd.read_csv(path)["hyperparameters"].iloc[0])
        assert hp["l2"] == chosen["l2"]
    runs = pd.read_csv(tmp_path / "x.runs.csv")
    assert json.loads(runs["hyperparameters_configured"].iloc[0])["l2"] == 2.0
    # a log written before non-finite numbers were stored as null (bare NaN: not JSON)
    with sqlite3.connect(db) as con:
        con.execute("""UPDATE runs SET log = '{"old":NaN,' || substr(log, 2)""")
    with Store(db) as store:
        assert store.run_info(1)["hyperparameters"]["l2"] == chosen["l2"]
        assert store.run_info(1)["tuned"] == chosen
        store.export(tmp_path / "old.csv")
    assert json.loads(pd.read_csv(tmp_path / "old.csv")["hyperparameters"].iloc[0])["l2"] \
        == chosen["l2"]
