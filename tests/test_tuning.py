"""Equal-budget tuning: search spaces, the warm-up-only objective, seeds, sweeps, bad input."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from simlab.cli import main
from simlab.experiment.config import Scenario, ScenarioError, load_scenario
from simlab.experiment.executors import InlineExecutor, WorkerCrash
from simlab.experiment.store import Store
from simlab.experiment.sweep import LearnerSpec, plan_cells, run_sweep
from simlab.report import report_from_store
from simlab.learners import available, learner_class
from simlab.evaluation import tuning as tuning_mod
from simlab.learners.base import Budget, Choice, Float, Int
from simlab.learners.baselines import Scratch
from simlab.learners.registry import make_learner
from simlab.evaluation.tuning import DEFAULT_SEARCH, Search, resolve_space, trial_score, tune
from simlab.settings import ProtocolSettings, TuningSettings
from simlab.tasks.task import TaskStream

from helpers.frames import stored_metrics
from helpers.learners import make_stream
from helpers.scenarios import (DATA_OK, QUICK_TABLE, TINY, TUNED, toml_text, write_survey,
                               write_toml)

torch.set_num_threads(1)
FAST = {"warmup": 3, "shots": [4, 8], "steps": [0, 2], "budget": Budget(2, 2)}
#: two unpruned trials on the last warm-up wave: the quickest search (TPE never acts)
QUICK = Search(trials=2, startup=1, pruner="none", rungs=1, folds=1)


def tuned(search: Search, metric: str = "loss", **protocol) -> ProtocolSettings:
    """Protocol settings (``protocol``: e.g. ``**FAST``) whose tuning runs ``search``."""
    return ProtocolSettings(**protocol, tuning=TuningSettings(search, metric))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMLAB_CACHE", str(tmp_path / "cache"))


# --- the spaces -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(available()))
def test_every_builtin_space_names_real_fields_with_valid_ends(name: str) -> None:
    cls = learner_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    assert set(cls.search_space) <= fields
    assert (cls.search_space == {}) == (name in ("oracle", "floor"))     # the references
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
    res = tune("scratch", {}, stream, tuned(QUICK, **FAST), seed=0)
    fits = [w for r in made for w in r.seen["fit"]]
    adapts = [w for r in made for w in r.seen["adapt"]]
    assert res.trials == 2 and len(res.trace) == 2
    assert fits and set(fits) == {0, 1}                     # waves [0, warmup - 1)
    assert adapts and set(adapts) == {FAST["warmup"] - 1}   # only the last warm-up wave
    assert max(fits + adapts) < FAST["warmup"]              # never a scored wave


@pytest.mark.parametrize("pruner", ["successive_halving", "median"])
def test_rolling_origin_folds_never_pass_a_scored_wave_to_a_learner(monkeypatch, pruner
                                                                    ) -> None:
    """Every learner tuning builds, on every stream, fold and rung: meta-fit and adapt see
    warm-up waves only; the folds score exactly the last `folds` warm-up waves."""
    made: list[_Recorder] = []

    def fake(name, **params):
        made.append(_Recorder(**params))
        return made[-1]

    monkeypatch.setattr(tuning_mod, "make_learner", fake)
    warmup, folds = 5, 3
    streams = [make_stream(waves=8, seed=s) for s in (0, 1)]
    search = Search(trials=4, startup=2, pruner=pruner, rungs=2, folds=folds)
    res = tune("scratch", {}, streams, tuned(search, **{
        **FAST, "warmup": warmup, "warmup_budget": Budget(3, 2)}), seed=0)
    ran = [r for r in made if r.seen["fit"]]          # (others only validate the space)
    assert len(res.trace) == 4 and len(ran) >= 2 * 4          # both streams, every trial
    for rec in ran:
        assert set(rec.seen["adapt"]) == set(range(warmup - folds, warmup))   # the folds
        assert set(rec.seen["fit"]) == set(range(warmup - 1))     # origin, then online
    every = [w for r in made for w in r.seen["fit"] + r.seen["adapt"]]
    assert max(every) == warmup - 1                               # never a scored wave


def test_trial_is_a_pure_function_of_learner_params_stream_seed() -> None:
    stream = make_stream(waves=5)
    settings = tuned(Search(folds=1), warmup=3, shots=(4,), steps=(0, 2), budget=Budget(2, 2))
    one = trial_score("maml", {"hidden": (4,)}, [stream], settings, seed=1)
    assert one == trial_score("maml", {"hidden": (4,)}, [stream], settings, seed=1)


def test_tuning_is_reproducible_with_the_seed() -> None:
    stream = make_stream(waves=5)
    runs = [tune("maml", {"hidden": (4,)}, stream, tuned(QUICK, **FAST), seed=s)
            for s in (3, 3, 4)]
    assert runs[0].trace[0]["params"] == {"inner_lr": 0.01, "inner_steps": 1, "outer_lr": 1e-3,
                                       "memory": 0, "memory_discount": 1.0,
                                       "adapt_steps": None}
    strip = [[{k: t[k] for k in ("params", "value", "state")} for t in r.trace] for r in runs]
    assert strip[0] == strip[1] and runs[0].best_params == runs[1].best_params
    assert strip[0][1]["params"] != strip[2][1]["params"]     # another seed, another sample


def test_every_learner_gets_the_same_trials_and_the_oracle_none() -> None:
    stream = make_stream(waves=5)
    counts = {n: len(tune(n, {"hidden": (4,)} if n == "protonet" else {}, stream,
                          tuned(QUICK, **FAST)).trace) for n in ("scratch", "partial_pooling",
                                                                 "protonet", "oracle")}
    assert counts == {"scratch": 2, "partial_pooling": 2, "protonet": 2, "oracle": 0}


# --- the pruned search -----------------------------------------------------------------------
PRUNED = Search(trials=6, startup=2, pruner="successive_halving", rungs=2, folds=2)
SMALL = {**FAST, "warmup": 4, "warmup_budget": Budget(9, 2)}


def _strip(res) -> list[dict]:
    return [{k: t[k] for k in ("params", "value", "state", "rungs")} for t in res.trace]


def test_the_pruned_tuner_with_the_same_seed_gives_the_same_choice_and_prunes() -> None:
    stream = make_stream(waves=6)
    runs = [tune("maml", {"hidden": (4,)}, stream, tuned(PRUNED, **SMALL), seed=5)
            for _ in range(2)]
    assert _strip(runs[0]) == _strip(runs[1]) and runs[0].best_params == runs[1].best_params
    for res in runs:
        states = [t["state"] for t in res.trace]
        assert len(states) == 6 and res.count("pruned") >= 1 and res.count("complete") >= 2
        assert states[0] == "complete"                  # the untuned configuration: never pruned
        assert all(len(t["rungs"]) == 1 for t in res.trace if t["state"] == "pruned")
        assert all(len(t["rungs"]) == 2 for t in res.trace if t["state"] == "complete")
        assert res.untuned_value == res.trace[0]["value"]
        assert res.best_value == min(t["value"] for t in res.trace if t["state"] == "complete")
        assert res.gain == pytest.approx(res.untuned_value - res.best_value) and res.gain >= 0
        assert res.search == dataclasses.asdict(PRUNED) and not res.budget_free


def test_a_lower_rung_trains_with_a_smaller_budget(monkeypatch) -> None:
    seen: list[int] = []
    real = tuning_mod.trial_score

    def spy(name, params, streams, settings, seed, share=1.0, on_wave=None, device="cpu"):
        seen.append(tuning_mod.trial_settings(settings, share).warmup_budget.iterations)
        return real(name, params, streams, settings, seed, share, on_wave, device)

    monkeypatch.setattr(tuning_mod, "trial_score", spy)
    search = Search(3, 1, "none", folds=1, rungs=3)
    res = tune("maml", {"hidden": (4,)}, make_stream(waves=6), tuned(search, **SMALL), seed=0)
    assert seen == [1, 3, 9] * 3           # rungs at 1/9, 1/3, 1 of 9 iterations, every trial
    assert not res.budget_free
    seen.clear()        # scratch ignores the budget: after its first trial, one rung per trial
    res = tune("scratch", {}, make_stream(waves=6), tuned(search, **SMALL), seed=0)
    assert seen == [1, 3, 9, 9, 9] and res.budget_free
    assert [len(t["rungs"]) for t in res.trace] == [3, 1, 1]
    assert len(set(res.trace[0]["rungs"])) == 1


def test_the_defaults_live_in_one_place() -> None:
    from simlab.experiment.scenario_base import TuningSpec

    spec = TuningSpec()
    assert spec.search() == DEFAULT_SEARCH
    assert DEFAULT_SEARCH.trials > DEFAULT_SEARCH.startup      # TPE acts by default
    assert Scenario.from_dict(TUNED).evaluation.tuning.search() == QUICK


# --- bad input --------------------------------------------------------------------------------
def test_bad_tuning_input_raises_one_clear_error() -> None:
    stream = make_stream(waves=5)
    with pytest.raises(ValueError, match=r"space\.maml\.inner_lrr: .*no hyperparameter "
                                         r"'inner_lrr'; did you mean 'inner_lr'"):
        tune("maml", {}, stream, tuned(QUICK, **FAST), space={"inner_lrr": Float(0.01, 0.1)})
    with pytest.raises(ValueError, match=r"tuning\.trials = 0: give an integer >= 1"):
        tune("scratch", {}, stream, tuned(dataclasses.replace(QUICK, trials=0), **FAST))
    with pytest.raises(ValueError, match=r"tuning\.metric = 'los' is unknown; did you mean"):
        tune("scratch", {}, stream, tuned(QUICK, "los", **FAST))
    no_oracle = TaskStream([[dataclasses.replace(t, oracle_query=None) for t in w]
                            for w in stream.waves], [])
    with pytest.raises(ValueError, match=r"metric = 'excess_loss' needs the oracle"):
        tune("scratch", {}, no_oracle, tuned(QUICK, "excess_loss", **FAST))
    with pytest.raises(ValueError, match=r"needs warmup >= 2"):
        tune("scratch", {}, stream, tuned(QUICK, **{**FAST, "warmup": 1}))
    for search, message in [
        (Search(trials=6, startup=8), r"tuning\.trials = 6 does not pass the start-up of 8 "
         r"random trials.*raise trials above 8 or lower evaluation\.tuning\.startup"),
        (Search(trials=20, startup=8, pruner="hyperband", rungs=3),
         r"3 hyperband brackets x startup 8"),
        (Search(trials=8, startup=8, pruner="median"), r"median pruner prunes nothing before 8"),
        (Search(pruner="asha"), r"tuning\.pruner = 'asha' is unknown; .*successive_halving"),
        (Search(rungs=1), r"pruner = 'successive_halving' needs budget rungs .*tuning\.rungs "
         r"= 1; give rungs >= 2"),
        (Search(folds=0), r"tuning\.folds = 0: give an integer >= 1"),
        (Search(folds=3), r"tuning\.folds = 3 leaves no warm-up wave to fit on .* give folds "
         r"<= 2"),
    ]:
        with pytest.raises(ValueError, match=message):
            tune("scratch", {}, stream, tuned(search, **FAST))
    with pytest.raises(ValueError, match=r"hidden is fixed to"):
        resolve_space("maml", {"hidden": [8]}, {"hidden": {"choices": [[4]]}})


@pytest.mark.parametrize("tuning, message", [
    ({"trials": 0}, "evaluation.tuning.trials = 0: give an integer >= 1"),
    ({"trials": 6}, "evaluation.tuning.trials = 6 does not pass the start-up of 6"),
    ({"pruner": "hyperbnd"}, "evaluation.tuning.pruner = 'hyperbnd' is unknown; did you mean "
                             "'hyperband'"),
    ({"folds": 2}, "evaluation.tuning.folds = 2 leaves no warm-up wave to fit on"),
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
        '[evaluation.tuning]\ntrials = 2\nstartup = 1\nmetric = "excess_loss"\n'
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
    assert set(tuned_scratch["best_params"]) == {"l2", "memory", "memory_discount"}
    assert len(tuned_scratch["trace"]) == 2
    assert "tuning" in frames["runs"].columns


def test_report_shows_the_chosen_hyperparameters(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    run_sweep(Scenario.from_dict(TUNED), seeds=[0], store=db, executor="inline", quiet=True)
    files = report_from_store(db, tmp_path / "rep")
    md = files["markdown"].read_text()
    assert "### Tuning" in md and "| scratch | 0 | 2 (2 complete, 0 pruned, 0 diverged) |" in md
    assert "l2=" in md and "| gain |" in md and "untuned loss (last warm-up wave)" in md
    assert "Tuning</h3>" in files["html"].read_text()


def test_cli_tune_prints_the_choice_per_learner(tmp_path: Path, capsys) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(toml_text({**TINY, "evaluation": {**TINY["evaluation"],
                                                      "tuning": {**QUICK_TABLE, "trials": 3}}}))
    assert main(["tune", str(path), "-l", "scratch,oracle", "--trials", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 trials per learner" in out and "scratch" in out and "l2=" in out
    assert "oracle            0 trials" in out and "nothing to tune" in out
    assert main(["tune", str(path), "--trials", "0"]) == 2
    assert "evaluation.tuning.trials = 0" in capsys.readouterr().err


def test_a_scenario_can_switch_off_inherited_tuning(tmp_path: Path) -> None:
    base = load_scenario("opinion_shift")
    assert base.evaluation.tuning is not None and base.evaluation.tuning.trials >= 1
    child = tmp_path / "untuned.toml"
    child.write_text(f'extends = "{base.source}"\n[evaluation]\ntuning = false\n')
    assert load_scenario(child).evaluation.tuning is None


# --- the tuning phase: once per learner, shared by its seeds ----------------------------------
def _count_tune(monkeypatch, fail: str | None = None) -> list[tuple[str, int]]:
    """Patch ``tune`` to record (learner, number of streams) per call; ``fail``: raise for it."""
    calls: list[tuple[str, int]] = []
    real = tuning_mod.tune

    def counted(name, base, streams, settings=None, **kw):
        calls.append((name, len(streams)))
        if name == fail:
            raise RuntimeError("tuning broken on purpose")
        return real(name, base, streams, settings, **kw)

    monkeypatch.setattr(tuning_mod, "tune", counted)
    return calls


def _tuning_logs(db: Path) -> dict[tuple[str, int], dict]:
    with Store(db) as store:
        rows = store._con.execute("SELECT learner, seed, log FROM runs WHERE status != 'failed'"
                                  ).fetchall()
    return {(lr, seed): json.loads(log)["tuning"] for lr, seed, log in rows}


def test_a_sweep_tunes_each_learner_once_on_its_first_seeds(tmp_path: Path, monkeypatch) -> None:
    calls = _count_tune(monkeypatch)
    db, sc = tmp_path / "r.db", Scenario.from_dict(TUNED)
    s = run_sweep(sc, seeds=3, store=db, executor="inline", quiet=True)
    assert s.ok == 9 and sorted(calls) == [("oracle", 2), ("partial_pooling", 2), ("scratch", 2)]
    logs = _tuning_logs(db)
    for learner in ("scratch", "partial_pooling"):
        per_seed = [logs[learner, seed] for seed in range(3)]
        assert all(t["seeds"] == [0, 1] and t["shared"] for t in per_seed)
        assert all(t["best_params"] == per_seed[0]["best_params"] for t in per_seed)
    calls.clear()
    assert run_sweep(sc, seeds=3, store=db, executor="inline", quiet=True).skipped == 9
    assert calls == []                      # all done: nothing tuned
    s = run_sweep(sc, seeds=4, store=db, executor="inline", quiet=True)
    assert s.ok == 3 and len(calls) == 3    # seed 3 missing: its learners re-tuned, same choice
    logs = _tuning_logs(db)
    assert logs["scratch", 3]["best_params"] == logs["scratch", 0]["best_params"]


def test_inline_and_process_tuning_give_identical_records(tmp_path: Path) -> None:

    sc = Scenario.from_dict({**TUNED, "evaluation": {**TUNED["evaluation"],
                                                     "learners": ["scratch", "oracle"]}})
    dbs = {ex: tmp_path / f"{ex}.db" for ex in ("inline", "process")}
    for ex, db in dbs.items():
        assert run_sweep(sc, seeds=2, store=db, executor=ex, jobs=2, quiet=True).ok == 4
    pd.testing.assert_frame_equal(stored_metrics(dbs["inline"]), stored_metrics(dbs["process"]))
    drop = ("seconds", "trace")
    logs = [{k: {f: v for f, v in t.items() if f not in drop} for k, t in
             _tuning_logs(db).items()} for db in dbs.values()]
    assert logs[0] == logs[1]
    values = [{k: [x["value"] for x in t["trace"]] for k, t in _tuning_logs(db).items()}
              for db in dbs.values()]
    assert values[0] == values[1]


def test_a_failing_tuning_job_fails_only_its_learners_cells(tmp_path: Path, monkeypatch) -> None:
    _count_tune(monkeypatch, fail="scratch")
    s = run_sweep(Scenario.from_dict(TUNED), seeds=2, store=tmp_path / "r.db",
                  executor="inline", quiet=True)
    assert s.ok == 4 and s.failed == 2
    assert all("scratch" in cell and reason.startswith("tuning failed: RuntimeError")
               for cell, _, reason in s.failures)


class _CrashTuning(InlineExecutor):
    """An inline executor whose worker 'dies' on the tuning job of ``partial_pooling``."""

    def map_unordered(self, fn, items):
        for item, value in super().map_unordered(fn, items):
            crashed = isinstance(item, tuple) and getattr(item[1], "label", "") == \
                "partial_pooling"
            yield item, WorkerCrash(-9, 2, "oom") if crashed else value


def test_a_crashed_tuning_worker_fails_only_its_learners_cells(tmp_path: Path) -> None:
    s = run_sweep(Scenario.from_dict(TUNED), seeds=2, store=tmp_path / "r.db",
                  executor=_CrashTuning(), quiet=True)
    assert s.ok == 4 and s.failed == 2
    assert all("partial_pooling" in cell and "tuning crashed" in reason and "SIGKILL" in reason
               for cell, _, reason in s.failures)


def test_the_cell_key_includes_the_tuning_seeds() -> None:
    def keys(seeds, tuning_seeds):
        sc = Scenario.from_dict({**TUNED, "evaluation": {
            **TUNED["evaluation"], "tuning": {**QUICK_TABLE, "seeds": tuning_seeds}}})
        return {j.cell.seed: j.cell.key for j in plan_cells([sc], [LearnerSpec("scratch")],
                                                             seeds)}
    assert keys([0, 1], 2) == keys([0, 1], 2)
    assert not set(keys([0, 1], 1).values()) & set(keys([0, 1], 2).values())
    assert keys([1, 2], 2)[1] != keys([0, 1], 2)[1]     # tuned on seeds 1, 2 vs 0, 1
    jobs = plan_cells([Scenario.from_dict(TUNED)], [LearnerSpec("scratch")], [4, 2, 7])
    assert {j.tuning_seeds for j in jobs} == {(2, 4)}


def test_report_shows_one_row_per_shared_tuning() -> None:
    from simlab.report.tuning import tuning_section

    shared = {"trials": 2, "best_params": {"l2": 0.01}, "best_value": 0.5, "shared": True,
              "seeds": [0, 1], "trace": [{"state": "complete"}] * 2, "space": {}}
    own = {**shared, "shared": False, "seeds": []}
    runs = pd.DataFrame({"learner": ["scratch"] * 6 + ["maml"] * 2, "seed": [*range(6), 0, 1],
                         "tuning": [json.dumps(shared)] * 6 + [json.dumps(own)] * 2})
    rows = tuning_section(runs)["table"]["rows"]
    assert [r[:2] for r in rows] == [["maml", "0"], ["maml", "1"],
                                     ["scratch", "0-5 (tuned on 0, 1)"]]


def test_report_shows_the_gain_over_the_untuned_configuration() -> None:
    from simlab.report.tuning import tuning_section

    trace = [{"state": "complete", "value": 0.7}, {"state": "pruned", "value": 0.9},
             {"state": "complete", "value": 0.6}, {"state": "diverged", "value": None}]
    log = {"trials": 4, "best_params": {"inner_lr": 0.05}, "best_value": 0.6,
           "untuned_value": 0.7, "gain": 0.1, "shared": True, "seeds": [0], "trace": trace,
           "space": {}, "metric": "loss",
           "search": {"trials": 4, "startup": 2, "pruner": "successive_halving", "folds": 3,
                      "rungs": 3}}
    sec = tuning_section(pd.DataFrame({"learner": ["maml"], "seed": [0],
                                       "tuning": [json.dumps(log)]}))
    assert sec["table"]["header"][3:6] == ["untuned loss (last 3 warm-up waves)", "tuned loss",
                                           "gain"]
    assert sec["table"]["rows"] == [["maml", "0", "4 (2 complete, 1 pruned, 1 diverged)", "0.7",
                                     "0.6", "+0.1", "inner_lr=0.05"]]
    assert "TPE after 2 random start-up trials, successive halving pruning on 3" in sec["search"]


def test_tuning_reports_progress_trial_by_trial(tmp_path: Path) -> None:
    from simlab.experiment.sweep import TuningJob, tune_learner

    job = next(j for j in plan_cells([Scenario.from_dict(TUNED)], [LearnerSpec("scratch")], [0]))
    seen: list[dict] = []
    res = tune_learner(TuningJob.of(job), progress=seen.append)
    assert [t["number"] for t in seen] == [0, 1] and all(t["trials"] == 2 for t in seen)
    path = tmp_path / "progress.log"       # what a sweep's worker writes for the parent's bar
    tune_learner(dataclasses.replace(TuningJob.of(job), progress_file=str(path)))
    assert path.read_text().splitlines() == [f"{t['number']} {t['state']}" for t in res.trace]
