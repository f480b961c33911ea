"""A group's own past respondents as extra support: the panel memory a survey analyst uses.

In a repeated survey the group effect persists from wave to wave, so an analyst predicting
group g at wave t from K fresh respondents also uses g's respondents of the last few waves.
``GroupMemory`` gives a task-level learner the same information: it keeps, per group
(``Task.group_id``), the labelled respondents of the revealed waves it was shown and appends to
a support set those of the task's group from the ``waves`` waves before the task's own wave,
each row's weight multiplied by ``discount ** age`` (age 1 = the previous wave). Every learner
that uses it weights its support loss by ``w_support`` (``losses.task_loss``), so the appended
rows are ordinary, down-weighted respondents and zero-weight padding is exact.

Only revealed tasks (those passed to ``meta_fit``) enter the memory, never a support set being
scored; and a task sees only waves strictly before its own, so meta-training episodes cut from
wave t get the history that wave t's adaptation would get. Tasks of unknown group (-1) get none.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from simlab.errors import LearnerError
from simlab.learners.base import check, check_int
from simlab.learners.episodes import (ClipGroups, EpisodeSampler, check_tasks, descend,
                                      fit_loop, labelled, normalise_weights)
from simlab.learners.space import Choice, Float, SearchSpace
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task

if TYPE_CHECKING:  # pragma: no cover
    from simlab.learners.base import Budget

_Rows = tuple[np.ndarray, np.ndarray, np.ndarray]      # x [n, D], y [n], w [n]

#: the tuning ranges of ``memory`` and ``memory_discount`` every learner with the option shares
#: (merge into its space): both are tuned, so a memory is never stuck at discount 1
MEMORY_SPACE: SearchSpace = {"memory": Choice((0, 1, 2, 4)),
                              "memory_discount": Float(0.3, 1.0)}


class GroupMemory:
    """The last ``waves`` revealed waves of every group, appended to support sets on demand."""

    def __init__(self, waves: int, discount: float = 1.0) -> None:
        self.waves, self.discount = int(waves), float(discount)
        self._rows: dict[int, dict[int, _Rows]] = {}
        self._cache: dict[tuple[int, int], _Rows | None] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._rows.values())

    def remember(self, tasks: Sequence[Task]) -> None:
        """Store every labelled respondent (support and query) of these revealed tasks, their
        weights rescaled to mean 1 within each task (a (group, wave) already stored is kept).

        Pruning keeps every wave that an episode cut from one of these tasks, or a later
        adaptation, can ask for: a group's waves from M before the earliest wave of this
        call on. All warm-up waves arrive in one call (and, online, every revealed task), so
        an episode from the first warm-up waves still gets its M waves of history; a call with
        the newest wave only keeps that wave and the M before it."""
        new = [t for t in tasks if int(t.group_id) >= 0 and not (
            int(t.info.get("wave", -1)) >= 0
            and int(t.info.get("wave", -1)) in self._rows.get(int(t.group_id), {}))]
        if not new:
            return
        x, y, w, n = labelled(new)
        w = normalise_weights(w)
        earliest: dict[int, int] = {}
        for i, t in enumerate(new):
            g, wave = int(t.group_id), int(t.info.get("wave", -1))
            waves = self._rows.setdefault(g, {})
            if wave < 0:
                wave = max(waves) + 1 if waves else 0
            k = int(n[i])
            waves[wave] = (x[i, :k].numpy(), y[i, :k].numpy(), w[i, :k].numpy())
            earliest[g] = min(earliest.get(g, wave), wave)
        for t in tasks:                    # already stored tasks of this call count too
            g, wave = int(t.group_id), int(t.info.get("wave", -1))
            if g in earliest and wave >= 0:
                earliest[g] = min(earliest[g], wave)
        for g, first in earliest.items():
            waves = self._rows[g]
            for old in [v for v in waves if v < first - self.waves]:
                del waves[old]
        self._cache.clear()

    def history(self, group: int, wave: int) -> _Rows | None:
        """Rows of ``group`` from the ``waves`` stored waves before ``wave`` (-1: the latest),
        weights already discounted by age; None when there are none."""
        key = (int(group), int(wave))
        if key not in self._cache:
            stored = self._rows.get(key[0], {})
            before = sorted(w for w in stored if key[1] < 0 or w < key[1])[-self.waves:]
            if not before:
                self._cache[key] = None
            else:
                last = key[1] if key[1] >= 0 else before[-1] + 1
                parts = [stored[w] for w in before]
                decay = [np.full(len(p[2]), self.discount ** (last - w), np.float32)
                         for w, p in zip(before, parts)]
                self._cache[key] = (np.concatenate([p[0] for p in parts]),
                                    np.concatenate([p[1] for p in parts]),
                                    np.concatenate([p[2] for p in parts]) * np.concatenate(decay))
        return self._cache[key]

    def extend(self, batch: TaskBatch) -> TaskBatch:
        """``batch`` with each task's group history appended to its support set (zero-weight
        padded to the longest); unchanged when no task has any history. The history's weights
        (mean 1 within their own task, times the discount) are put on the scale of the task's
        own support weights (their mean), so a weighted likelihood counts a remembered
        respondent ``discount ** age`` times as much as a fresh one."""
        if batch.group is None or batch.wave is None:
            return batch
        hist = [self.history(g, w) for g, w in zip(batch.group.tolist(), batch.wave.tolist())]
        n = max((len(h[1]) for h in hist if h is not None), default=0)
        if n == 0:
            return batch
        b, d = batch.size, batch.n_features
        x = np.zeros((b, n, d), np.float32)
        y = np.zeros((b, n), np.float32)
        w = np.zeros((b, n), np.float32)
        for i, h in enumerate(hist):
            if h is not None:
                m = len(h[1])
                x[i, :m], y[i, :m], w[i, :m] = h
        dev = batch.x_support.device
        own = batch.w_support
        scale = (own.sum(-1) / (own > 0).sum(-1).clamp_min(1)).cpu().numpy()
        w = w * scale[:, None].astype(np.float32)

        def cat(a: torch.Tensor, extra: np.ndarray) -> torch.Tensor:
            return torch.cat([a, torch.as_tensor(extra, device=dev, dtype=a.dtype)], dim=1)

        return TaskBatch(**{**batch.__dict__, "x_support": cat(batch.x_support, x),
                            "y_support": cat(batch.y_support, y),
                            "w_support": cat(batch.w_support, w)})


@dataclass
class GroupMemoryOption:
    """The ``memory`` hyperparameters of a task-level meta-learner (a mixin of its dataclass).

    ``memory`` = M > 0 waves of each group's past respondents join its support sets, weighted
    ``memory_discount ** age``, in meta-training episodes and in ``adapt`` alike; 0 (the
    default) is the published method. The learner calls ``_build_memory`` in ``build``,
    ``_remember_groups(tasks)`` at the start of ``meta_fit`` and ``_with_memory(batch)`` on
    every episode and support batch (``normalise=True`` for a weighted likelihood, whose
    survey weights are rescaled to mean 1 first).
    """

    memory: int = 0               # waves of the group's past respondents added to the support
    memory_discount: float = 1.0  # their weight per wave of age

    def _check_memory(self) -> None:
        n = getattr(self, "name", type(self).__name__)
        check_int(n, "memory", self.memory, 0, " (waves of group history; 0: the paper's "
                  "support set only)")
        check(isinstance(self.memory_discount, (int, float)) and 0 < self.memory_discount <= 1,
              n, "memory_discount", self.memory_discount, "it must be in (0, 1], e.g. 0.7")

    def _build_memory(self) -> None:
        """A fresh, empty memory (after ``validate`` has checked the fields)."""
        self.group_memory = (GroupMemory(self.memory, self.memory_discount) if self.memory
                             else None)

    def _remember_groups(self, tasks: Sequence[Task]) -> None:
        if self.group_memory is not None:
            self.group_memory.remember(tasks)

    def _with_memory(self, batch: TaskBatch, normalise: bool = False) -> TaskBatch:
        """The batch's support sets plus their groups' past respondents (``memory`` > 0);
        ``normalise``: the support's own weights rescaled to mean 1 first."""
        if normalise:
            batch = replace(batch, w_support=normalise_weights(batch.w_support))
        return batch if self.group_memory is None else self.group_memory.extend(batch)

    def _fit_episodes(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        """The ``meta_fit`` of a learner trained by Adam on its query loss (the metric
        learners, the meta-LSTM, the in-context learners): the groups remembered, then the
        shared outer loop (``episodes.fit_loop``), each meta-iteration one optimiser step on
        ``episode_loss`` of a meta-batch of freshly split tasks with their memory. Uses the
        learner's ``params``, ``_opt``, ``grad_clip``, ``episode_loss`` and, where it has one,
        ``clip_groups()`` (parameter groups clipped separately)."""
        learner: Any = self
        check_tasks(learner, tasks)
        if not tasks:
            raise LearnerError(f"{learner.name}: meta_fit got no tasks; pass at least one Task")
        self._remember_groups(tasks)
        groups: ClipGroups | None = (learner.clip_groups() if hasattr(learner, "clip_groups")
                                     else None)
        pool = EpisodeSampler(tasks, budget.episodes, learner.device)
        params = list(learner.params.values())
        return fit_loop(lambda batch: descend(learner.episode_loss(self._with_memory(batch)),
                                              params, learner._opt, learner.grad_clip,
                                              groups),
                        pool, budget, learner.generator)


__all__ = ["MEMORY_SPACE", "GroupMemory", "GroupMemoryOption"]
