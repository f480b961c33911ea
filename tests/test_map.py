"""`simlab map`: a tiny 2x2 map end to end (inline and process executors store the same
numbers), the figure and verdict paragraph rebuilt from the store, resume, refinement and
every bad input as one clear error before anything runs."""
from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simlab.cli import main
from simlab.errors import ScenarioError
from simlab.evaluation.statistics import compare_all, comparison_metric, wave_scores
from simlab.experiment.map import load_map, parse_point, refine_points, run_map
from simlab.experiment.store import Store
from simlab.report.map import (MapResults, boundaries, map_figure, map_results,
                               verdict_paragraph, write_map_report)

from helpers.scenarios import TINY, toml_text

LEARNERS = ["scratch", "partial_pooling", "protonet"]
AXES = ('axes = [{field = "graph.n_groups", levels = [3, 4]},\n'
        '        {field = "population.heterogeneity", levels = [0.0, 1.0]}]')


def map_text(axes: str = AXES, **extra: object) -> str:
    lines = ["[map]", 'scenario = "tiny.toml"', axes,
             f"learners = {LEARNERS!r}".replace("'", '"'), "seeds = 2"]
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("map")
    mp = pytest.MonkeyPatch()
    mp.setenv("SIMLAB_CACHE", str(root / "cache"))     # process workers inherit it
    (root / "tiny.toml").write_text(toml_text(TINY))
    (root / "tiny_map.toml").write_text(map_text())
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def inline_db(root) -> Path:
    """The 2x2 map (4 points x 3 learners x 2 seeds) run inline."""
    db = root / "inline.db"
    summary = run_map(load_map(root / "tiny_map.toml"), executor="inline", db=db, quiet=True)
    assert (summary.cells, summary.ok + summary.diverged, summary.failed) == (24, 24, 0), summary
    return db


def _numbers(db: Path) -> pd.DataFrame:
    """Every stored number except times, in a fixed order."""
    with Store(db) as store:
        f = store.frames()
    runs = f["runs"][["run_id", "scenario", "seed", "learner", "status"]]
    summ = f["summaries"].assign(wave=-1, shots=-1, steps=-1, metric=f["summaries"]["name"])
    df = runs.merge(pd.concat([f["metrics"], summ.drop(columns="name")]), on="run_id")
    df = df[~df["metric"].str.contains("seconds")]
    return df.drop(columns="run_id").sort_values(
        ["scenario", "seed", "learner", "wave", "shots", "steps", "metric"]).reset_index(
        drop=True)


def test_plan_points_are_scenarios_named_by_their_coordinates(root):
    plan = load_map(root / "tiny_map.toml")
    assert plan.name == "tiny_map" and plan.n_cells == 24
    assert [p.graph.n_groups for p in plan.points] == [3, 3, 4, 4]
    assert [p.population.heterogeneity for p in plan.points] == [0.0, 1.0, 0.0, 1.0]
    assert parse_point(plan.points[1].name) == ("tiny_map", [("graph.n_groups", "3"),
                                                             ("population.heterogeneity", "1.0")])


def test_inline_and_process_store_identical_records(root, inline_db):
    db = root / "process.db"
    summary = run_map(load_map(root / "tiny_map.toml"), executor="process", jobs=1, db=db,
                      quiet=True)
    assert (summary.ok + summary.diverged, summary.failed) == (24, 0), summary
    ref = _numbers(inline_db)
    assert len(ref) > 0 and ref["scenario"].nunique() == 4
    pd.testing.assert_frame_equal(_numbers(db), ref, check_exact=True)


def test_report_is_rebuilt_from_the_store_alone(root, inline_db, tmp_path):
    first = write_map_report(inline_db, "tiny_map", tmp_path / "a")
    again = write_map_report(inline_db, "tiny_map", tmp_path / "b")
    for kind in ("figure", "markdown", "points"):
        assert first[kind].read_bytes() == again[kind].read_bytes(), kind
    md = first["markdown"].read_text()
    res = map_results(inline_db, "tiny_map")
    assert verdict_paragraph(res) in md and "<details>" in md and "map.png" in md
    assert "<details>" in first["html"].read_text()
    # each point's numbers are the statistics module's own comparison on that point's runs
    with Store(inline_db) as store:
        point = res.points.iloc[2]
        f = store.frames(point["point"])
    scores = wave_scores(f["runs"], f["metrics"], comparison_metric(f["metrics"]))
    comp = next(c for c in compare_all(scores, point["metric"])
                if c.learner == point["best_meta"] and c.reference == point["best_baseline"])
    assert comp.mean_diff == pytest.approx(point["diff"]) and comp.mdd == pytest.approx(
        point["mdd"])
    assert point["best_baseline"] in ("scratch", "partial_pooling")
    assert point["best_meta"] == "protonet" and point["cpu_meta"] > 0
    # two seeds: the paired test gives no verdict, and the paragraph says why
    assert set(res.points["verdict"]) == {"too few seeds"}
    assert "no verdict" in verdict_paragraph(res) and "at least 6" in verdict_paragraph(res)


def test_resumed_map_runs_only_missing_cells(root, inline_db, tmp_path):
    db = tmp_path / "resume.db"
    shutil.copy(inline_db, db)
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM runs WHERE learner='protonet' AND seed=1")
    again = run_map(load_map(root / "tiny_map.toml"), executor="inline", db=db, quiet=True)
    assert (again.skipped, again.ok + again.diverged) == (20, 4), again
    (root / "wider.toml").write_text(map_text(AXES.replace("[3, 4]", "[3, 4, 5]")).replace(
        "[map]", '[map]\nname = "tiny_map"'))
    wider = run_map(load_map(root / "wider.toml"), executor="inline", db=db, quiet=True)
    assert (wider.cells, wider.skipped, wider.ok + wider.diverged) == (36, 24, 12), wider
    assert list(map_results(db, "tiny_map").axes[0][1]) == ["3", "4", "5"]


def _fake(verdicts: list[list[str]], diffs: list[list[float]]) -> MapResults:
    """A 2-axis map's results with the given verdicts (rows: a = 1, 2; columns: b)."""
    rows = []
    for i, (vs, ds) in enumerate(zip(verdicts, diffs)):
        for j, (v, d) in enumerate(zip(vs, ds)):
            rows.append({"a": str(i + 1), "b": str(10 * (j + 1)), "point": f"m@a={i};b={j}",
                         "best_meta": "protonet", "best_baseline": "partial_pooling",
                         "metric": "excess_loss", "diff": d, "ci_lo": d - 0.01,
                         "ci_hi": d + 0.01, "p_adjusted": 0.01, "n_family": 2, "mdd": 0.02,
                         "n_seeds": 6, "outcome": "", "verdict": v, "cpu_meta": 1.0,
                         "cpu_baseline": 0.1, "mean_meta": 0.1, "mean_baseline": 0.1})
    axes = [("a", [str(i + 1) for i in range(len(verdicts))]),
            ("b", [str(10 * (j + 1)) for j in range(len(verdicts[0]))])]
    return MapResults("m", axes, pd.DataFrame(rows), pd.DataFrame(
        columns=["a", "b", "point", "learner", "mean", "lo", "hi", "seeds", "cpu"]))


def test_paragraph_states_where_meta_learning_wins_ties_and_loses():
    res = _fake([["wins", "ties", "loses"], ["wins", "wins", "ties"]],
                [[-0.1, 0.0, 0.1], [-0.2, -0.1, 0.01]])
    text = verdict_paragraph(res)
    assert "Meta-learning wins at 3 points" in text and "it ties at 2 points" in text
    assert "it loses at 1 point (a = 1, b = 30)" in text
    assert "Holm-adjusted over the 2 meta-learners" in text
    turns = {(a["point"], b["point"]) for a, b in boundaries(res)}
    assert turns == {("m@a=0;b=0", "m@a=0;b=1"), ("m@a=0;b=1", "m@a=0;b=2"),
                     ("m@a=1;b=1", "m@a=1;b=2"), ("m@a=0;b=1", "m@a=1;b=1"),
                     ("m@a=0;b=2", "m@a=1;b=2")}
    assert "a = 1, b = 10 (wins) -> a = 1, b = 20 (ties)" in text
    assert "The verdict turns between" in text
    assert ("Along b: at a = 1 it wins at 10, ties at 20 and loses at 30; at a = 2 it wins at "
            "10, 20 and ties at 30.") in text
    assert "Where it wins, the best meta-learner is protonet (3 points)." in text
    same = verdict_paragraph(_fake([["ties", "ties"]], [[0.0, 0.01]]))
    assert "does not turn on this map" in same
    assert map_figure(res)[:4] == b"\x89PNG"


def test_one_axis_map_draws_a_line_with_intervals(root, tmp_path):
    (root / "line.toml").write_text(map_text(
        'axes = [{field = "survey.query", levels = [6, 8]}]').replace(
        '"scratch", ', ""))
    plan = load_map(root / "line.toml")
    db = tmp_path / "line.db"
    assert run_map(plan, executor="inline", db=db, quiet=True).failed == 0
    files = write_map_report(db, "line", tmp_path / "rep")
    res = map_results(db, "line")
    assert res.fields == ["survey.query"] and len(res.points) == 2
    assert files["figure"].read_bytes()[:4] == b"\x89PNG"


def test_refinement_adds_midpoints_where_the_verdict_turns(root):
    plan = load_map(root / "tiny_map.toml")
    verdicts = {("3", "0.0"): "ties", ("4", "0.0"): "ties", ("3", "1.0"): "wins",
                ("4", "1.0"): "ties"}
    added = refine_points(plan, verdicts, budget=5)
    # n_groups 3 -> 4 has no integer midpoint; heterogeneity 0 -> 1 turns at n_groups = 3 only
    assert [p.name for p in added] == ["tiny_map@graph.n_groups=3;population.heterogeneity=0.5"]
    assert added[0].population.heterogeneity == 0.5 and added[0].graph.n_groups == 3
    assert refine_points(plan, verdicts, budget=5) == []      # already there
    assert refine_points(load_map(root / "tiny_map.toml"), verdicts, budget=0) == []


@pytest.mark.parametrize("axes, words", [
    ('axes = [{field = "graph.n_group", levels = [3, 4]}]',
     ["graph.n_group", "did you mean 'graph.n_groups'"]),
    ('axes = [{field = "graph.n_groups", levels = [3, "four"]}]',
     ["levels[1] = 'four'", "graph.n_groups is a whole number"]),
    ('axes = [{field = "survey.support", levels = [6, 2]}]',
     ["point 'bad@survey.support=2'", "survey.support = 2", "evaluation.shots"]),
    ('axes = [{field = "evaluation.seeds", levels = [2, 3]}]', ["map's `seeds`"]),
    ('axes = [{field = "graph.n_groups", levels = [3, 3]}]', ["listed twice"]),
])
def test_bad_axes_are_one_clear_error_before_anything_runs(root, axes, words):
    (root / "bad.toml").write_text(map_text(axes))
    with pytest.raises(ScenarioError) as err:
        load_map(root / "bad.toml")
    for w in words:
        assert w in str(err.value), str(err.value)
    assert str(root / "bad.toml") in str(err.value)


def test_a_map_file_that_is_not_utf8_names_its_path(root):
    (root / "latin1.toml").write_bytes(map_text().encode() + b"# \xe9\n")
    with pytest.raises(ScenarioError, match=r"latin1.toml: not UTF-8 text \(offset \d+\)"):
        load_map(root / "latin1.toml")


def test_too_many_cells_and_wrong_learners_are_refused(root, monkeypatch):
    monkeypatch.delenv("SIMLAB_I_KNOW", raising=False)
    (root / "big.toml").write_text(map_text().replace("seeds = 2", "seeds = 1000000"))
    with pytest.raises(ScenarioError, match="map.seeds = 1,000,000 is above the limit"):
        load_map(root / "big.toml")
    levels = list(range(3, 103))         # 100 x 2 points x 3 learners x 9,000 seeds
    (root / "big.toml").write_text(map_text(AXES.replace("[3, 4]", str(levels))).replace(
        "seeds = 2", "seeds = 9000"))
    with pytest.raises(ScenarioError, match=r"points x learners x seeds = 5,400,000 is above "
                       r"the limit.*\(200 points x 3 learners x 9000 seeds\)"):
        load_map(root / "big.toml")
    (root / "few.toml").write_text(map_text().replace('"protonet"', '"finetune"'))
    with pytest.raises(ScenarioError, match="at least one meta-learner"):
        load_map(root / "few.toml")


def test_scenario_axis_takes_scenario_files_as_levels(root):
    (root / "other.toml").write_text(toml_text({**TINY, "name": "other",
                                                "population": {"heterogeneity": 0.2}}))
    (root / "scen.toml").write_text(map_text(
        'axes = [{field = "scenario", levels = ["tiny.toml", "other.toml"]},\n'
        '        {field = "graph.n_groups", levels = [3, 4]}]').replace(
        'scenario = "tiny.toml"\n', ""))
    plan = load_map(root / "scen.toml")
    assert [p.name for p in plan.points][::3] == ["scen@scenario=tiny;graph.n_groups=3",
                                                  "scen@scenario=other;graph.n_groups=4"]
    assert [p.population.heterogeneity for p in plan.points] == [0.5, 0.5, 0.2, 0.2]


def test_cli_runs_and_rebuilds_the_report(root, inline_db, capsys):
    out = root / "cli_report"
    code = main(["map", str(root / "tiny_map.toml"), "--db", str(inline_db), "--report",
                 str(out), "--executor", "inline", "-q"])
    text = capsys.readouterr().out
    assert code == 0 and "24 already in" in text and (out / "report.md").is_file()
    (out / "report.md").unlink()
    assert main(["map", str(root / "tiny_map.toml"), "--db", str(inline_db), "--report",
                 str(out), "--report-only"]) == 0
    assert "too few seeds" in (out / "report.md").read_text()
    (root / "typo.toml").write_text(map_text('axes = [{field = "graph.n_grups", '
                                             'levels = [3]}]'))
    assert main(["map", str(root / "typo.toml")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'graph.n_groups'" in err
    assert np.isfinite(map_results(inline_db, "tiny_map").points["diff"]).all()


def test_set_table_fixes_a_field_at_every_point(root):
    (root / "fixed.toml").write_text(map_text() + '[map.set]\n"survey.query" = 6\n')
    plan = load_map(root / "fixed.toml")
    assert {p.survey.query for p in plan.points} == {6}
    assert [p.graph.n_groups for p in plan.points] == [3, 3, 4, 4]
    (root / "fixed.toml").write_text(map_text() + '[map.set]\n"survey.qery" = 6\n')
    with pytest.raises(ScenarioError, match=r"map.set.survey.qery: .*did you mean "
                                            r"'survey.query'"):
        load_map(root / "fixed.toml")
    (root / "fixed.toml").write_text(map_text() + '[map.set]\n"graph.n_groups" = 6\n')
    with pytest.raises(ScenarioError, match="also an axis"):
        load_map(root / "fixed.toml")


def test_cli_refines_where_the_verdict_turns_and_runs_only_the_new_point(root, tmp_path,
                                                                          monkeypatch, capsys):
    import simlab.report.map as report_map

    (root / "refine.toml").write_text(map_text(
        'axes = [{field = "population.heterogeneity", levels = [0.0, 1.0]}]').replace(
        '"scratch", ', "") + "refine = {points = 3, rounds = 2}\n")
    seen = []

    def verdicts(db, name):      # two seeds never give a verdict: pretend it turns at 0.25
        seen.append(name)
        return {("0.0",): "wins", ("0.25",): "wins", ("0.5",): "ties", ("1.0",): "ties"}

    monkeypatch.setattr(report_map, "point_verdicts", verdicts)
    db = tmp_path / "refine.db"
    assert main(["map", str(root / "refine.toml"), "--db", str(db), "--report",
                 str(tmp_path / "rep"), "--executor", "inline", "-q"]) == 0
    out = capsys.readouterr().out
    assert "refine: 1 point(s)" in out and "heterogeneity=0.5" in out and "=0.25" in out
    res = map_results(db, "refine")
    assert res.axes[0][1] == ["0.0", "0.25", "0.5", "1.0"] and seen == ["refine"] * 2
    # each round runs only the new point's 4 cells (2 learners x 2 seeds)
    assert "12 cells: 4 ok, 0 diverged, 0 failed, 8 already" in out
    assert "16 cells: 4 ok, 0 diverged, 0 failed, 12 already" in out
    assert len(res.points) == 4 and (res.points["n_seeds"] == 2).all()
