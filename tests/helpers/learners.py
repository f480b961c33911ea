"""Learners and hand-made streams the protocol, budget, sweep and CLI tests share (torch)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from simlab.learners.base import Adapted, Budget, Learner
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import ShiftEvent, Task, TaskStream

BUDGET = Budget(iterations=2, meta_batch=2)


def make_stream(target: str = "binary", waves: int = 7, groups: int = 3, k: int = 12,
                q: int = 10, d: int = 3, shift_at: int = 4, seed: int = 0,
                n_classes: int = 3) -> TaskStream:
    """Groups with a shared linear signal that flips sign at ``shift_at``; query sizes differ
    by group (padding), the oracle is the true P(y=1) / class probabilities / mean."""
    rng = np.random.default_rng(seed)
    beta = rng.normal(size=(d, n_classes if target == "multiclass" else 1)) * 2
    out = []
    for w in range(waves):
        sign = -1.0 if w >= shift_at else 1.0
        tasks = []
        for g in range(groups):
            n = k + q + g
            x = rng.normal(size=(n, d)).astype(np.float32)
            eta = sign * x @ beta
            if target == "binary":
                truth = 1 / (1 + np.exp(-eta[:, 0]))
                y = (rng.random(n) < truth).astype(np.float32)
            elif target == "multiclass":
                truth = np.exp(eta) / np.exp(eta).sum(1, keepdims=True)
                y = np.array([rng.choice(n_classes, p=p) for p in truth], np.int64)
            else:
                truth = eta[:, 0]
                y = (truth + rng.normal(size=n)).astype(np.float32)
            tasks.append(Task(x[:k], y[:k], x[k:], y[k:], target,
                              n_classes=n_classes if target == "multiclass" else 2,
                              oracle_query=truth[k:].astype(np.float32),
                              info={"wave": w, "group": g}))
        out.append(tasks)
    return TaskStream(out, [ShiftEvent(shift_at, 10 * shift_at, "abrupt", "flip", "beta", 2.0)])


class FixedAdapted(Adapted):
    def __init__(self, steps: Sequence[int], fn):
        self.steps = tuple(steps)
        self.fn = fn

    def predict(self, query: TaskBatch) -> torch.Tensor:
        return self.fn(query, len(self.steps))


def const(query: TaskBatch, s: int, value: float = 0.5) -> torch.Tensor:
    return torch.full((s, query.size, query.x_query.shape[1]), value)


@dataclass
class Broken(Learner):
    """A learner whose meta-fit raises: its cells must fail alone."""

    name: ClassVar[str] = "broken"

    def build(self) -> None:
        pass

    def meta_fit(self, tasks, budget):
        raise ValueError("broken on purpose")

    def adapt(self, support, steps):
        raise AssertionError("never reached")
