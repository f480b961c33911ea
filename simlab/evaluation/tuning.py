"""Equal-budget hyperparameter tuning: every learner gets the same number of Optuna trials over
its own ``search_space``, scored prequentially inside the warm-up waves only.

Why inside the warm-up: the scored waves ``[warmup, ...)`` are the test set of the comparison;
choosing hyperparameters on them would leak. A trial therefore runs the protocol
(``simlab.evaluation.protocol.evaluate``) on the stream cut to its first ``warmup`` waves:
meta-fit on waves ``[0, warmup - 1)``, score wave ``warmup - 1`` (the last warm-up wave) on the
scenario's shots and steps grids. The objective is one of :data:`METRICS` (lower is better).

The search is Optuna's TPE (Bergstra et al. 2011, "Algorithms for hyper-parameter
optimization") with a seeded ``TPESampler``, so the same seed gives the same trials. The first
trial is the learner's own configuration (defaults plus the fixed hyperparameters), where it
lies inside the space, so tuning never ranks below the untuned learner on its own objective.
A trial is a pure function of (learner, params, stream, seed) (:func:`trial_score`), and so is
a whole search (:func:`tune`): a sweep tunes each learner once, as one job on its executor, on
the warm-up waves of its first seeds' streams (``simlab.experiment.sweep.tune_learner``), and
every seed's cell runs with that choice.

A learner with an empty space (the oracle) gets 0 trials. Hyperparameters the user fixed
(``[learners.<name>]``, a sweep's hyperparameters or grid point) are held fixed: they are
removed from the class's default space; naming one in a user-given space is an error.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from simlab.learners.registry import learner_class, make_learner
from simlab.learners.space import Choice, Float, Int, SearchSpace
from simlab.tasks.task import TaskStream

if TYPE_CHECKING:  # pragma: no cover
    from simlab.learners.base import Budget

#: tuning metric -> the run summary it minimises (``evaluation.metrics.summarize``):
#: "loss" = mean over the shots grid at the largest step count; "auc" = the adaptation AUC
#: (loss vs steps, mean over shots); "excess_loss" = loss over the oracle's (simulated only)
METRICS: dict[str, str] = {"loss": "mean_loss", "auc": "auc_steps",
                           "excess_loss": "mean_excess_loss"}
NEEDS_ORACLE = frozenset({"excess_loss"})


@dataclass(frozen=True)
class TuningResult:
    """What one tuning run chose and how it got there.

    ``best_params``: the tuned fields only (merge over the fixed ones); empty when the space is
    empty or no trial finished. ``trace``: one dict per trial (number, params, value, state,
    seconds), in order.
    """

    learner: str
    metric: str
    trials: int
    best_params: dict[str, Any]
    best_value: float
    trace: list[dict[str, Any]] = field(default_factory=list)
    space: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: the seeds whose streams' warm-up waves the trials were scored on (set by the sweep)
    seeds: list[int] = field(default_factory=list)

    def as_log(self) -> dict[str, Any]:
        """JSON-able form, stored in the run's log under ``"tuning"``."""
        out = dataclasses.asdict(self)
        out["best_value"] = None if not math.isfinite(self.best_value) else self.best_value
        return out


# --- search spaces ----------------------------------------------------------------------------
def parse_range(where: str, value: Any) -> Float | Int | Choice:
    """A range from a ``Float``/``Int``/``Choice`` or a TOML table: ``{low, high, log?}``
    (``Int`` when both bounds are integers, or ``int = true``) or ``{choices = [...]}``."""
    if isinstance(value, (Float, Int, Choice)):
        rng = value
    elif isinstance(value, Mapping) and set(value) <= {"choices"} and "choices" in value:
        choices = value["choices"]
        if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence) or not choices:
            raise ValueError(f"{where}: choices = {choices!r} must be a non-empty list, e.g. "
                             "choices = [10, 20]")
        rng = Choice(tuple(tuple(c) if isinstance(c, list) else c for c in choices))
    elif isinstance(value, Mapping) and {"low", "high"} <= set(value) <= {
            "low", "high", "log", "int"}:
        lo, hi, log = value["low"], value["high"], bool(value.get("log", False))
        as_int = value.get("int")
        if as_int is None:
            as_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi))
        rng = Int(int(lo), int(hi), log) if as_int else Float(float(lo), float(hi), log)
    else:
        raise ValueError(f"{where} = {value!r} is not a range; give {{low = 1e-3, high = 0.1, "
                         "log = true}} (a float), {low = 1, high = 5} (an integer) or "
                         "{choices = [...]}")
    if isinstance(rng, (Float, Int)):
        ok = all(isinstance(v, (int, float)) and math.isfinite(v) for v in (rng.low, rng.high))
        if not ok or rng.low > rng.high or (rng.log and rng.low <= 0):
            need = " and low > 0 (log scale)" if rng.log else ""
            raise ValueError(f"{where}: low = {rng.low!r}, high = {rng.high!r} is not a range; "
                             f"need finite low <= high{need}")
    elif not rng.choices:
        raise ValueError(f"{where}: Choice needs at least one value")
    return rng


def resolve_space(learner_name: str, fixed: Mapping[str, Any] = (), space: Mapping[str, Any]
                  | None = None, where: str = "evaluation.tuning.space") -> SearchSpace:
    """The space tuning searches for ``learner_name``: the class's ``search_space`` minus the
    ``fixed`` fields, or the user's ``space`` (validated: every field must exist, none may be
    fixed, each range must be valid and its bounds accepted by the learner)."""
    cls = learner_class(learner_name)
    fixed = dict(fixed)
    if space is None:
        return {k: v for k, v in cls.search_space.items() if k not in fixed}
    fields = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
    out: SearchSpace = {}
    for name, value in space.items():
        at = f"{where}.{learner_name}.{name}"
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"{at}: learner {learner_name!r} has no hyperparameter {name!r}; "
                             f"{hint}its hyperparameters: {', '.join(fields) or 'none'}")
        if name in fixed:
            raise ValueError(f"{at}: {name} is fixed to {fixed[name]!r} for this learner (its "
                             "[learners] table, the sweep's hyperparameters or grid); remove "
                             "it from one of the two")
        out[name] = parse_range(at, value)
    for name, rng in out.items():     # the learner must accept the ends of every range
        ends = rng.choices if isinstance(rng, Choice) else (rng.low, rng.high)
        for v in ends:
            try:
                make_learner(learner_name, **{**fixed, name: v}).validate()
            except (ValueError, TypeError) as err:
                raise ValueError(f"{where}.{learner_name}.{name}: the value {v!r} of this range "
                                 f"is refused by the learner: {err}") from None
    return out


def describe_space(space: SearchSpace) -> dict[str, str]:
    """``{field: "Float(0.001, 0.5, log)"}``: a readable, JSON-able form for logs and reports."""
    def one(r: Float | Int | Choice) -> str:
        if isinstance(r, Choice):
            return f"Choice{tuple(r.choices)!r}"
        return f"{type(r).__name__}({r.low:g}, {r.high:g}{', log' if r.log else ''})"
    return {k: one(v) for k, v in space.items()}


def _label(value: Any) -> Any:
    """Optuna's categorical values must be None/bool/int/float/str: tuples go as their repr."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)


def _suggest(trial: Any, space: SearchSpace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, rng in space.items():
        if isinstance(rng, Float):
            params[name] = trial.suggest_float(name, rng.low, rng.high, log=rng.log)
        elif isinstance(rng, Int):
            params[name] = trial.suggest_int(name, rng.low, rng.high, log=rng.log)
        else:
            labels = [_label(c) for c in rng.choices]
            params[name] = rng.choices[labels.index(trial.suggest_categorical(name, labels))]
    return params


def _inside(value: Any, rng: Float | Int | Choice) -> bool:
    if isinstance(rng, Choice):
        return any(value == c for c in rng.choices)
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    return ok and rng.low <= value <= rng.high and (
        not isinstance(rng, Int) or float(value).is_integer())


def _start_point(learner_name: str, fixed: Mapping[str, Any], space: SearchSpace
                 ) -> dict[str, Any]:
    """The learner's own configuration, as Optuna params, for the fields inside the space."""
    own = make_learner(learner_name, **fixed).hyperparameters()
    return {k: _label(tuple(own[k]) if isinstance(own[k], list) else own[k])
            for k, rng in space.items() if k in own and _inside(
                tuple(own[k]) if isinstance(own[k], list) else own[k], rng)}


# --- one trial ----------------------------------------------------------------------------------
def warmup_stream(stream: TaskStream, warmup: int) -> TaskStream:
    """The stream cut to its first ``warmup`` waves (and the shifts among them): all a trial
    may see."""
    return TaskStream([list(w) for w in stream.waves[:warmup]],
                      [e for e in stream.shifts if e.wave < warmup],
                      {**stream.meta, "tuning_cut": int(warmup)})


@dataclass(frozen=True)
class TrialSettings:
    """The protocol settings a trial runs with (those of the comparison; picklable)."""

    warmup: int
    shots: tuple[int, ...]
    steps: tuple[int, ...]
    budget: Budget
    warmup_budget: Budget | None = None
    metric: str = "loss"
    device: str = "cpu"


def trial_score(learner_name: str, params: Mapping[str, Any], streams: Sequence[TaskStream],
                settings: TrialSettings, seed: int) -> float:
    """Mean over ``streams`` of the objective of ``learner_name(**params)``: meta-fit on waves
    ``[0, warmup - 1)``, score wave ``warmup - 1``. NaN when the learner diverged."""
    from simlab.evaluation.protocol import evaluate

    values = []
    for stream in streams:
        cut = warmup_stream(stream, settings.warmup)
        result = evaluate(make_learner(learner_name, **params), cut, warmup=settings.warmup - 1,
                          shots=settings.shots, steps=settings.steps, budget=settings.budget,
                          warmup_budget=settings.warmup_budget, online=False, seed=seed,
                          device=settings.device)
        values.append(result.summary.get(METRICS[settings.metric], math.nan))
    value = float(np.mean(values))
    return value if math.isfinite(value) else math.nan


# --- the search ---------------------------------------------------------------------------------
def check_tuning(trials: int, metric: str, warmup: int, has_oracle: bool | None = None,
                 where: str = "evaluation.tuning") -> None:
    """One clear ValueError per bad setting (``has_oracle`` None: not known yet)."""
    if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1:
        raise ValueError(f"{where}.trials = {trials!r}: give an integer >= 1 (the number of "
                         "trials every learner gets); to switch tuning off, remove "
                         f"[{where}]")
    if metric not in METRICS:
        close = difflib.get_close_matches(str(metric), list(METRICS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"{where}.metric = {metric!r} is unknown; {hint}choose one of "
                         f"{', '.join(METRICS)}")
    if metric in NEEDS_ORACLE and has_oracle is False:
        raise ValueError(f"{where}.metric = {metric!r} needs the oracle (true probabilities), "
                         "which real survey data does not have; use metric = \"loss\" or "
                         "\"auc\"")
    if warmup < 2:
        raise ValueError(f"evaluation.warmup = {warmup}: tuning fits on the earlier warm-up "
                         "waves and scores the last one, so it needs warmup >= 2; raise "
                         f"warmup or remove [{where}]")


def tune(learner_name: str, base_hyperparameters: Mapping[str, Any] | None,
         stream_or_streams: TaskStream | Sequence[TaskStream], *, warmup: int,
         shots: Sequence[int], steps: Sequence[int], budget: Budget,
         warmup_budget: Budget | None = None, trials: int = 8, metric: str = "loss",
         seed: int = 0, space: Mapping[str, Any] | None = None, device: str = "cpu",
         storage: str | Path | None = None, study_name: str | None = None) -> TuningResult:
    """Search ``learner_name``'s space with ``trials`` seeded TPE trials (see the module
    docstring); ``base_hyperparameters`` stay fixed. ``storage``: an SQLite file for the Optuna
    study (in memory when None); ``study_name`` names it there (re-created on each call)."""
    import optuna

    t0 = time.perf_counter()
    fixed = dict(base_hyperparameters or {})
    streams = [stream_or_streams] if isinstance(stream_or_streams, TaskStream) \
        else list(stream_or_streams)
    if not streams:
        raise ValueError("tune: give at least one TaskStream")
    last = streams[0].waves[warmup - 1] if 0 < warmup <= len(streams[0]) else []
    check_tuning(trials, metric, warmup, all(t.oracle_query is not None for t in last)
                 if last else None)
    if warmup >= min(len(s) for s in streams):
        raise ValueError(f"evaluation.warmup = {warmup} must leave scored waves: the stream has "
                         f"{min(len(s) for s in streams)} waves")
    resolved = resolve_space(learner_name, fixed, space)
    if not resolved:
        return TuningResult(learner_name, metric, 0, {}, math.nan, [], {},
                            time.perf_counter() - t0)
    settings = TrialSettings(int(warmup), tuple(shots), tuple(steps), budget, warmup_budget,
                             metric, device)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name or f"{learner_name}-seed{seed}"
    if storage is not None:
        url = f"sqlite:///{Path(storage)}"
        try:
            optuna.delete_study(study_name=name, storage=url)
        except KeyError:
            pass
    study = optuna.create_study(
        direction="minimize", study_name=name,
        storage=None if storage is None else f"sqlite:///{Path(storage)}",
        sampler=optuna.samplers.TPESampler(seed=int(seed)))
    start = _start_point(learner_name, fixed, resolved)
    if start:
        study.enqueue_trial(start, skip_if_exists=False)
    trace = []
    for _ in range(int(trials)):
        trial = study.ask()
        params = _suggest(trial, resolved)
        t1 = time.perf_counter()
        value = trial_score(learner_name, {**fixed, **params}, streams, settings, seed)
        finite = math.isfinite(value)
        study.tell(trial, value if finite else None,
                   state=None if finite else optuna.trial.TrialState.FAIL)
        trace.append({"number": trial.number, "params": params,
                      "value": value if finite else None,
                      "state": "complete" if finite else "diverged",
                      "seconds": time.perf_counter() - t1})
    done = [t for t in trace if t["value"] is not None]
    best = min(done, key=lambda t: t["value"]) if done else None
    return TuningResult(learner_name, metric, int(trials), dict(best["params"]) if best else {},
                        best["value"] if best else math.nan, trace, describe_space(resolved),
                        time.perf_counter() - t0)


__all__ = ["METRICS", "TrialSettings", "TuningResult", "check_tuning", "describe_space",
           "parse_range", "resolve_space", "trial_score", "tune", "warmup_stream"]
