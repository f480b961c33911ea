"""One settings object: the scenario schema, the Python API and ``scenarios/_base.toml`` share
one set of protocol defaults (``simlab.settings``), a scenario's ``protocol()`` is what its
sweep cells run with, and the run log gives it back."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import tomli_w

from simlab.errors import ScenarioError
from simlab.evaluation.protocol import evaluate
from simlab.evaluation.statistics import MIN_SEEDS
from simlab.experiment.config import Scenario, load_scenario
from simlab.experiment.scenario_base import (BudgetSpec, EpisodesSpec, EvaluationSpec,
                                             PretrainSpec, TuningSpec)
from simlab.experiment.store import to_json
from simlab.experiment.sweep import LearnerSpec, plan_cells, run_cell
from simlab.learners.registry import make_learner
from simlab.settings import (DEFAULT_SEEDS, Budget, Episodes, PretrainSettings,
                             ProtocolSettings, Search, TuningSettings)

BASE = Path(__file__).resolve().parents[1] / "scenarios" / "_base.toml"
#: a small scenario that extends nothing (its [evaluation] gives the grids, not the seeds)
SMALL = {
    "name": "small",
    "dynamics": {"family": "opinion"},
    "graph": {"kind": "planted_partition", "n_groups": 4, "group_size": 40, "mean_degree": 6},
    "survey": {"waves": 5, "every": 2, "support": 6, "query": 8},
    "burn_in": 4,
    "evaluation": {"warmup": 2, "shots": [3, 6], "steps": [0, 2],
                   "learners": ["partial_pooling", "maml"],
                   "budget": {"iterations": 3, "meta_batch": 4}},
    "learners": {"maml": {"hidden": [8]}},
}


# --- one set of defaults ------------------------------------------------------------------------
def test_the_schema_defaults_are_the_dataclass_defaults() -> None:
    assert EvaluationSpec().protocol() == ProtocolSettings()
    assert BudgetSpec().settings() == Budget()
    assert EpisodesSpec().settings() == Episodes()
    assert TuningSpec().settings() == TuningSettings()
    assert TuningSpec().search() == Search()
    assert PretrainSpec().settings() == PretrainSettings()
    assert EvaluationSpec().seeds == DEFAULT_SEEDS


def test_base_toml_ships_the_defaults() -> None:
    """Every value ``_base.toml`` gives in [evaluation], [evaluation.budget] and
    [evaluation.tuning] is the default; its early-stopping warm-up budget, its tuning table
    (tuning is off unless a scenario asks) and its fixed trial budget are choices it makes."""
    ev = tomllib.loads(BASE.read_text())["evaluation"]
    protocol, tuning = ProtocolSettings(), TuningSettings()
    for key in ("warmup", "online", "recovery_tolerance"):
        assert ev[key] == getattr(protocol, key), key
    assert tuple(ev["shots"]) == protocol.shots and tuple(ev["steps"]) == protocol.steps
    assert ev["seeds"] == DEFAULT_SEEDS
    for key, value in ev["budget"].items():
        assert value == getattr(Budget(), key), f"evaluation.budget.{key}"
    for key, value in ev["tuning"].items():
        if isinstance(value, dict):            # [evaluation.tuning.budget]: its own choice
            continue
        own = tuning.search if hasattr(tuning.search, key) else tuning
        assert value == getattr(own, key), f"evaluation.tuning.{key}"
    # the warm-up budget's unset keys are the Budget defaults too
    warm = load_scenario("opinion_shift").protocol().warmup_budget
    assert warm is not None and warm.recency == Budget().recency


def test_a_scenario_that_extends_nothing_gets_a_verdict_capable_seed_count(tmp_path: Path
                                                                            ) -> None:
    assert DEFAULT_SEEDS >= MIN_SEEDS
    assert Scenario.from_dict(SMALL).evaluation.seeds >= MIN_SEEDS
    path = tmp_path / "alone.toml"
    path.write_text(tomli_w.dumps({k: v for k, v in SMALL.items() if k != "name"}))
    assert load_scenario(path).evaluation.seeds >= MIN_SEEDS


def test_settings_is_a_torch_free_leaf() -> None:
    code = ("import sys, simlab.settings; "
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('simlab.') "
            "and m not in ('simlab.settings', 'simlab.errors', 'simlab._lazy')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_scenario_schema_loads_without_torch() -> None:
    """The society tests run on Python 3.12 without torch (``.ci/run``): loading and validating
    a scenario must not import it."""
    code = ("import sys; sys.modules['torch'] = None; "
            "from simlab.experiment.config import load_scenario; "
            "[load_scenario(f'scenarios/{n}.toml').protocol() for n in "
            "('opinion_shift', 'control_positive_pretrained')]; "
            "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_the_learners_base_reexports_budget_and_episodes() -> None:
    from simlab.learners import base

    assert base.Budget is Budget and base.Episodes is Episodes


# --- the scenario's settings reach the run, and come back from its log -------------------------
def test_scenario_protocol_round_trips_through_the_log() -> None:
    sc = Scenario.from_dict({**SMALL, "evaluation": {
        **SMALL["evaluation"], "warmup": 3, "warmup_budget": {"iterations": 5, "meta_batch": 4,
                                                              "mode": "early_stop",
                                                              "eval_every": 2},
        "episodes": {"shots": 3}, "divergence_multiple": 20.0, "recovery_tolerance": 0.2}})
    settings = sc.protocol()
    assert settings.warmup_budget == Budget(5, 4, mode="early_stop", eval_every=2)
    assert settings.episodes == Episodes(3) and settings.recovery_tolerance == 0.2
    res = evaluate(make_learner("maml", hidden=[8]), sc.stream(0), settings, seed=0)
    logged = json.loads(to_json(res.log))["protocol"]          # as the store keeps it
    assert ProtocolSettings.from_dict(logged) == settings
    assert logged["seed"] == 0 and logged["scored_steps"] == res.summary["scored_steps"]
    assert logged["scored_steps"] in logged["steps_scored"]


def test_tuning_and_pretraining_settings_round_trip() -> None:
    settings = ProtocolSettings(
        warmup_budget=Budget(100, 8, mode="early_stop"),
        tuning=TuningSettings(Search(trials=5, startup=2), "auc", Budget(30), 2,
                              {"maml": {"inner_lr": {"low": 0.001, "high": 0.1}}}),
        pretrain=PretrainSettings("twin.toml", (3, 4), Budget(50), ("maml",), "count"))
    assert ProtocolSettings.from_dict(json.loads(to_json(settings.as_dict()))) == settings


def test_a_notebook_evaluate_reproduces_the_sweep_cell() -> None:
    sc = Scenario.from_dict(SMALL)
    for job in plan_cells([sc], [LearnerSpec("maml"), LearnerSpec("partial_pooling")], [1]):
        cell = run_cell(job).result
        mine = evaluate(make_learner(job.cell.learner_name, **sc.hyperparameters(
            job.cell.learner_name)), sc.stream(1), sc.protocol(), seed=1)
        for res in (cell, mine):
            res.records = res.records[~res.records["metric"].str.contains("seconds")]
        pd.testing.assert_frame_equal(mine.records.reset_index(drop=True),
                                      cell.records.reset_index(drop=True), check_exact=True)
        assert mine.log["protocol"] == cell.log["protocol"]


# --- notebook convenience and bad input -----------------------------------------------------
def test_keyword_overrides_replace_settings_and_unknown_names_fail() -> None:
    base = ProtocolSettings(warmup=2, shots=[3], steps=[0])
    assert base.replace(warmup=3) == dataclasses.replace(base, warmup=3)
    assert ProtocolSettings.resolve(None, {"warmup": 3}).warmup == 3
    assert ProtocolSettings.resolve(base, {}) is base
    with pytest.raises(ScenarioError, match=r"warmpu: not a protocol setting; did you mean "
                                            r"'warmup'"):
        base.replace(warmpu=3)
    with pytest.raises(ScenarioError, match="not a ProtocolSettings"):
        ProtocolSettings.resolve({"warmup": 2}, {})          # type: ignore[arg-type]


@pytest.mark.parametrize("changes, message", [
    ({"shots": []}, r"shots=\[\] must be a non-empty list of ints >= 1"),
    ({"steps": [0, -1]}, r"steps=\[0, -1\] must be a non-empty list of ints >= 0"),
    ({"warmup": -1}, r"warmup=-1 must be an int >= 0"),
    ({"divergence_multiple": 1.0}, r"divergence_multiple=1.0 must be a number > 1"),
    ({"recovery_tolerance": 0}, r"recovery_tolerance=0 must be a number > 0"),
    ({"max_tasks": 0}, r"max_tasks=0 must be >= 1 or None"),
    ({"budget": Budget(5, episodes=Episodes(3))}, r"give the episodes as "
                                                  r"ProtocolSettings\.episodes"),
    ({"warmup": 1, "warmup_budget": Budget(5, mode="early_stop")},
     r"warmup_budget\.mode = 'early_stop' .* needs warmup >= 2"),
    ({"budget": Budget(5, mode="early_stop")}, r"budget\.mode = 'early_stop' with no "
                                               r"warmup_budget"),
])
def test_bad_settings_are_one_clear_error(changes: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        ProtocolSettings(**changes)
