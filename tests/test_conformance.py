"""Every built-in learner passes ``check_learner``, and the check catches broken learners."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from simlab.learners.base import Budget, Float, Learner
from simlab.learners.conformance import ConformanceError, check_learner
from simlab.learners.registry import available, learner_class

# tiny budgets so that the whole check stays fast for every built-in learner
SMALL = {"meta_lstm": {"hidden": (8,)},
         # the floor reference needs the peak prior a control stream carries in its metadata
         "floor": {"prior": {"kind": "peak", "trait": "x", "column": 0, "width": 0.5,
                             "offset": [0.0, 1.0], "amplitude": [2.0, 1.0],
                             "location": [0.0, 1.0]}}}


@pytest.mark.parametrize("name", sorted(n for n in available() if ":" not in n)
                         + ["cpd:partial_pooling", "cpd:maml"])
def test_builtin_learner_conforms(name):
    out = check_learner(learner_class(name), SMALL.get(name))
    assert "ok" in out.values(), out


@dataclass
class _Base(Learner):
    def build(self) -> None:
        self.w = torch.zeros(self.spec.n_features)

    def meta_fit(self, tasks, budget: Budget):
        return {"tasks": float(len(tasks))}

    def _adapted(self, steps, fn):
        return _Fixed(tuple(steps), fn)


class _Fixed:
    def __init__(self, steps, fn):
        self.steps, self.fn = steps, fn

    def predict(self, query):
        return self.fn(query).expand(len(self.steps), *self.fn(query).shape)


@dataclass
class Peeker(_Base):
    """Predicts the query labels themselves: the worst kind of leak."""

    def adapt(self, support, steps):
        return self._adapted(steps, lambda q: q.y_query.clamp(0, 1))


@dataclass
class Noisy(_Base):
    """Uses torch's global random state: not reproducible from the seed."""

    def adapt(self, support, steps):
        return self._adapted(steps, lambda q: torch.rand(q.x_query.shape[:2]))


@dataclass
class BadSpace(_Base):
    search_space = {"lr": Float(1e-3, 1.0)}

    def adapt(self, support, steps):
        return self._adapted(steps, lambda q: torch.full(q.x_query.shape[:2], 0.5))


@dataclass
class WrongShape(_Base):
    def adapt(self, support, steps):
        return self._adapted(steps, lambda q: torch.full(q.x_query.shape[:1], 0.5))


@dataclass
class BadRole(_Base):
    role = "Baseline"

    def adapt(self, support, steps):
        return self._adapted(steps, lambda q: torch.full(q.x_query.shape[:2], 0.5))


@pytest.mark.parametrize("cls, message", [
    (Peeker, "query labels"), (Noisy, "same seed"), (BadSpace, "not a field"),
    (WrongShape, "shape"), (BadRole, "role = 'Baseline'")])
def test_broken_learners_are_caught(cls, message):
    with pytest.raises(ConformanceError, match=message):
        check_learner(cls, targets=("binary",))


def test_a_learner_declares_extra_wave_rows_and_log_entries_and_its_role_is_logged():
    """The protocol asks every learner for ``wave_extras`` after each meta_fit (rows of that
    wave) and ``run_extras`` once (log entries), with no special case for any learner; the
    run log records the declared role. The defaults add nothing."""
    import numpy as np

    import simlab
    from simlab.learners.naive import GroupMean
    from simlab.tasks.reference import drifting_regression_stream

    @dataclass
    class Counting(GroupMean):
        role = "baseline"

        def build(self) -> None:
            super().build()
            self.fits = 0

        def meta_fit(self, tasks, budget):
            self.fits += 1
            return super().meta_fit(tasks, budget)

        def wave_extras(self):
            return {"fits_so_far": float(self.fits)}

        def run_extras(self):
            return {"fits": self.fits}

    stream = drifting_regression_stream(np.random.default_rng(0), n_groups=4, n_waves=5,
                                        n_features=2, shots=5, query=5)
    kw = {"warmup": 2, "shots": [3], "steps": [1], "budget": Budget(iterations=1, meta_batch=2)}
    res = simlab.evaluate(Counting(), stream, **kw)
    rows = res.records[res.records["metric"] == "fits_so_far"]
    assert rows["wave"].tolist() == [1, 2, 3] and rows["value"].tolist() == [1.0, 2.0, 3.0]
    assert res.log["fits"] == 3 and res.log["role"] == "baseline"
    plain = simlab.evaluate(GroupMean(), stream, **kw)
    assert "fits" not in plain.log and plain.log["role"] == "naive"
    assert set(plain.records["metric"]) == set(res.records["metric"]) - {"fits_so_far"}
