"""The Learner contract: meta-fit on past tasks, adapt to new support sets, predict queries.

Conventions (scikit-learn style): the constructor holds hyperparameters only (dataclass
fields); they are validated in ``setup``, which also builds parameters from an explicit
``torch.Generator``. ``meta_fit`` may be called again later (online updates).
"""
from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from simlab.errors import LearnerError
from simlab.learners.roles import Role
from simlab.learners.space import Choice, Float, Int, SearchSpace  # noqa: F401 (re-exported)
from simlab.settings import (BUDGET_MODES, EPISODE_MODES, Budget, Episodes,  # noqa: F401
                             is_int, is_number)  # re-exported: their home is simlab.settings
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task, TargetKind


@dataclass(frozen=True)
class TaskSpec:
    """What a learner must know about the tasks before it builds its parameters."""

    target: TargetKind
    n_features: int
    n_classes: int = 2

    @property
    def out_dim(self) -> int:
        """Network outputs: one logit/mean for binary and regression, C logits for multiclass."""
        return self.n_classes if self.target == "multiclass" else 1

    @classmethod
    def of(cls, task: Task) -> TaskSpec:
        return cls(task.target, task.n_features, task.n_classes)


class Adapted(ABC):
    """The result of adapting to a batch of support sets, for several inner-step counts."""

    steps: tuple[int, ...]

    @abstractmethod
    def predict(self, query: TaskBatch) -> torch.Tensor:
        """Predictions for ``query.x_query`` after each step count in ``self.steps``.

        Shape ``[S, B, Q]`` for binary (P(y=1)) and regression (E[y]), ``[S, B, Q, C]`` for
        multiclass (class probabilities). Non-finite values mean divergence; the evaluation
        records them, the learner need not raise.
        """


class Learner(ABC):
    """Base class; subclasses are dataclasses whose fields are the hyperparameters.

    What a learner sees: ``meta_fit`` gets revealed tasks whole (all labelled respondents);
    ``adapt`` gets a sealed ``TaskBatch`` (no query labels; no ``oracle_query`` unless
    ``uses_oracle``) that carries each task's ``group`` and ``wave`` ids, so a learner may keep a
    per-group memory. Meta-training episodes are re-drawn per iteration (``Budget.episodes``).
    """

    name: ClassVar[str] = "learner"
    #: the hyperparameters that equal-budget tuning may vary (field name -> range); every
    #: learner tuned in a comparison gets the same number of trials over its own space
    search_space: ClassVar[SearchSpace] = {}
    #: only the oracle baseline may see ``TaskBatch.oracle_query``; the protocol removes it
    #: from every other learner's batches
    uses_oracle: ClassVar[bool] = False
    #: True for a learner that keeps its own state of every past wave and must be shown each
    #: revealed wave once, in order (a filter, an incremental EM, a changepoint detector): the
    #: online ``meta_fit`` then gets the newest wave only. Everyone else gets every revealed
    #: task at each online ``meta_fit`` (a meta-learner's material is its past tasks).
    incremental: ClassVar[bool] = False
    #: the part it plays in a comparison (``learners.roles``): "meta" (a method under test),
    #: "baseline", "naive" (a naive forecast), "oracle" or "reference" (shown, never
    #: compared). The protocol records it with every run and the statistics read it from
    #: there, so a plug-in declares itself a baseline here.
    role: ClassVar[Role] = "meta"

    spec: TaskSpec
    device: torch.device
    generator: torch.Generator

    def setup(self, spec: TaskSpec, seed: int = 0, device: str = "cpu") -> None:
        """Validate hyperparameters and build fresh parameters for tasks of ``spec``."""
        self.validate()
        self._setup_args = (spec, seed, device)
        self.spec = spec
        self.device = torch.device(device)
        self.generator = torch.Generator(device="cpu").manual_seed(int(seed))
        self.build()

    def validate(self) -> None:
        """Raise ``LearnerError`` naming the field and the allowed range (``check``,
        ``check_int``, ``check_number``); override to add checks. Any other exception is a bug."""

    @abstractmethod
    def build(self) -> None:
        """Create parameters (use ``self.generator``) for ``self.spec`` on ``self.device``."""

    @abstractmethod
    def meta_fit(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        """Outer loop on ``tasks``; returns a small log (e.g. final meta-loss, seconds).

        ``tasks`` are revealed tasks, whole: support and query rows are all labelled
        respondents of that group and wave (no ``oracle_query`` unless ``uses_oracle``). Cut
        episodes from them with ``episodes.EpisodeSampler.for_learner(self, tasks, budget)``
        (a fresh support/query split per episode, with the learner's group memory where it
        declares one: ``memory.GroupMemoryOption``) rather than reusing the stream's split,
        and stop once ``budget.seconds`` have passed (``episodes.fit_loop`` does both)."""

    @abstractmethod
    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> Adapted:
        """Inner loop on the support sets of ``support``.

        The protocol seals the batch: ``y_query`` is NaN (-1 for multiclass), so a learner
        that reads it produces NaN and is recorded as diverged; ``oracle_query`` is None
        except for the oracle. ``support.group`` / ``support.wave`` (int64 ``[B]``, -1 when
        unknown) identify each task's group (stable across the stream's waves) and wave, so a
        learner may keep a memory per group across ``meta_fit`` / ``adapt`` calls."""

    def scored_steps(self) -> int | None:
        """The inner-step count this learner predicts with: part of the method, so the
        protocol's summaries, leaderboard and verdicts score it there (the adaptation curve
        still shows the whole steps grid). None (the default): the largest count of the
        protocol's grid, for learners whose predictions do not depend on it (ProtoNet, the
        relation net, the oracle) or that iterate to convergence (the GLMs' Newton steps).
        A learner trained at a step count (MAML's inner steps, a meta-LSTM's unroll length T)
        returns it."""
        return None

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor reachable from the learner's fields (parameters, meta-parameters,
        buffers; an optimiser's state is not), by path: what early stopping saves at the best
        held-out score and restores at the end. Override if a learner keeps state elsewhere."""
        out: dict[str, torch.Tensor] = {}
        _collect(vars(self), "", out, depth=0)
        return out

    def notify_shift(self, event: Any) -> None:
        """Told when a shift's wave is reached (only with ``tell_shifts``); no-op by default."""

    def observe_stream(self, meta: Mapping[str, Any]) -> None:
        """Told the stream's public description once, after ``setup``: its feature names and,
        for a simulated response that declares one, the task prior (``response_prior``; what a
        reference such as ``floor`` needs). No-op by default; learners compared as methods
        must not use the prior."""

    def reset_memory(self) -> None:
        """Forget every wave seen so far (the changepoint wrapper calls it after a detected
        change). By default a fresh ``setup`` from the same spec, seed and device; a learner
        with a cheaper memory of the past (partial pooling's tasks, the dynamic model's state)
        overrides it."""
        args = getattr(self, "_setup_args", None)
        if args is None:
            raise RuntimeError(f"learner {self.name!r}: reset_memory() before setup(); call "
                               "setup first, or override reset_memory if setup is overridden "
                               "without calling Learner.setup")
        self.setup(*args)

    def wave_extras(self) -> dict[str, float]:
        """Extra numbers about the last ``meta_fit`` call that the protocol records as that
        wave's rows (metric name -> value; a changepoint wrapper's change probability). The
        protocol asks once after each ``meta_fit`` that returned; {} by default."""
        return {}

    def run_extras(self) -> dict[str, Any]:
        """Extra entries for the run log, read once at the end of a run (JSON-able; a
        changepoint wrapper's detected changes). {} by default."""
        return {}

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor's fields, recorded with every result."""
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}


def _collect(obj: Any, path: str, out: dict[str, torch.Tensor], depth: int) -> None:
    """Tensors under ``obj`` (tensors, modules, dicts, lists, nested learners) into ``out``."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point():
            out[path] = obj
    elif isinstance(obj, torch.nn.Module):
        for name, t in [*obj.named_parameters(), *obj.named_buffers()]:
            out[f"{path}.{name}"] = t
    elif depth > 4:
        return
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            _collect(v, f"{path}.{k}", out, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _collect(v, f"{path}[{i}]", out, depth + 1)
    elif isinstance(obj, Learner):
        _collect(vars(obj), f"{path}.", out, depth + 1)


def check(condition: bool, learner: str, field: str, value: Any, allowed: str) -> None:
    """One clear error for a bad hyperparameter: names the learner, field, value and range."""
    if not condition:
        raise LearnerError(f"{learner}: hyperparameter {field}={value!r} is invalid; {allowed}")


# The common kinds of hyperparameter, so that every learner words its errors the same way.
def check_int(learner: str, field: str, value: Any, low: int, hint: str = "") -> None:
    """An integer >= ``low``."""
    check(is_int(value, low), learner, field, value, f"it must be an integer >= {low}{hint}")


def check_number(learner: str, field: str, value: Any, low: float = 0.0, strict: bool = True,
                 optional: bool = False, hint: str = "") -> None:
    """A finite number > ``low`` (>= when not ``strict``); None too when ``optional``."""
    ok = (optional and value is None) or is_number(value, low, strict)
    check(ok, learner, field, value, f"it must be a finite number {'>' if strict else '>='} "
          f"{low:g}{' or None' if optional else ''}{hint}")


def check_widths(learner: str, field: str, value: Any) -> None:
    """Hidden-layer widths: a tuple or list of integers >= 1 (empty: no hidden layer)."""
    check(isinstance(value, (tuple, list)) and all(is_int(h, 1) for h in value), learner, field,
          value, "give a tuple of layer widths >= 1, e.g. (40, 40)")


def check_choice(learner: str, field: str, value: Any, choices: Sequence[Any]) -> None:
    """One of ``choices``."""
    check(value in tuple(choices), learner, field, value, f"choose one of {tuple(choices)}")


def check_flag(learner: str, field: str, value: Any) -> None:
    """True or False."""
    check(isinstance(value, bool), learner, field, value, "use True or False")


def check_interval(learner: str, field: str, value: Any, positive: bool = False,
                   optional: bool = False, hint: str = "") -> None:
    """A ``(low, high)`` pair of finite numbers with low <= high (both > 0 if ``positive``)."""
    ok = (optional and value is None) or (
        isinstance(value, (tuple, list)) and len(value) == 2
        and all(is_number(v, 0.0, True) if positive else is_number(v, -math.inf) for v in value)
        and value[0] <= value[1])
    check(ok, learner, field, value, f"give (low, high) with {'0 < ' if positive else ''}"
          f"low <= high{' or None' if optional else ''}{hint}")
