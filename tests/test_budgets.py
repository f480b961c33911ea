"""Budgets that converge (early stopping on the last warm-up wave), every method scored at its
own step count, online meta-training on every revealed task (issue 18, items 2, 4, 5)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from simlab.errors import LearnerError
from simlab.evaluation.metrics import scored_step, cubes, summarize
from simlab.evaluation.protocol import evaluate
from simlab.learners import make_learner
from simlab.learners.base import Budget, Learner
from simlab.learners.episodes import EpisodeSampler, HeldOut, fit_loop

from helpers.learners import FixedAdapted, const, make_stream

torch.set_num_threads(1)


@dataclass
class Probe(Learner):
    """One scalar parameter ``w`` that each meta-step raises by 1; its held-out loss is
    ``curve(w)``. Records the waves of every training episode and of every adapt batch."""

    curve: object = None
    trained_waves: list = field(default_factory=list)
    adapted_waves: list = field(default_factory=list)
    fits: list = field(default_factory=list)

    def build(self) -> None:
        self.w = torch.zeros(1)

    def meta_fit(self, tasks, budget):
        self.fits.append(sorted({t.info["wave"] for t in tasks}))
        sampler = EpisodeSampler(tasks, budget.episodes)

        def step(batch):
            self.trained_waves += batch.wave.tolist()
            self.w += 1
            return 0.0, True

        return fit_loop(step, sampler, budget, self.generator)

    def adapt(self, support, steps):
        self.adapted_waves += support.wave.tolist()
        loss = float(self.curve(float(self.w))) if self.curve else 0.5
        p = 1 / (1 + np.exp(loss))       # any prediction; the score callback is replaced below
        return FixedAdapted(steps, lambda q, s: const(q, s, p))


def plateau(w: float) -> float:
    """Improves until w = 40, then slowly gets worse."""
    return 1.0 - 0.01 * w if w <= 40 else 0.6 + 0.001 * (w - 40)


def _held(learner: Probe, waves=frozenset({2})) -> HeldOut:
    return HeldOut(frozenset(waves), lambda: plateau(float(learner.w)), learner)


def test_fit_loop_stops_on_a_plateau_restores_the_best_and_never_trains_on_held_out():
    tasks = [t for w in make_stream(waves=3).waves for t in w]
    probe = Probe()
    probe.setup(_spec(tasks), seed=0)
    budget = Budget(iterations=1000, meta_batch=2, mode="early_stop", eval_every=10, patience=3,
                    holdout=_held(probe))

    def step(batch):
        probe.trained_waves.extend(batch.wave.tolist())
        probe.w.add_(1)
        return 0.0, True

    log = fit_loop(step, EpisodeSampler(tasks), budget, probe.generator)
    assert log["stopped"] == "patience"
    assert log["iterations"] == 70                      # best at 40, three worse evaluations
    assert log["best_iteration"] == 40 and float(probe.w) == 40.0   # the best is restored
    assert [p["iteration"] for p in log["curve"]] == [0, 10, 20, 30, 40, 50, 60, 70]
    assert all(p["cpu_seconds"] >= 0 for p in log["curve"])
    assert 2 not in set(probe.trained_waves) and {0, 1} <= set(probe.trained_waves)


def test_early_stopping_stops_at_its_caps_when_it_keeps_improving():
    tasks = [t for w in make_stream(waves=3).waves for t in w]
    probe = Probe()
    probe.setup(_spec(tasks), seed=0)
    held = HeldOut(frozenset({2}), lambda: -float(probe.w), probe)
    log = fit_loop(lambda b: (probe.w.add_(1), (0.0, True))[-1], EpisodeSampler(tasks),
                   Budget(iterations=35, mode="early_stop", eval_every=10, holdout=held),
                   probe.generator)
    assert log["stopped"] == "iterations" and log["best_iteration"] == 35
    assert [p["iteration"] for p in log["curve"]] == [0, 10, 20, 30, 35]   # the end is scored


def _spec(tasks):
    from simlab.learners.base import TaskSpec
    return TaskSpec.of(tasks[0])


def test_warmup_early_stopping_never_reads_a_scored_wave_and_logs_its_curve():
    probe = Probe(curve=plateau)
    res = evaluate(probe, make_stream(), warmup=3, shots=[2, 6], steps=[0, 3],
                   budget=Budget(iterations=2, meta_batch=2),
                   warmup_budget=Budget(iterations=500, meta_batch=2, mode="early_stop",
                                        eval_every=10, patience=2))
    warm = res.log["meta_fit"][0]
    n_warm_adapts = 2 * len(warm["curve"])              # one adapt per K per evaluation
    assert set(probe.adapted_waves[:n_warm_adapts * 3]) == {2}   # held out: last warm-up wave
    assert probe.fits[0] == [0, 1, 2]                   # every warm-up wave is revealed to it
    assert set(probe.trained_waves[:2 * int(warm["iterations"])]) <= {0, 1}
    assert warm["mode"] == "early_stop" and warm["stopped"] == "patience"
    assert warm["curve"][0]["iteration"] == 0 and warm["cpu_seconds"] >= 0
    assert res.log["protocol"]["warmup_budget"]["mode"] == "early_stop"
    assert "holdout" not in res.log["protocol"]["warmup_budget"]


def test_maml_early_stopping_restores_its_best_parameters():
    maml = make_learner("maml", hidden=(8,), inner_lr=0.3)
    res = evaluate(maml, make_stream(waves=5), warmup=3, shots=[4], steps=[0, 1],
                   budget=Budget(iterations=1, meta_batch=3),
                   warmup_budget=Budget(iterations=60, meta_batch=3, mode="early_stop",
                                        eval_every=10, patience=2))
    warm = res.log["meta_fit"][0]
    best = min(p["score"] for p in warm["curve"])
    assert warm["best_score"] == pytest.approx(best)
    assert warm["best_iteration"] in [p["iteration"] for p in warm["curve"]]


# ------------------------------------------------------------------- scored at its own step

def test_maml_is_scored_at_its_adapt_steps_added_to_the_grid():
    maml = make_learner("maml", hidden=(8,), inner_steps=1, adapt_steps=3)
    res = evaluate(maml, make_stream(waves=4), warmup=2, shots=[4], steps=[0, 1, 5],
                   budget=Budget(iterations=2, meta_batch=3))
    assert res.log["protocol"]["scored_steps"] == 3 and res.log["protocol"]["steps"] == [0, 1, 3, 5]
    loss = cubes(res.records)["loss"]
    assert res.summary["scored_steps"] == 3.0
    assert res.summary["mean_loss"] == pytest.approx(float(loss.at_steps(3).mean()))
    assert res.summary["mean_loss"] != pytest.approx(float(loss.at_steps(5).mean()))
    assert make_learner("maml").scored_steps() == 1            # default: its inner_steps
    assert "adapt_steps" in type(maml).search_space


def test_meta_lstm_is_scored_at_its_unroll_length():
    lstm = make_learner("meta_lstm", hidden=(4,), lstm_hidden=0, inner_steps=2)
    res = evaluate(lstm, make_stream(waves=4), warmup=2, shots=[4], steps=[0, 5, 10],
                   budget=Budget(iterations=1, meta_batch=3))
    assert res.log["protocol"]["scored_steps"] == 2
    assert scored_step(cubes(res.records)) == 2
    assert res.summary["mean_loss"] == pytest.approx(
        float(cubes(res.records)["loss"].at_steps(2).mean()))


def test_step_free_learners_keep_the_grids_largest_count():
    for name in ("protonet", "partial_pooling", "oracle", "scratch"):
        assert make_learner(name).scored_steps() is None


@dataclass
class NaNAwayFromScored(Learner):
    """Finite at its scored step 1, NaN at every other count."""

    def build(self) -> None:
        pass

    def meta_fit(self, tasks, budget):
        return {}

    def scored_steps(self) -> int:
        return 1

    def adapt(self, support, steps):
        def predict(q, s):
            out = const(q, s)
            out[[i for i, k in enumerate(steps) if k != 1]] = float("nan")
            return out
        return FixedAdapted(steps, predict)


def test_divergence_is_judged_at_the_scored_step():
    res = evaluate(NaNAwayFromScored(), make_stream(), warmup=2, shots=[4], steps=[0, 1, 5],
                   budget=Budget(1))
    assert res.status == "ok" and res.summary["diverged"] == 0.0
    assert np.isfinite(res.summary["mean_loss"])
    assert res.log["unscored_divergence"] and not res.log["divergence"]


def test_a_step_count_that_is_not_a_count_is_one_clear_error():
    @dataclass
    class Bad(NaNAwayFromScored):
        def scored_steps(self) -> int:
            return -2

    with pytest.raises(LearnerError, match="scored_steps"):
        evaluate(Bad(), make_stream(), warmup=2, shots=[4], steps=[0, 1], budget=Budget(1))


def test_records_without_a_scored_step_keep_the_largest_count():
    res = evaluate(NaNAwayFromScored(), make_stream(), warmup=2, shots=[4], steps=[0, 1],
                   budget=Budget(1))
    old = res.records[res.records["metric"] != "scored_steps"]
    assert scored_step(cubes(old)) == "max" and "scored_steps" not in summarize(old)


# -------------------------------------------------------------------- online: all revealed

def test_online_meta_fit_sees_every_revealed_task_and_incremental_learners_the_newest():
    probe = Probe()
    evaluate(probe, make_stream(waves=5), warmup=2, shots=[4], steps=[0], budget=Budget(1))
    assert probe.fits == [[0, 1], [0, 1, 2], [0, 1, 2, 3]]

    @dataclass
    class Filter(Probe):
        incremental = True

    inc = Filter()
    evaluate(inc, make_stream(waves=5), warmup=2, shots=[4], steps=[0], budget=Budget(1))
    assert inc.fits == [[0, 1], [2], [3]]
    for name in ("partial_pooling", "dynamic_mlm", "cpd:partial_pooling"):
        assert make_learner(name).incremental, name
    for name in ("maml", "finetune", "protonet", "meta_lstm", "scratch"):
        assert not make_learner(name).incremental, name


def test_recency_weights_draw_the_newest_waves_more_often():
    tasks = [t for w in make_stream(waves=4).waves for t in w]
    probe = Probe()
    probe.setup(_spec(tasks), seed=0)
    seen: list[int] = []
    fit_loop(lambda b: (seen.extend(b.wave.tolist()), (0.0, True))[-1], EpisodeSampler(tasks),
             Budget(iterations=300, meta_batch=1, recency=0.5), probe.generator)
    share = np.mean(np.array(seen) == 3)
    assert share > 0.6                       # uniform would give 0.25
    seen.clear()
    fit_loop(lambda b: (seen.extend(b.wave.tolist()), (0.0, True))[-1], EpisodeSampler(tasks),
             Budget(iterations=300, meta_batch=1), probe.generator)
    assert np.mean(np.array(seen) == 3) < 0.4


# ---------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kw, match", [
    ({"patience": 0}, "budget.patience"),
    ({"eval_every": 0}, "budget.eval_every"),
    ({"mode": "until_done"}, "budget.mode"),
    ({"mode": "seconds"}, "needs budget.seconds"),
    ({"recency": -1.0}, "budget.recency"),
])
def test_bad_budgets_raise_one_clear_error(kw, match):
    with pytest.raises(ValueError, match=match):
        Budget(**kw)


def test_early_stopping_without_held_out_tasks_is_one_clear_error():
    early = Budget(iterations=10, mode="early_stop")
    with pytest.raises(ValueError, match="warmup_budget.mode = 'early_stop'.*warmup >= 2"):
        evaluate(Probe(), make_stream(), warmup=1, shots=[4], steps=[0], budget=Budget(1),
                 warmup_budget=early)
    with pytest.raises(ValueError, match="budget.mode = 'early_stop'"):
        evaluate(Probe(), make_stream(), warmup=2, shots=[4], steps=[0], budget=early)
    learner = make_learner("maml", hidden=(4,))             # called directly: no holdout
    learner.setup(_spec(make_stream().waves[0]), 0)
    with pytest.raises(ValueError, match="needs held-out tasks"):
        learner.meta_fit(make_stream().waves[0], early)


def test_scenario_budget_fields_are_validated_with_the_field_and_the_fix():
    from simlab.experiment.config import load_scenario
    from simlab.errors import ScenarioError
    sc = load_scenario("scenarios/response_threshold.toml")
    with pytest.raises(ScenarioError, match="warmup >= 3"):
        sc.override({"evaluation": {"warmup": 2}})
    with pytest.raises(ScenarioError, match="patience"):
        sc.override({"evaluation": {"warmup_budget": {"patience": 0}}})
    with pytest.raises(ScenarioError, match="warmup_budget"):
        sc.override({"evaluation": {"budget": {"mode": "early_stop"}}})
    fine = sc.override({"evaluation": {"warmup": 2, "tuning": False}})
    assert fine.evaluation.warmup_budget.mode == "early_stop"


def test_scenario_budget_modes_match_the_learners():
    import typing

    from simlab.experiment.scenario_base import BudgetMode
    from simlab.learners.base import BUDGET_MODES
    assert typing.get_args(BudgetMode) == BUDGET_MODES


def test_training_curve_figure_names_learners_stopped_by_a_cap():
    import json

    import pandas as pd

    from simlab.report.figures import ScenarioData, training_curves, training_logs
    curve = [{"iteration": i, "seconds": i / 10, "cpu_seconds": i / 10, "score": 1 / (1 + i)}
             for i in (0, 50, 100)]
    runs = pd.DataFrame({"run_id": [1, 2, 3], "meta_fit": [
        json.dumps([{"wave": 3, "curve": curve, "stopped": "patience"}, {"wave": 4}]),
        json.dumps([{"wave": 3, "curve": curve, "stopped": "iterations"}]), None]})
    logs = training_logs(runs, {1: "maml", 2: "anil", 3: "partial_pooling"})
    assert set(logs) == {"maml", "anil"} and len(logs["maml"]) == 1
    data = ScenarioData("s", {"maml": {}, "anil": {}, "partial_pooling": {}}, pd.DataFrame(),
                        pd.DataFrame(), "loss", training=logs)
    png, note = training_curves(data)
    assert png[:4] == b"\x89PNG"
    assert "anil (iterations)" in note and "maml" not in note.split("cap")[1].split(".")[0]
    assert "partial_pooling" in note


def test_seconds_mode_trains_for_its_wall_time():
    tasks = [t for w in make_stream(waves=2).waves for t in w]
    probe = Probe()
    probe.setup(_spec(tasks), seed=0)
    log = fit_loop(lambda b: (0.0, True), EpisodeSampler(tasks),
                   Budget(iterations=10 ** 9, mode="seconds", seconds=0.2), probe.generator)
    assert 0.2 <= log["seconds"] < 5 and 0 < log["iterations"] < 10 ** 9
