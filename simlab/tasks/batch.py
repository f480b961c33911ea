"""TaskBatch: tasks stacked into tensors so learners can vmap over them."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass

import numpy as np
import torch

from simlab.tasks.task import Task, TargetKind


@dataclass(frozen=True)
class TaskBatch:
    """B tasks with equal support size K; query sets padded to the longest Q.

    ``q_mask [B, Q]`` is True for real query respondents, False for padding. Weights are
    ones where the tasks carry none. ``y_*`` are float32 for binary/regression, int64 for
    multiclass. ``oracle_query`` is None unless every task has one. ``group`` and ``wave``
    (int64 ``[B]``) identify each task's group (``Task.group_id``: stable across the waves of a
    stream) and wave, so a learner may keep a memory per group; -1 where unknown.
    """

    x_support: torch.Tensor   # [B, K, D]
    y_support: torch.Tensor   # [B, K]
    w_support: torch.Tensor   # [B, K]
    x_query: torch.Tensor     # [B, Q, D]
    y_query: torch.Tensor     # [B, Q]
    w_query: torch.Tensor     # [B, Q]
    q_mask: torch.Tensor      # [B, Q] bool
    target: TargetKind
    n_classes: int
    oracle_query: torch.Tensor | None = None   # [B, Q] or [B, Q, C]
    group: torch.Tensor | None = None          # [B] int64 group ids (-1: unknown)
    wave: torch.Tensor | None = None           # [B] int64 wave index (-1: unknown)

    @property
    def size(self) -> int:
        return int(self.x_support.shape[0])

    @property
    def shots(self) -> int:
        return int(self.x_support.shape[1])

    @property
    def n_features(self) -> int:
        return int(self.x_support.shape[2])

    def to(self, device: str | torch.device) -> TaskBatch:
        moved: dict[str, Any] = {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                                 for k, v in self.__dict__.items()}
        return TaskBatch(**moved)

    @classmethod
    def from_tasks(cls, tasks: Sequence[Task], device: str | torch.device = "cpu") -> TaskBatch:
        """Stack tasks; they must share target kind, K and D."""
        if not tasks:
            raise ValueError("cannot batch an empty list of tasks")
        first = tasks[0]
        for t in tasks:
            if (t.target, t.shots, t.n_features) != (first.target, first.shots, first.n_features):
                raise ValueError("tasks in a batch need the same target kind, shots K and "
                                 f"features D; got {(t.target, t.shots, t.n_features)} and "
                                 f"{(first.target, first.shots, first.n_features)}")
        q = max(t.n_query for t in tasks)
        ydt = np.int64 if first.target == "multiclass" else np.float32

        def pad(a: np.ndarray, fill: float = 0.0) -> np.ndarray:
            width = [(0, q - a.shape[0])] + [(0, 0)] * (a.ndim - 1)
            return np.pad(a, width, constant_values=fill)

        def ones(n: int, w: np.ndarray | None) -> np.ndarray:
            return np.ones(n, np.float32) if w is None else w.astype(np.float32)

        def stack(arrs: list[np.ndarray], dtype: Any) -> torch.Tensor:
            return torch.as_tensor(np.stack(arrs).astype(dtype, copy=False), device=device)

        oracles = [x.oracle_query for x in tasks if x.oracle_query is not None]
        oracle = (stack([pad(a) for a in oracles], np.float32) if len(oracles) == len(tasks)
                  else None)
        return cls(
            x_support=stack([x.x_support for x in tasks], np.float32),
            y_support=stack([x.y_support for x in tasks], ydt),
            w_support=stack([ones(x.shots, x.w_support) for x in tasks], np.float32),
            x_query=stack([pad(x.x_query) for x in tasks], np.float32),
            y_query=stack([pad(x.y_query) for x in tasks], ydt),
            w_query=stack([pad(ones(x.n_query, x.w_query)) for x in tasks], np.float32),
            q_mask=stack([pad(np.ones(x.n_query, bool), False) for x in tasks], bool),
            target=first.target, n_classes=first.n_classes, oracle_query=oracle,
            group=torch.as_tensor([x.group_id for x in tasks], dtype=torch.int64, device=device),
            wave=torch.as_tensor([int(x.info.get("wave", -1)) for x in tasks], dtype=torch.int64,
                                 device=device))
