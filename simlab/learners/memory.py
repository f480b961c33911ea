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

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch

from simlab.errors import LearnerError
from simlab.learners.base import check, check_int
from simlab.learners.episodes import check_batch, check_tasks, labelled, normalise_weights
from simlab.learners.space import Choice, Float, SearchSpace
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task

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


class SupportTransform:
    """The one place that says how a learner's support sets are extended by its groups' past
    waves: held by a learner with the ``memory`` option (``GroupMemoryOption``) as
    ``support_transform``, fresh at every ``setup`` and ``reset_memory``.

    * ``remember(tasks)``: the revealed tasks of a ``meta_fit`` call enter the memory (called
      before the learner's own ``meta_fit`` runs);
    * ``for_episodes(batch)``: a meta-training episode's support sets plus their groups'
      history (applied by ``episodes.EpisodeSampler.for_learner`` to every episode it cuts),
      when ``episodes`` (the learner's ``memory_in`` holds "episodes");
    * ``for_adapt(batch)``: the support sets ``adapt`` gets, first rescaled to mean-1 weights
      when ``normalise`` (a weighted likelihood: with ``memory`` = 0 too), then plus their
      groups' history when ``adapt`` (``memory_in`` holds "adapt").

    ``memory`` None (``memory`` = 0) appends nothing."""

    def __init__(self, memory: GroupMemory | None, episodes: bool = True, adapt: bool = True,
                 normalise: bool = False) -> None:
        self.memory, self.episodes, self.adapt, self.normalise = memory, episodes, adapt, normalise

    def remember(self, tasks: Sequence[Task]) -> None:
        """Store the revealed ``tasks``' respondents by group and wave (``GroupMemory``)."""
        if self.memory is not None:
            self.memory.remember(tasks)

    def _extend(self, batch: TaskBatch) -> TaskBatch:
        return batch if self.memory is None else self.memory.extend(batch)

    def for_episodes(self, batch: TaskBatch) -> TaskBatch:
        """A meta-training episode batch with its groups' history (if episodes use it)."""
        return self._extend(batch) if self.episodes else batch

    def for_adapt(self, batch: TaskBatch) -> TaskBatch:
        """A support batch as ``adapt`` sees it: weights normalised first (``normalise``),
        then its groups' history appended (if adapt uses it)."""
        if self.normalise:
            batch = replace(batch, w_support=normalise_weights(batch.w_support))
        return self._extend(batch) if self.adapt else batch


#: where a learner's group memory may apply (``GroupMemoryOption.memory_in``)
MEMORY_PLACES = frozenset({"episodes", "adapt"})


class _HoldsTransform:
    """Where the transform's attribute is declared: outside the dataclass, so not a field."""

    support_transform: SupportTransform      # set by setup and reset_memory


@dataclass
class GroupMemoryOption(_HoldsTransform):
    """The ``memory`` hyperparameters of a task-level learner (a mixin of its dataclass),
    applied for it: the learner writes no memory call.

    ``memory`` = M > 0 waves of each group's past respondents join its support sets, weighted
    ``memory_discount ** age``, where the class declares (``memory_in``): "episodes" (the
    meta-training episodes of ``EpisodeSampler.for_learner``) and / or "adapt"; 0 (the
    default) is the published method. ``normalise_support``: ``adapt``'s support weights are
    rescaled to mean 1 first (a weighted likelihood), with ``memory`` = 0 too.

    How (``__init_subclass__``, so a subclass's own overrides are covered): ``validate`` also
    checks the two fields (``tuning`` calls ``validate`` directly); ``setup`` and
    ``reset_memory`` give a fresh ``support_transform`` (``SupportTransform``); ``meta_fit``
    first checks its tasks and remembers them; ``adapt`` gets its support batch checked, on
    the learner's device and through ``support_transform.for_adapt``. A ``super()`` call of a
    hooked method inside another is not hooked twice (``validate`` checks at each level, as
    the learners did).
    """

    memory: int = 0               # waves of the group's past respondents added to the support
    memory_discount: float = 1.0  # their weight per wave of age

    #: where the memory extends support sets: "episodes" and / or "adapt"
    memory_in: ClassVar[frozenset[str]] = MEMORY_PLACES
    #: ``adapt``'s support weights rescaled to mean 1 before the history is appended
    normalise_support: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not set(cls.memory_in) <= MEMORY_PLACES:
            raise LearnerError(f"{cls.__name__}.memory_in={set(cls.memory_in)!r}: use a "
                               f"subset of {sorted(MEMORY_PLACES)}")
        for name, hook in _HOOKS.items():
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, "__isabstractmethod__", False):
                setattr(cls, name, _hooked(name, fn, hook))

    @property
    def group_memory(self) -> GroupMemory | None:
        """The memory itself (None with ``memory`` = 0)."""
        return self.support_transform.memory

    def validate(self) -> None:
        """The memory fields (a learner's own ``validate`` gets this check appended)."""
        _check_memory(self)

    def setup(self, *args: Any, **kwargs: Any) -> None:
        super().setup(*args, **kwargs)  # type: ignore[misc]
        _fresh_transform(self)


def _check_memory(self: Any) -> None:
    n = getattr(self, "name", type(self).__name__)
    check_int(n, "memory", self.memory, 0, " (waves of group history; 0: the paper's "
              "support set only)")
    check(isinstance(self.memory_discount, (int, float)) and 0 < self.memory_discount <= 1,
          n, "memory_discount", self.memory_discount, "it must be in (0, 1], e.g. 0.7")


def _fresh_transform(self: Any) -> None:
    """A fresh, empty memory (after ``validate`` has checked the fields)."""
    places = self.memory_in
    self.support_transform = SupportTransform(
        GroupMemory(self.memory, self.memory_discount) if self.memory else None,
        episodes="episodes" in places, adapt="adapt" in places,
        normalise=self.normalise_support)


def _remember(self: Any, tasks: Any) -> Any:
    check_tasks(self, tasks)
    self.support_transform.remember(tasks)
    return tasks


def _for_adapt(self: Any, support: Any) -> Any:
    check_batch(self, support)
    return self.support_transform.for_adapt(support.to(self.device))


@dataclass(frozen=True)
class _Hook:
    """What runs around one learner method: ``before`` maps its first argument (``arg``,
    positional or by name), ``after`` runs on return; ``once``: only in the outermost call
    (a ``super()`` call inside runs bare; validate checks at every level, as before)."""

    arg: str | None = None
    before: Callable[[Any, Any], Any] | None = None
    after: Callable[[Any], None] | None = None
    once: bool = True


_HOOKS: dict[str, _Hook] = {
    "validate": _Hook(after=_check_memory, once=False),
    "reset_memory": _Hook(after=_fresh_transform),
    "meta_fit": _Hook("tasks", _remember),
    "adapt": _Hook("support", _for_adapt)}


def _hooked(name: str, fn: Callable[..., Any], hook: _Hook) -> Callable[..., Any]:
    """``fn`` with the memory's steps around it (``_Hook``)."""
    flag = f"_memory_hook_{name}"

    @functools.wraps(fn)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        if hook.once and self.__dict__.get(flag):
            return fn(self, *args, **kwargs)
        self.__dict__[flag] = True
        try:
            if hook.before is not None and args:
                args = (hook.before(self, args[0]), *args[1:])
            elif hook.before is not None and hook.arg in kwargs:
                kwargs = {**kwargs, hook.arg: hook.before(self, kwargs[hook.arg])}
            out = fn(self, *args, **kwargs)
            if hook.after is not None:
                hook.after(self)
            return out
        finally:
            self.__dict__[flag] = False

    return run


__all__ = ["MEMORY_PLACES", "MEMORY_SPACE", "GroupMemory", "GroupMemoryOption",
           "SupportTransform"]
