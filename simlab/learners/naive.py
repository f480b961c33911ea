"""Naive baselines every learner is compared with: persistence and the group mean.

A survey analyst's first forecast of a group's answer is what the group said before. Neither
learner looks at a respondent's features: each predicts one value per task (group x wave) for
all its query respondents, so a learner that loses to them has learned nothing usable from
the features or from pooling. Both are registered as ``persistence`` and ``group_mean`` and
are baselines in the report (``role = "naive"``): every other learner is flagged "worse than
persistence" / "worse than group_mean" when the paired test says so.

Definitions. A *share* is the survey-weighted mean response of a set of respondents (weights
normalised to mean 1 within each task): P(y=1) for binary, the class shares for multiclass, the
mean for regression. ``a`` = ``prior_strength`` pseudo-respondents. The *pooled share* is the
share of every respondent of the latest revealed wave (all groups); before any ``meta_fit``
it is 1/2 (binary), uniform (multiclass) or 0 (regression).

* :class:`Persistence` (``persistence``): a group seen in a revealed wave gets its share at the
  **last** wave in which it was revealed, smoothed toward that wave's pooled share,
  ``(n s_g + a s_pool) / (n + a)`` (n its respondents there; the smoothing keeps a 0% or 100%
  cell from giving infinite log loss). A group never seen (or of unknown id) gets the
  smoothed share of its K support respondents, ``(K s_K + a s_pool) / (K + a)``. Every step
  count gives the same prediction (there is nothing to adapt).
* :class:`GroupMean` (``group_mean``): the prior of a group is its share over **all** its
  revealed respondents, every revealed wave pooled (the pooled share of all revealed
  respondents for a group never seen). Step 0 predicts that prior; any step count > 0 the
  K support respondents' share smoothed toward it, ``(K s_K + a m_g) / (K + a)``: the
  posterior mean of a Beta / Dirichlet / normal-mean model with the group's history as
  an ``a``-respondent prior.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from simlab.learners.base import (Adapted, Budget, Float, Learner, SearchSpace,
                                  check_number)
from simlab.learners.episodes import (check_batch, check_query, check_steps, check_tasks,
                                      labelled, normalise_weights)
from simlab.learners.roles import Role
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task


def _groups(batch: TaskBatch) -> list[int]:
    """Each task's group id (-1: unknown, treated as never seen)."""
    return [-1] * batch.size if batch.group is None else [int(g) for g in batch.group]


@dataclass
class ConstantAdapted(Adapted):
    """One prediction per task and step count, the same for every query respondent:
    ``value [S, B, O]`` (O = 1 for binary / regression, C for multiclass)."""

    steps: tuple[int, ...]
    value: torch.Tensor
    multiclass: bool
    learner: str

    def predict(self, query: TaskBatch) -> torch.Tensor:
        check_query(query, int(self.value.shape[1]), self.learner)
        q = query.x_query.shape[1]
        v = self.value.to(query.x_query.dtype)
        if self.multiclass:
            return v.unsqueeze(2).expand(-1, -1, q, -1)
        return v[..., 0].unsqueeze(2).expand(-1, -1, q)


class _Shares(Learner):
    """Shared bookkeeping: per group and wave, the weighted sum of responses and of weights."""

    #: the one knob: how many pseudo-respondents the prior is worth
    search_space: ClassVar[SearchSpace] = {"prior_strength": Float(0.1, 50.0, log=True)}

    prior_strength: float

    def validate(self) -> None:
        check_number(self.name, "prior_strength", self.prior_strength,
                     hint=" (pseudo-respondents of the prior; e.g. 1)")

    def _checked(self, support: TaskBatch, steps: Sequence[int]
                 ) -> tuple[TaskBatch, tuple[int, ...]]:
        """The batch (on the CPU, where the shares live) and the step counts, checked."""
        check_batch(self, support)
        return support.to("cpu"), check_steps(steps, self.name)

    def build(self) -> None:
        self._out = self.spec.out_dim
        #: group -> wave -> (sum of w * y [O], sum of w)
        self._sums: dict[int, dict[int, tuple[torch.Tensor, float]]] = {}
        self._calls = 0

    def _encode(self, y: torch.Tensor) -> torch.Tensor:
        """Responses as ``[..., O]`` in float64 (one-hot for multiclass)."""
        if self.spec.target == "multiclass":
            return F.one_hot(y.long().clamp_min(0), self._out).to(torch.float64)
        return y.to(torch.float64).unsqueeze(-1)

    def _default(self) -> torch.Tensor:
        if self.spec.target == "multiclass":
            return torch.full((self._out,), 1.0 / self._out, dtype=torch.float64)
        return torch.full((1,), 0.5 if self.spec.target == "binary" else 0.0,
                          dtype=torch.float64)

    def meta_fit(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        """Remember every revealed respondent's response, by group and wave (no features)."""
        check_tasks(self, tasks)
        self._calls += 1
        if not tasks:
            return {"tasks": 0.0, "seconds": 0.0}
        _, y, w, _ = labelled(tasks)
        w = normalise_weights(w).to(torch.float64)
        wy = (w.unsqueeze(-1) * self._encode(y)).sum(1)               # [T, O]
        for i, t in enumerate(tasks):
            wave = int(t.info.get("wave", self._calls))
            self._sums.setdefault(int(t.group_id), {})[wave] = (wy[i], float(w[i].sum()))
        return {"tasks": float(len(tasks)), "groups": float(len(self._sums)), "seconds": 0.0}

    def _pooled(self, latest_only: bool) -> torch.Tensor:
        """The share of the latest revealed wave's respondents (or of all revealed ones)."""
        cells = [(wave, s) for g in self._sums.values() for wave, s in g.items()]
        if not cells:
            return self._default()
        if latest_only:
            last = max(wave for wave, _ in cells)
            cells = [(wave, s) for wave, s in cells if wave == last]
        num = torch.stack([s[0] for _, s in cells]).sum(0)
        den = sum(s[1] for _, s in cells)
        return num / den if den > 0 else self._default()

    def _support_share(self, support: TaskBatch, prior: torch.Tensor) -> torch.Tensor:
        """``(K s_K + a prior) / (K + a)`` per task: ``[B, O]``."""
        w = normalise_weights(support.w_support).to(torch.float64)
        wy = (w.unsqueeze(-1) * self._encode(support.y_support)).sum(1)
        a = float(self.prior_strength)
        return (wy + a * prior) / (w.sum(1, keepdim=True) + a)

    def _adapted(self, steps: tuple[int, ...], values: list[torch.Tensor]) -> ConstantAdapted:
        return ConstantAdapted(steps, torch.stack(values).to(torch.float32),
                               self.spec.target == "multiclass", self.name)


@dataclass
class Persistence(_Shares):
    """Each group's share (P(y=1), class shares or mean) at its last revealed wave.

    A naive baseline (no features, no pooling): a group seen before gets its share at the last
    wave it was revealed in, smoothed toward that wave's pooled share by ``prior_strength``
    pseudo-respondents; a group never seen gets its K support respondents' share, smoothed the
    same way. The prediction does not depend on the step count."""

    name: ClassVar[str] = "persistence"
    role: ClassVar[Role] = "naive"
    prior_strength: float = 1.0

    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> Adapted:
        support, steps = self._checked(support, steps)
        a = float(self.prior_strength)
        fallback = self._support_share(support, self._pooled(latest_only=True))
        rows = []
        for i, g in enumerate(_groups(support)):
            waves = self._sums.get(g)
            if not waves:
                rows.append(fallback[i])
                continue
            last = max(waves)
            wy, n = waves[last]
            pool = self._wave_share(last)
            rows.append((wy + a * pool) / (n + a))
        value = torch.stack(rows)
        return self._adapted(steps, [value] * len(steps))

    def _wave_share(self, wave: int) -> torch.Tensor:
        cells = [g[wave] for g in self._sums.values() if wave in g]
        den = sum(c[1] for c in cells)
        return torch.stack([c[0] for c in cells]).sum(0) / den if den > 0 else self._default()


@dataclass
class GroupMean(_Shares):
    """Each group's share over all its revealed waves, updated by its K support respondents.

    A naive baseline (no features): the prior is the group's share over every revealed
    respondent (all waves pooled; the pooled share of all revealed respondents for a group
    never seen); step 0 predicts it, any step count > 0 the support share smoothed toward it
    with ``prior_strength`` pseudo-respondents (the posterior mean of a Beta / Dirichlet /
    normal-mean model)."""

    name: ClassVar[str] = "group_mean"
    role: ClassVar[Role] = "naive"
    prior_strength: float = 1.0

    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> Adapted:
        support, steps = self._checked(support, steps)
        pooled = self._pooled(latest_only=False)
        groups = _groups(support)
        prior = []
        for g in groups:
            waves = self._sums.get(g)
            if not waves:
                prior.append(pooled)
                continue
            num = torch.stack([s[0] for s in waves.values()]).sum(0)
            den = sum(s[1] for s in waves.values())
            prior.append(num / den if den > 0 else pooled)
        m = torch.stack(prior)
        post = self._support_share(support, m)
        return self._adapted(steps, [m if s == 0 else post for s in steps])


__all__ = ["ConstantAdapted", "GroupMean", "Persistence"]
