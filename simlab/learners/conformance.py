"""``check_learner``: the conformance check for plug-in authors (scikit-learn's
``check_estimator`` for simlab's Learner contract).

It runs a learner through the protocol's calls on tiny reference tasks (binary, multiclass,
regression) and fails with one message naming the broken promise: output shapes and ranges,
never reading query labels (or, except for the oracle, ``oracle_query``), the same seed giving
the same predictions, ``meta_fit`` callable again (online updates), a numeric ``meta_fit`` log,
and hyperparameters / search space that name the dataclass's own fields.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import numpy as np
import torch

from simlab.learners.base import Budget, Choice, Float, Int, Learner, TaskSpec
from simlab.learners.roles import ROLES
from simlab.tasks.batch import TaskBatch
from simlab.tasks.reference import linear_gaussian_tasks, sinusoid_tasks
from simlab.tasks.task import Task, TargetKind

STEPS = (0, 1, 3)
BUDGET = Budget(iterations=3, meta_batch=4)


class ConformanceError(AssertionError):
    """A learner breaks the Learner contract; the message says which promise and how."""


def _fail(cls: type, what: str) -> NoReturn:
    raise ConformanceError(f"{cls.__name__} ({getattr(cls, 'name', '?')}): {what}")


def _tasks(target: TargetKind, seed: int) -> list[Task]:
    """Twelve small tasks with distinct group ids: 8 to meta-fit, 4 to adapt and predict."""
    rng = np.random.default_rng(seed)
    if target == "regression":
        tasks = sinusoid_tasks(12, 6, 8, rng)
    else:
        tasks = linear_gaussian_tasks(12, 6, 8, rng, n_features=3,
                                      n_classes=3 if target == "multiclass" else 2)
    for i, t in enumerate(tasks):
        t.info.update(group=i % 6, group_id=i % 6, wave=i // 6)
    return tasks


def seal_query(batch: TaskBatch, labels: str, oracle: bool) -> TaskBatch:
    """The batch as the protocol hands it over, with query labels NaN / -1 ("sealed") or
    replaced by noise ("noise"), and ``oracle_query`` only for the oracle."""
    if labels == "sealed":
        y = torch.full_like(batch.y_query, -1 if batch.target == "multiclass" else math.nan)
    else:
        g = torch.Generator().manual_seed(1)
        y = (torch.randint(0, batch.n_classes, batch.y_query.shape, generator=g)
             if batch.target == "multiclass"
             else torch.randn(batch.y_query.shape, generator=g))
    return dataclasses.replace(batch, y_query=y.to(batch.y_query.dtype),
                               oracle_query=batch.oracle_query if oracle else None)


def _check_fields(cls: type[Learner]) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Learner)):
        _fail(cls, "is not a subclass of simlab.learners.Learner")
    if not dataclasses.is_dataclass(cls):
        _fail(cls, "is not a dataclass: decorate it with @dataclass so that its fields are its "
                   "hyperparameters")
    fields = {f.name for f in dataclasses.fields(cls)}
    for key, rng in cls.search_space.items():
        if key not in fields:
            _fail(cls, f"search_space names {key!r}, which is not a field; fields: "
                       f"{sorted(fields)}")
        if not isinstance(rng, (Float, Int, Choice)):
            _fail(cls, f"search_space[{key!r}] = {rng!r}; use Float, Int or Choice")
    if cls.role not in ROLES:
        _fail(cls, f"role = {cls.role!r}; declare one of {', '.join(map(repr, ROLES))}")


def _predict(learner: Learner, support: TaskBatch, labels: str) -> torch.Tensor:
    batch = seal_query(support, labels, learner.uses_oracle)
    return learner.adapt(batch, STEPS).predict(batch).detach().to("cpu", torch.float64)


def _check_prediction(cls: type, pred: torch.Tensor, batch: TaskBatch) -> None:
    want: tuple[int, ...] = (len(STEPS), batch.size, batch.x_query.shape[1])
    want += (batch.n_classes,) if batch.target == "multiclass" else ()
    if tuple(pred.shape) != want:
        _fail(cls, f"{batch.target}: predict returned shape {tuple(pred.shape)}, expected "
                   f"{want} ([steps, tasks, query(, classes)])")
    if not torch.isfinite(pred).all():
        _fail(cls, f"{batch.target}: predictions on well-posed tasks are not finite (the "
                   "protocol seals the query labels as NaN / -1: reading them does this)")
    if batch.target == "binary" and not ((pred >= 0) & (pred <= 1)).all():
        _fail(cls, "binary: predictions must be probabilities P(y=1) in [0, 1]")
    if batch.target == "multiclass" and not torch.allclose(
            pred.sum(-1), torch.ones((), dtype=pred.dtype), atol=1e-4):
        _fail(cls, "multiclass: class probabilities must sum to 1 over the last axis")


def _run(cls: type[Learner], params: Mapping[str, Any], target: TargetKind, seed: int
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit, predict, fit again, predict: the two prediction tensors."""
    tasks = _tasks(target, seed)
    learner = cls(**params)
    learner.setup(TaskSpec.of(tasks[0]), seed=seed)
    support = TaskBatch.from_tasks(tasks[8:])
    for round_ in range(2):
        log = learner.meta_fit(tasks[:8] if round_ == 0 else tasks[4:8], BUDGET)
        if not isinstance(log, Mapping) or not all(
                isinstance(v, (numbers.Real, str)) for v in log.values()):
            _fail(cls, f"meta_fit must return a dict of numbers (a small log); got {log!r}")
        pred = _predict(learner, support, "sealed")
        _check_prediction(cls, pred, support)
        if round_ == 0:
            first = pred
    return first, pred


def check_learner(cls: type[Learner], hyperparameters: Mapping[str, Any] | None = None,
                  targets: Sequence[TargetKind] = ("binary", "multiclass", "regression"),
                  seed: int = 0) -> dict[str, str]:
    """Raise ``ConformanceError`` where ``cls`` breaks the Learner contract.

    Returns ``target -> "ok"`` or ``"unsupported: <reason>"`` (a ``setup`` that refuses a
    target kind with a ValueError is allowed: not every learner serves every kind)."""
    _check_fields(cls)
    params = dict(hyperparameters or {})
    out: dict[str, str] = {}
    for target in targets:
        try:
            cls(**params).setup(TaskSpec.of(_tasks(target, seed)[0]), seed=seed)
        except ValueError as err:
            out[target] = f"unsupported: {err}"
            continue
        first, second = _run(cls, params, target, seed)
        again, _ = _run(cls, params, target, seed)
        if not torch.allclose(first, again, atol=1e-6, rtol=1e-5):
            _fail(cls, f"{target}: the same seed gave different predictions (max difference "
                       f"{(first - again).abs().max():.3g}); draw randomness only from "
                       "self.generator")
        learner = cls(**params)
        tasks = _tasks(target, seed)
        learner.setup(TaskSpec.of(tasks[0]), seed=seed)
        learner.meta_fit(tasks[:8], BUDGET)
        support = TaskBatch.from_tasks(tasks[8:])
        state = learner.generator.get_state()
        blind = _predict(learner, support, "sealed")
        learner.generator.set_state(state)
        peek = _predict(learner, support, "noise")
        if not torch.allclose(blind, peek, atol=1e-6, equal_nan=True):
            _fail(cls, f"{target}: predictions change with the query labels; adapt and predict "
                       "must read only the support set and x_query")
        out[target] = "ok"
    return out


__all__ = ["ConformanceError", "check_learner"]
