"""Pre-training on simulated societies: learn the prior from simulation before the warm-up.

A real survey has a few dozen (group, wave) tasks, too few to meta-train on; a simulated twin
(``simlab twin``) or another scenario can produce as many as one likes. With
``[evaluation.pretrain]`` every learner that can use it first meta-fits on tasks of a named
simulated scenario, with a stated budget, and only then runs the ordinary protocol (warm-up
meta-fit, score-and-reveal). Every pre-trainable learner gets the same simulated tasks and the
same budget, so the comparison stays fair; the rest run as before and say why in their log.

Who can be pre-trained (``can_pretrain``): learners whose ``meta_fit`` continues from the
parameters it has, so a first call on simulated tasks becomes the initialisation the real
data refines: the meta-learners (MAML family, meta-LSTM, relation / prototypical networks),
the in-context learners (``cnp``, ``pfn``) and ``finetune`` (its pooled network's
initialisation, which the warm-up's pooled training then continues from, and the L2-SP
anchor). A learner with a ``pretrain(tasks, budget)`` method is pre-trained through it
instead of ``meta_fit``: ``partial_pooling`` runs its EM on the simulated tasks alone, keeps
the estimates (population coefficients, variance components) as an informative prior of a
stated weight (``prior_tasks`` pseudo-tasks) and as its EM's start, and forgets the simulated
tasks, so they never count as survey respondents; ``dynamic_mlm`` likewise for its static EM
(population coefficients, group-effect covariance), its drift still chosen on the warm-up
waves. Not pre-trainable: ``scratch`` (nothing is shared between tasks), ``oracle``, and
``cpd:`` wrappers. A plug-in declares ``pretrainable = True`` (a class attribute) to opt in.

Guarantees: the simulated tasks must have the evaluated stream's target kind, classes and
feature columns (``check_compatible`` names the columns that differ); they never include a
task of the evaluated stream's scored waves (``check_no_leak`` compares every task's data);
their group ids are dropped, so no group memory ever takes a simulated group for a real one.
The run log's ``"pretrain"`` entry records the source, the budget, the task count, the
meta-fit log and its seconds (or why the learner was not pre-trained).
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from simlab.errors import ScenarioError
from simlab.settings import Budget
from simlab.tasks.task import Task, TaskStream

if TYPE_CHECKING:   # the schema checks import this module where torch may be absent
    from simlab.learners.base import Learner

#: the key of ``TaskStream.meta`` that carries a :class:`Pretraining` to the protocol
META_KEY = "pretrain"
#: built-in learners whose meta_fit continues from its parameters (see the module docstring)
PRETRAINABLE = frozenset({"maml", "fomaml", "metasgd", "anil", "reptile", "meta_lstm",
                          "relation", "protonet", "cnp", "pfn", "finetune", "partial_pooling",
                          "dynamic_mlm"})
#: why the other built-ins are not pre-trained (shown in the error and the run log)
NOT_PRETRAINABLE = {
    "scratch": "it fits every task from scratch and shares nothing between tasks",
    "oracle": "it reads the true probabilities and learns nothing"}


def can_pretrain(learner: Learner | type[Learner]) -> bool:
    """Whether ``learner`` (an instance or class) can use pre-training."""
    declared = getattr(learner, "pretrainable", None)
    return bool(declared) if declared is not None else learner.name in PRETRAINABLE


def why_not(name: str) -> str:
    """The reason a learner is not pre-trainable, for messages."""
    if name.startswith("cpd:"):
        return "changepoint wrappers restart their inner learner at each alarm"
    return NOT_PRETRAINABLE.get(name, "it does not declare pretrainable = True")


def check_learners(names: Sequence[str], evaluated: Sequence[str]) -> list[str]:
    """Problems with ``evaluation.pretrain.learners``: names not evaluated, names that cannot
    be pre-trained (each with the fix)."""
    from simlab.learners.registry import learner_class   # here: imports torch

    out = []
    for name in names:
        if name not in evaluated:
            out.append(f"evaluation.pretrain.learners names {name!r}, which is not in "
                       f"evaluation.learners = {list(evaluated)}; add it there or drop it here")
            continue
        try:
            ok = can_pretrain(learner_class(name))
        except ValueError as err:
            out.append(f"evaluation.pretrain.learners: {err}")
            continue
        if not ok:
            can = [n for n in evaluated if n in PRETRAINABLE]
            out.append(f"evaluation.pretrain.learners names {name!r}, which cannot be "
                       f"pre-trained ({why_not(name)}); remove it from the list (it still runs, "
                       f"without pre-training) or leave the list out to pre-train every learner "
                       f"that can ({', '.join(can) or 'none listed'})")
    return out


@dataclass(frozen=True)
class Pretraining:
    """The simulated tasks and the budget every pre-trainable learner meta-fits on first.

    ``learners``: the names to pre-train (None: every pre-trainable learner). ``source``:
    what the tasks are (scenario name, file, seeds, stream fingerprint) for the run log."""

    tasks: list[Task]
    budget: Budget
    learners: tuple[str, ...] | None = None
    source: dict[str, Any] = field(default_factory=dict)
    feature_names: tuple[str, ...] | None = None
    #: "names": the source's feature columns must be the evaluated ones; "count": only as many
    columns: str = "names"

    def __post_init__(self) -> None:
        if self.budget.iterations < 1:
            raise ScenarioError(
                f"evaluation.pretrain.budget.iterations = {self.budget.iterations}: "
                "pre-training with no iterations does nothing; give iterations >= 1 or remove "
                "[evaluation.pretrain]")
        if not self.tasks:
            raise ScenarioError(f"evaluation.pretrain: the source {self.source.get('scenario')!r}"
                                " produced no tasks; check its waves and groups")

    def applies_to(self, learner: Learner) -> bool:
        """Whether ``learner`` is to be pre-trained under this plan."""
        if self.learners is not None and learner.name not in self.learners:
            return False
        return can_pretrain(learner)


def from_streams(streams: Sequence[TaskStream], budget: Budget, *,
                 learners: Sequence[str] | None = None, source: dict[str, Any] | None = None,
                 columns: str = "names") -> Pretraining:
    """A plan from simulated streams: every task of every wave, group ids dropped."""
    tasks = [_anonymous(t) for s in streams for t in s.tasks()]
    names = streams[0].meta.get("feature_names") if streams else None
    return Pretraining(tasks, budget, None if learners is None else tuple(learners),
                       dict(source or {}), tuple(names) if names else None, columns)


def _anonymous(task: Task) -> Task:
    """The task without group and wave ids (no group memory may file it under a real group),
    and without its oracle, ceiling and population cells (they hold the true prevalence;
    ``protocol.revealed_tasks`` strips them likewise; the oracle is never pre-trained)."""
    info = {k: v for k, v in task.info.items() if k not in ("group", "group_id", "wave")}
    return dataclasses.replace(task, info={**info, "pretrain": True}, oracle_query=None,
                               ceiling_query=None, cells=None)


def attach(stream: TaskStream, plan: Pretraining | None) -> TaskStream:
    """``stream`` carrying ``plan`` to the protocol (a shallow copy; None: unchanged)."""
    if plan is None:
        return stream
    return dataclasses.replace(stream, meta={**stream.meta, META_KEY: plan})


def check_compatible(plan: Pretraining, stream: TaskStream) -> None:
    """The simulated tasks must look like the evaluated ones: target kind, classes, features
    (by column name when both streams name them)."""
    ref, sim = stream.waves[0][0], plan.tasks[0]
    src = plan.source.get("scenario", "the pre-training scenario")
    if sim.target != ref.target or (ref.target == "multiclass"
                                    and sim.n_classes != ref.n_classes):
        raise ScenarioError(
            f"evaluation.pretrain.scenario {src!r} makes {sim.target} tasks"
            f"{f' with {sim.n_classes} classes' if sim.target == 'multiclass' else ''}, but the "
            f"evaluated stream's are {ref.target}"
            f"{f' with {ref.n_classes} classes' if ref.target == 'multiclass' else ''}; "
            "pre-train on a scenario with the same response (for a survey: its `simlab twin`)")
    mine = tuple(stream.meta.get("feature_names") or ())
    theirs = plan.feature_names or ()
    if mine and theirs and mine != theirs and plan.columns == "names":
        missing = [c for c in mine if c not in theirs]
        extra = [c for c in theirs if c not in mine]
        what = "; ".join(p for p in (f"missing {missing}" if missing else "",
                                     f"extra {extra}" if extra else "",
                                     "same columns in another order"
                                     if not missing and not extra else "") if p)
        raise ScenarioError(
            f"evaluation.pretrain.scenario {src!r} has feature columns {list(theirs)}, the "
            f"evaluated stream {list(mine)} ({what}); give the pre-training scenario the same "
            "survey.features, or, for a `simlab twin` (it matches a survey's number and kind "
            "of columns, not their meaning), set evaluation.pretrain.columns = \"count\"")
    if sim.n_features != ref.n_features:
        raise ScenarioError(
            f"evaluation.pretrain.scenario {src!r} has {sim.n_features} feature columns, the "
            f"evaluated stream {ref.n_features}; give it as many feature columns (the same "
            "survey.features, or `simlab twin` for a survey)")


def task_digest(task: Task) -> str:
    """A digest of a task's respondents (features and label of every support and query row),
    independent of how they are split into support and query and of their order, so the same
    respondents split otherwise (another support/query size) are still recognised."""
    x = np.concatenate([task.x_support, task.x_query]).astype(np.float64)
    y = np.concatenate([task.y_support, task.y_query]).astype(np.float64)
    rows = np.column_stack([x.reshape(len(x), -1), y.reshape(len(y), -1)])
    rows = rows[np.lexsort(rows.T[::-1])] if len(rows) else rows
    return hashlib.sha256(np.ascontiguousarray(rows).tobytes()).hexdigest()


def check_no_leak(plan: Pretraining, stream: TaskStream, warmup: int) -> None:
    """No pre-training task may be a task of a scored wave (``warmup`` on) of the stream."""
    scored = {task_digest(t): w for w in range(warmup, len(stream)) for t in stream.waves[w]}
    for t in plan.tasks:
        wave = scored.get(task_digest(t))
        if wave is not None:
            raise ScenarioError(
                f"evaluation.pretrain: the pre-training tasks include scored wave {wave} of the "
                "evaluated stream (the same scenario and seed); pre-train on other seeds "
                "(evaluation.pretrain.seeds beyond the evaluated ones) or on another scenario")


def before_warmup(run: Any, stream: TaskStream, warmup: int) -> None:
    """The protocol's hook: pre-train ``run.learner`` when the stream carries a plan that
    applies to it, and record what happened in ``run.log["pretrain"]``."""
    plan: Pretraining | None = stream.meta.get(META_KEY)
    if plan is None:
        return
    learner = run.learner
    entry: dict[str, Any] = {"source": plan.source, "tasks": len(plan.tasks),
                             "budget": dataclasses.asdict(plan.budget)}
    if not plan.applies_to(learner):
        run.log[META_KEY] = {**entry, "applied": False, "reason": (
            "not in evaluation.pretrain.learners" if plan.learners is not None
            and learner.name not in plan.learners else why_not(learner.name))}
        return
    check_compatible(plan, stream)
    check_no_leak(plan, stream, warmup)
    budget = dataclasses.replace(plan.budget, episodes=run.budget.episodes)
    t0, c0 = time.perf_counter(), time.process_time()
    fit = getattr(learner, "pretrain", None)        # its own pre-training (a prior), if any
    try:
        log = (fit if callable(fit) else learner.meta_fit)(plan.tasks, budget)
    except ScenarioError:
        raise
    except ValueError as err:       # e.g. simulated tasks too small for the episodes' K
        raise ScenarioError(f"evaluation.pretrain: the simulated tasks of "
                            f"{plan.source.get('scenario')!r} cannot be meta-fitted on as this "
                            f"evaluation's episodes ask: {err}") from err
    run.log[META_KEY] = {**entry, "applied": True, "seconds": time.perf_counter() - t0,
                         "cpu_seconds": time.process_time() - c0,
                         "fit": {k: v for k, v in (log or {}).items()
                                 if isinstance(v, (int, float, str))}}


__all__ = ["META_KEY", "PRETRAINABLE", "Pretraining", "attach", "before_warmup",
           "can_pretrain", "check_compatible", "check_learners", "check_no_leak",
           "from_streams"]
