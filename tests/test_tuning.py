"""Equal-budget tuning: search spaces, the warm-up-only objective, seeds, sweeps, bad input."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from test_gss import DATA_OK, write_survey, write_toml
from test_protocol import make_stream
from test_sweep import TINY, toml_text

from simlab.cli import main
from simlab.experiment.config import Scenario, ScenarioError, load_scenario
from simlab.experiment.store import Store
from simlab.experiment.sweep import plan_cells, run_sweep
from simlab.report import report_from_store
from simlab.learners import available, learner_class
from simlab.evaluation import tuning as tuning_mod
from simlab.learners.base import Budget, Choice, Float, Int
from simlab.learners.baselines import Scratch
from simlab.learners.registry import make_learner
from simlab.evaluation.tuning import TrialSettings, resolve_space, trial_score, tune
from simlab.tasks.task import TaskStream

torch.set_num_threads(1)
FAST = {"warmup": 3, "shots": [4, 8], "steps": [0, 2], "budget": Budget(2, 2)}
TUNED = {**TINY, "learners": {},
         "evaluation": {**TINY["evaluation"], "learners": ["scratch", "partial_pooling", "oracle"],
                        "tuning": {"trials": 2}}}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMLAB_CACHE", str(tmp_path / "cache"))


# --- the spaces -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(available()))
def test_every_builtin_space_names_real_fields_with_valid_ends(name: str) -> None:
    cls = learner_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    assert set(cls.search_space) <= fields
    assert (cls.search_space == {}) == (name == "oracle")
    for field, rng in cls.search_space.items():
        assert isinstance(rng, (Float, Int, Choice))
        ends = rng.choices if isinstance(rng, Choice) else (rng.low, rng.high)
        for v in ends:
            make_learner(name, **{field: v}).validate()     # the learner accepts every end


def test_fixed_hyperparameters_leave_the_default_space() -> None:
    assert "hidden" not in resolve_space("maml", {"hidden": [8]})
    assert set(resolve_space("maml", {})) == set(learner_class("maml").search_space)


# --- the objective ----------------------------------------------------------------------------
@dataclasses.dataclass
class _Recorder(Scratch):
    """Scratch that records the waves of everything it is given."""

    seen: dict = dataclasses.field(default_factory=lambda: {"fit": [], "adapt": []})

    def meta_fit(self, tasks, budget):
        self.seen["fit"] += [int(t.info["wave"]) for t in tasks]
        return super().meta_fit(tasks, budget)

    def adapt(self, support, steps):
        self.seen["adapt"] += support.wave.tolist()
        return super().adapt(support, steps)


def test_trials_fit_on_early_warmup_waves_and_score_only_the_last_one(monkeypatch) -> None:
    made: list[_Recorder] = []

    def fake(name, **params):
        made.append(_Recorder(**params))
        return made[-1]

    monkeypatch.setattr(tuning_mod, "make_learner", fake)
    stream = make_stream(waves=7)
    res = tune("scratch", {}, stream, trials=2, seed=0, **FAST)
    fits = [w for r in made for w in r.seen["fit"]]
    adapts = [w for r in made for w in r.seen["adapt"]]
    assert res.trials == 2 and len(res.trace) == 2
    assert fits and set(fits) == {0, 1}                     # waves [0, warmup - 1)
    assert adapts and set(adapts) == {FAST["warmup"] - 1}   # only the last warm-up wave
    assert max(fits + adapts) < FAST["warmup"]              # never a scored wave


def test_trial_is_a_pure_function_of_learner_params_stream_seed() -> None:
    stream = make_stream(waves=5)
    settings = TrialSettings(3, (4,), (0, 2), Budget(2, 2))
    one = trial_score("maml", {"hidden": (4,)}, [stream], settings, seed=1)
    assert one == trial_score("maml", {"hidden": (4,)}, [stream], settings, seed=1)


def test_tuning_is_reproducible_with_the_seed() -> None:
    stream = make_stream(waves=5)
    runs = [tune("maml", {"hidden": (4,)}, stream, trials=2, seed=s, **FAST) for s in (3, 3, 4)]
    assert runs[0].trace[0]["params"] == {"inner_lr": 0.01, "inner_steps": 1, "outer_lr": 1e-3}
    strip = [[{k: t[k] for k in ("params", "value", "state")} for t in r.trace] for r in runs]
    assert strip[0] == strip[1] and runs[0].best_params == runs[1].best_params
    assert strip[0][1]["params"] != strip[2][1]["params"]     # another seed, another sample


def test_every_learner_gets_the_same_trials_and_the_oracle_none() -> None:
    stream = make_stream(waves=5)
    counts = {n: len(tune(n, {"hidden": (4,)} if n == "protonet" else {}, stream, trials=2,
                          **FAST).trace) for n in ("scratch", "partial_pooling", "protonet",
                                                   "oracle")}
    assert counts == {"scratch": 2, "partial_pooling": 2, "protonet": 2, "oracle": 0}


# --- bad input --------------------------------------------------------------------------------
def test_bad_tuning_input_raises_one_clear_error() -> None:
    stream = make_stream(waves=5)
    with pytest.raises(ValueError, match=r"space\.maml\.inner_lrr: .*no hyperparameter "
                                         r"'inner_lrr'; did you mean 'inner_lr'"):
        tune("maml", {}, stream, space={"inner_lrr": Float(0.01, 0.1)}, **FAST)
    with pytest.raises(ValueError, match=r"tuning\.trials = 0: give an integer >= 1"):
        tune("scratch", {}, stream, trials=0, **FAST)
    with pytest.raises(ValueError, match=r"tuning\.metric = 'los' is unknown; did you mean"):
        tune("scratch", {}, stream, metric="los", **FAST)
    no_oracle = TaskStream([[dataclasses.replace(t, oracle_query=None) for t in w]
                            for w in stream.waves], [])
    with pytest.raises(ValueError, match=r"metric = 'excess_loss' needs the oracle"):
        tune("scratch", {}, no_oracle, metric="excess_loss", **FAST)
    with pytest.raises(ValueError, match=r"needs warmup >= 2"):
        tune("scratch", {}, stream, **{**FAST, "warmup": 1})
    with pytest.raises(ValueError, match=r"hidden is fixed to"):
        resolve_space("maml", {"hidden": [8]}, {"hidden": {"choices": [[4]]}})


@pytest.mark.parametrize("tuning, message", [
    ({"trials": 0}, "evaluation.tuning.trials = 0: give an integer >= 1"),
    ({"space": {"scratch": {"l3": {"low": 0.1, "high": 1.0}}}},
     "evaluation.tuning.space.scratch.l3: learner 'scratch' has no hyperparameter 'l3'"),
    ({"space": {"mamll": {}}}, "evaluation.tuning.space.mamll: 'mamll' is not in evaluation"),
    ({"space": {"scratch": {"l2": {"low": -1.0, "high": 1.0}}}}, "the value -1.0 of this range"),
])
def test_bad_tuning_tables_fail_at_load(tuning: dict, message: str) -> None:
    data = {**TINY, "evaluation": {**TINY["evaluation"], "tuning": tuning}}
    with pytest.raises(ScenarioError, match=message.replace(".", r"\.")):
        Scenario.from_dict(data)


def test_excess_loss_tuning_is_refused_on_survey_data(tmp_path: Path) -> None:
    write_survey(tmp_path / "tiny.csv")
    text = DATA_OK.replace("warmup = 1", "warmup = 2") + \
        '[evaluation.tuning]\ntrials = 2\nmetric = "excess_loss"\n'
    with pytest.raises(ScenarioError, match="needs the oracle"):
        load_scenario(write_toml(tmp_path, "s.toml", text))


# --- sweeps, store, report, CLI ----------------------------------------------------------------
def test_tuned_and_untuned_cells_are_distinct_and_tuning_is_stored(tmp_path: Path) -> None:
    tuned, plain = Scenario.from_dict(TUNED), Scenario.from_dict(
        {**TUNED, "evaluation": {k: v for k, v in TUNED["evaluation"].items() if k != "tuning"}})
    keys = [{j.cell.key for j in plan_cells([sc], None, [0])} for sc in (tuned, plain)]
    assert not keys[0] & keys[1]
    db = tmp_path / "r.db"
    for sc in (tuned, plain):
        s = run_sweep(sc, seeds=[0], store=db, executor="inline", quiet=True)
        assert s.ok == 3 and s.skipped == 0
    with Store(db) as store:
        rows = store._con.execute("SELECT key, learner, log FROM runs").fetchall()
        frames = store.frames()
    assert len({k for k, _, _ in rows}) == 6
    logs = [json.loads(log).get("tuning") for _, _, log in rows]
    trials = sorted((lr, t["trials"]) for (_, lr, _), t in zip(rows, logs) if t is not None)
    assert trials == [("oracle", 0), ("partial_pooling", 2), ("scratch", 2)]
    assert sum(t is None for t in logs) == 3
    tuned_scratch = next(t for (_, lr, _), t in zip(rows, logs) if t and lr == "scratch")
    assert set(tuned_scratch["best_params"]) == {"l2"} and len(tuned_scratch["trace"]) == 2
    assert "tuning" in frames["runs"].columns


def test_report_shows_the_chosen_hyperparameters(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    run_sweep(Scenario.from_dict(TUNED), seeds=[0], store=db, executor="inline", quiet=True)
    files = report_from_store(db, tmp_path / "rep")
    md = files["markdown"].read_text()
    assert "### Tuning" in md and "| scratch | 0 | 2 (2 ok, 0 diverged) |" in md and "l2=" in md
    assert "Tuning</h3>" in files["html"].read_text()


def test_cli_tune_prints_the_choice_per_learner(tmp_path: Path, capsys) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(toml_text(TINY))
    assert main(["tune", str(path), "-l", "scratch,oracle", "--trials", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 trials per learner" in out and "scratch" in out and "l2=" in out
    assert "oracle            0 trials" in out and "nothing to tune" in out
    assert main(["tune", str(path), "--trials", "0"]) == 1
    assert "evaluation.tuning.trials = 0" in capsys.readouterr().err


def test_a_scenario_can_switch_off_inherited_tuning(tmp_path: Path) -> None:
    base = load_scenario("opinion_shift")
    assert base.evaluation.tuning is not None and base.evaluation.tuning.trials >= 1
    child = tmp_path / "untuned.toml"
    child.write_text(f'extends = "{base.source}"\n[evaluation]\ntuning = false\n')
    assert load_scenario(child).evaluation.tuning is None
