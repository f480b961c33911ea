"""The prequential protocol with tiny learners defined here and hand-made streams."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from simlab.evaluation.metrics import METRICS
from simlab.evaluation.protocol import evaluate, is_divergence
from simlab.learners.base import Budget, Learner

from helpers.learners import BUDGET, FixedAdapted, const, make_stream

torch.set_num_threads(1)


@dataclass
class Spy(Learner):
    """Records every call in order, predicts 0.5; checks that query labels are hidden."""

    events: list = field(default_factory=list)

    def build(self) -> None:
        self.events.append(("setup",))

    def meta_fit(self, tasks, budget):
        self.events.append(("fit", sorted({t.info["wave"] for t in tasks})))
        return {"loss": 0.0}

    def adapt(self, support, steps):
        self.events.append(("adapt", support.shots, bool(torch.isnan(support.y_query).all())))
        return FixedAdapted(steps, const)


@dataclass
class OracleLike(Learner):
    uses_oracle = True

    def build(self) -> None:
        pass

    def meta_fit(self, tasks, budget):
        return {}

    def adapt(self, support, steps):
        return FixedAdapted(steps, lambda q, s: q.oracle_query.expand(s, *q.oracle_query.shape))


@dataclass
class GD(Learner):
    """Logistic regression from zero, ``lr`` gradient steps per task (vmapped over tasks)."""

    lr: float = 0.5

    def build(self) -> None:
        self.theta0 = torch.zeros(self.spec.n_features + 1)

    def meta_fit(self, tasks, budget):
        return {}

    def adapt(self, support, steps):
        x = torch.cat([support.x_support, torch.ones_like(support.x_support[..., :1])], -1)
        w = support.w_support / support.w_support.sum(-1, keepdim=True)
        theta = self.theta0.expand(support.size, -1).clone()
        kept = []
        for s in range(max(steps) + 1):           # log-loss gradient, all tasks at once
            if s in steps:
                kept.append(theta)
            resid = torch.sigmoid(torch.einsum("bkd,bd->bk", x, theta)) - support.y_support
            theta = theta - self.lr * torch.einsum("bk,bkd->bd", w * resid, x)
        thetas = torch.stack(kept)                                           # [S, B, D+1]

        def predict(q, _s):
            logits = torch.einsum("sbd,bqd->sbq", thetas[..., :-1], q.x_query)
            return torch.sigmoid(logits + thetas[..., -1:])
        return FixedAdapted(steps, predict)


@dataclass
class NaNPredictor(Learner):
    def build(self) -> None:
        pass

    def meta_fit(self, tasks, budget):
        return {}

    def adapt(self, support, steps):
        return FixedAdapted(steps, lambda q, s: const(q, s, float("nan")))


@dataclass
class FitFails(Learner):
    """meta_fit raises ``error`` on call number ``on_call`` (1 = warm-up)."""

    error: Exception = field(default_factory=lambda: FloatingPointError("meta-loss is nan"))
    on_call: int = 2

    def build(self) -> None:
        self.calls = 0

    def meta_fit(self, tasks, budget):
        self.calls += 1
        if self.calls == self.on_call:
            raise self.error
        return {}

    def adapt(self, support, steps):
        return FixedAdapted(steps, const)


def run(learner, stream=None, **kw):
    args = dict(warmup=2, shots=[2, 6], steps=[0, 3], budget=BUDGET)
    args.update(kw)
    return evaluate(learner, stream or make_stream(), **args)


def test_prequential_order_adapt_before_fit_on_each_wave():
    spy = Spy()
    res = run(spy)
    ev = spy.events
    assert ev[0] == ("setup",) and ev[1] == ("fit", [0, 1])
    seen_fit: set[int] = set()
    wave = 2
    for e in ev[2:]:
        if e[0] == "adapt":
            assert wave not in seen_fit            # wave w is scored before it is revealed
        else:                                     # online: every revealed wave so far
            assert e[1] == list(range(wave + 1))
            seen_fit.add(wave)
            wave += 1
    assert [e[1] for e in ev if e[0] == "adapt"] == [2, 6] * 5
    assert sorted(seen_fit) == [2, 3, 4, 5]        # no meta_fit after the last wave
    assert all(e[2] for e in ev if e[0] == "adapt")   # query labels were hidden
    assert res.status == "ok"


def test_warmup_budget_goes_to_the_warmup_fit_only():
    budgets = []

    class Recorder(Spy):
        def meta_fit(self, tasks, budget):
            budgets.append(budget.iterations)
            return {}

    long = Budget(iterations=7, meta_batch=2)
    res = run(Recorder(), warmup_budget=long)
    assert budgets == [7, 2, 2, 2, 2]
    assert res.log["protocol"]["warmup_budget"]["iterations"] == 7
    budgets.clear()
    run(Recorder())
    assert budgets == [2] * 5                      # None: the warm-up uses ``budget``


def test_frozen_mode_makes_no_meta_fit_after_warmup():
    spy = Spy()
    run(spy, online=False)
    assert [e for e in spy.events if e[0] == "fit"] == [("fit", [0, 1])]


def test_records_cover_the_grid_with_known_metric_names():
    res = run(Spy())
    rec = res.records
    assert list(rec.columns) == ["wave", "shots", "steps", "metric", "value"]
    assert set(rec["metric"]) <= set(METRICS)
    loss = rec[rec["metric"] == "loss"]
    assert len(loss) == 5 * 2 * 2 and sorted(loss["wave"].unique()) == [2, 3, 4, 5, 6]
    adapt = rec[rec["metric"] == "adapt_seconds"]
    assert len(adapt) == 5 * 2 and (adapt["value"] >= 0).all()
    assert (rec[rec["metric"] == "meta_fit_seconds"]["wave"].tolist() == [1, 2, 3, 4, 5])
    assert res.timings["total_s"] >= res.timings["adapt_s"] > 0
    assert res.shifts["wave"].tolist() == [4]
    assert {"regret", "auc_steps", "recovery_waves[0]", "peak_excess[0]",
            "shots_to_target"} <= set(res.summary)


@pytest.mark.parametrize("target", ["binary", "multiclass", "regression"])
def test_oracle_has_zero_excess_loss_and_regret(target):
    res = run(OracleLike(), make_stream(target))
    exc = res.records[res.records["metric"] == "excess_loss"]["value"]
    assert len(exc) and np.abs(exc.to_numpy()).max() < 1e-12
    assert res.summary["regret"] == pytest.approx(0.0, abs=1e-10)
    assert res.summary["recovery_waves[0]"] == 0.0


def test_adaptation_lowers_loss_with_steps_and_shots():
    res = run(GD(), make_stream(k=40, q=30, groups=4), shots=[2, 40], steps=[0, 20])
    loss = res.records[res.records["metric"] == "loss"]
    by = loss.groupby(["shots", "steps"])["value"].mean()
    assert by[(40, 0)] == pytest.approx(math.log(2))          # zero weights predict 0.5
    assert by[(40, 20)] < by[(40, 0)] - 0.05
    assert by[(40, 20)] < by[(2, 20)]
    assert res.summary["auc_steps[K=40]"] < res.summary["auc_steps[K=2]"]


def test_chunked_adaptation_matches_one_call():
    stream = make_stream(groups=5)
    one = run(GD(), stream).records
    chunked = run(GD(), stream, max_tasks=2)
    sel = ~one["metric"].str.endswith("seconds")
    a = one[sel].reset_index(drop=True)
    b = chunked.records[sel].reset_index(drop=True)
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-6)
    assert chunked.log["chunked"] and chunked.log["chunked"][0]["chunks"] == 3


def test_same_seed_same_records():
    a = run(GD(), make_stream(seed=3), seed=7).records
    b = run(GD(), make_stream(seed=3), seed=7).records
    sel = ~a["metric"].str.endswith("seconds")
    assert a[sel].equals(b[sel])


def test_nan_predictions_are_a_diverged_outcome_not_a_crash():
    res = run(NaNPredictor())
    assert res.status == "diverged"
    rec = res.records
    assert (rec[rec["metric"] == "diverged"]["value"] == 1).all()
    assert rec[rec["metric"] == "loss"]["value"].isna().all()
    assert math.isnan(res.summary["regret"]) and res.summary["diverged"] == 1.0


@pytest.mark.parametrize("error", [FloatingPointError("overflow"),
                                   RuntimeError("meta-loss became non-finite (nan)")])
def test_divergent_meta_fit_stops_the_learner_and_records_nan(error):
    res = run(FitFails(error=error, on_call=3))         # warm-up, wave 2 ok; fails after wave 3
    assert res.status == "diverged"
    rec = res.records
    div = rec[rec["metric"] == "diverged"].groupby("wave")["value"].max()
    assert div.to_dict() == {2: 0.0, 3: 0.0, 4: 1.0, 5: 1.0, 6: 1.0}
    loss = rec[rec["metric"] == "loss"].groupby("wave")["value"].apply(lambda v: v.isna().all())
    assert loss.to_dict() == {2: False, 3: False, 4: True, 5: True, 6: True}
    assert res.log["divergence"][0]["stage"] == "meta_fit"


def test_other_exceptions_are_bugs_and_propagate():
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        run(FitFails(error=RuntimeError("mat1 and mat2 shapes cannot be multiplied"), on_call=1))
    assert is_divergence(RuntimeError("Function 'MulBackward0' returned nan values"))
    assert not is_divergence(RuntimeError("information about the device"))


def test_tell_shifts_notifies_before_the_shift_wave_is_scored():
    @dataclass
    class Aware(Spy):
        def notify_shift(self, event):
            self.events.append(("shift", event.wave))

    told, silent = Aware(), Aware()
    run(told, tell_shifts=True)
    run(silent)
    assert ("shift", 4) not in silent.events
    i = told.events.index(("shift", 4))
    assert told.events[i - 1] == ("fit", [0, 1, 2, 3]) and told.events[i + 1][0] == "adapt"


def test_wrong_prediction_shape_names_the_learner():
    @dataclass
    class BadShape(Spy):
        def adapt(self, support, steps):
            return FixedAdapted(steps, lambda q, s: torch.zeros(q.size, 1))

    with pytest.raises(ValueError, match="predict returned shape"):
        run(BadShape())


@pytest.mark.parametrize("kw, match", [
    ({"warmup": 7}, "warmup=7"),
    ({"shots": [2, 50]}, "shots=50 exceeds"),
    ({"shots": []}, "shots="),
    ({"steps": [-1]}, "steps="),
])
def test_bad_arguments_raise_one_clear_error(kw, match):
    with pytest.raises(ValueError, match=match):
        run(Spy(), **kw)


def test_oracle_query_is_hidden_from_every_learner_but_the_oracle():
    seen = []

    @dataclass
    class Peek(Learner):
        def build(self) -> None:
            pass

        def meta_fit(self, tasks, budget):
            return {}

        def adapt(self, support, steps):
            seen.append((support.oracle_query is None, support.group.tolist()))
            return FixedAdapted(steps, const)

    evaluate(Peek(), make_stream(groups=4), warmup=1, shots=[5], steps=[0],
             budget=Budget(iterations=1))
    assert seen and all(hidden for hidden, _ in seen)
    assert all(sorted(groups) == [0, 1, 2, 3] for _, groups in seen)
