"""The example scripts (examples/*.py) run end to end (tiny settings) and write their reports;
`simlab demo` runs what sweeps/demo.toml lists."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    """Import a script as a module (so classes it defines are importable by name)."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_custom_shock(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMLAB_CACHE", str(tmp_path / "cache"))
    script = _load("custom_shock")
    sc = script.custom_scenario(tiny=True)
    assert [s.name for s in sc.shocks] == ["election_cycle", "scandal"]
    files = script.main(["--tiny", "--executor", "inline", "--db", str(tmp_path / "r.db"),
                         "--out", str(tmp_path / "report")])
    text = files["markdown"].read_text()
    assert "election_cycle" in text and "partial_pooling" in text
    assert sc.stream(0).shifts, "the custom schedule must fire shifts"


def test_custom_learner_as_a_script(tmp_path):
    env = {**os.environ, "SIMLAB_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "custom_learner.py"), "--tiny", "--executor", "inline",
         "--db", str(tmp_path / "r.db"), "--out", str(tmp_path / "report")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "5 cells: 5 ok" in done.stdout
    md = (tmp_path / "report" / "report.md").read_text()
    assert "shrunk_prevalence[strength=2.0]" in md and "shrunk_prevalence[strength=20.0]" in md


def test_custom_learner_shrinks_toward_the_pooled_prevalence(tmp_path, monkeypatch):
    import torch

    from simlab.learners import Budget, TaskSpec
    from simlab.tasks.batch import TaskBatch

    monkeypatch.setenv("SIMLAB_CACHE", str(tmp_path / "cache"))
    script = _load("custom_learner")
    stream = script.scenario(tiny=True).stream(0)
    learner = script.ShrunkPrevalence(strength=4.0)
    learner.setup(TaskSpec.of(stream.waves[0][0]))
    learner.meta_fit(stream.waves[0], Budget())
    batch = TaskBatch.from_tasks(stream.waves[1])
    pred = learner.adapt(batch, [0, 3]).predict(batch)
    k = batch.shots
    expect = (batch.y_support.sum(1) + 4.0 * learner.prior[0]) / (k + 4.0)
    assert pred.shape == (2, batch.size, batch.x_query.shape[1])
    torch.testing.assert_close(pred[1, :, 0], expect)


DEMO_LEARNERS = ["meta_lstm", "maml", "relation", "cpd:dynamic_mlm", "dynamic_mlm",
                 "cpd:partial_pooling", "partial_pooling", "anil", "finetune", "protonet",
                 "scratch", "persistence", "group_mean", "oracle"]


def _demo_call(monkeypatch, argv: list[str]) -> dict:
    """What ``simlab demo argv`` hands to the sweep (the sweep itself is not run)."""
    from types import SimpleNamespace

    import simlab.cli as cli

    seen: dict = {}

    def fake_sweep(scenarios, learners, seeds, grid, args, title=None, verdict=True):
        seen.update(scenarios=[s.name for s in scenarios], learners=list(learners),
                    seeds=seeds, grid=grid, db=args.db, report=args.report, title=title)
        return SimpleNamespace(failed=0, cells=0)

    monkeypatch.setattr(cli, "_sweep", fake_sweep)
    monkeypatch.setattr(cli, "_print_verdicts", lambda db, names: None)
    assert cli.main(["demo", *argv]) == 0
    return seen


def test_demo_runs_the_learners_of_its_sweep_file(monkeypatch):
    """The list the demo ran before it moved to sweeps/demo.toml, in the same order."""
    assert _demo_call(monkeypatch, []) == {
        "scenarios": ["opinion_shift"], "learners": DEMO_LEARNERS, "seeds": 6, "grid": None,
        "db": "results/demo.db", "report": "reports/demo", "title": "simlab demo: opinion_shift"}
    from simlab.experiment.sweep import load_sweep

    plan = load_sweep(Path(__file__).resolve().parents[1] / "sweeps" / "demo.toml")
    assert [s.name for s in plan.learners] == DEMO_LEARNERS and plan.seeds == 6


def test_demo_options_override_its_sweep_file(monkeypatch, tmp_path):
    seen = _demo_call(monkeypatch, ["-l", "scratch,oracle", "-s", "0,3", "--db",
                                    str(tmp_path / "d.db"), "-o", str(tmp_path / "r")])
    assert (seen["learners"], seen["seeds"]) == (["scratch", "oracle"], [0, 3])
    assert (seen["db"], seen["report"]) == (str(tmp_path / "d.db"), str(tmp_path / "r"))
