"""Equal-budget hyperparameter tuning: every learner gets the same Optuna search over its own
``search_space``, scored prequentially inside the warm-up waves only.

Why inside the warm-up: the scored waves ``[warmup, ...)`` are the test set of the comparison;
choosing hyperparameters on them would leak. A trial therefore runs the protocol
(``simlab.evaluation.protocol.iter_evaluate``) on the stream cut to its first ``warmup`` waves,
rolling origin over the last ``folds`` of them: meta-fit on waves ``[0, warmup - folds)``, then
for each fold wave t score it (on the scenario's shots and steps grids) and, as the run will
(``online``), meta-fit on it before scoring t + 1. The objective is one of :data:`METRICS` (lower
is better), read from the run summary (``RunResult.summary``), averaged over the streams.

The search (:class:`Search`, the defaults of ``[evaluation.tuning]``): Optuna's TPE (Bergstra et
al. 2011) with a seeded ``TPESampler`` whose first ``startup`` trials are random, so ``trials``
must exceed ``startup`` for TPE to act. It is made affordable by multi-fidelity pruning rather
than by fewer trials: a trial climbs ``rungs`` budget rungs, the warm-up and online iteration
budgets scaled by ``1/REDUCTION**(rungs - 1 - r)`` at rung r (re-run from the seed at each rung:
the protocol is not resumable), and reports the rung's objective to Optuna's pruner
(``successive_halving`` = asynchronous successive halving, Li et al. 2020; ``hyperband``;
``median``; ``none``) at step ``REDUCTION**r``, which stops it when it trails the other trials at
that rung. Only trials that reach the full budget compete for the choice. Pruning decisions read
scores only, never the clock, so the same seed gives the same trials, prunes and choice. A
learner whose first trial scores exactly the same at every rung does not depend on the
iteration budget (it fits to convergence by its own rule): a lower rung would cost as much
and say nothing new, so its other trials run once at the full budget (``budget_free``).

The first trial is the learner's own configuration (defaults plus the fixed hyperparameters),
where it lies inside the space; it is never pruned, so tuning never ranks below the untuned
learner on its own objective and :attr:`TuningResult.untuned_value` is its full-budget score
(the report shows the gain over it). A trial is a pure function of (learner, params, streams,
seed, rung) (:func:`trial_score`), and so is a whole search (:func:`tune`): a sweep tunes each
learner once, as one job on its executor, on the warm-up waves of its first seeds' streams
(``simlab.experiment.sweep.tune_learner``), and every seed's cell runs with that choice.

With ``[evaluation.pretrain]`` the streams carry the pre-training plan (the sweep attaches it),
and every trial pre-trains as the run will before its warm-up (its budget scaled by the rung's
share, :func:`pretrain_scaled`): the hyperparameters chosen are those that are best after
pre-training, not those best without it.

A learner with an empty space (the oracle) gets 0 trials. Hyperparameters the user fixed
(``[learners.<name>]``, a sweep's hyperparameters or grid point) are held fixed: they are
removed from the class's default space; naming one in a user-given space is an error.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from simlab.errors import LearnerError, ScenarioError, SimlabError
from simlab.learners.registry import learner_class, make_learner
from simlab.learners.space import Choice, Float, Int, SearchSpace
from simlab.settings import PRUNERS, Budget, ProtocolSettings, Search, TuningSettings
from simlab.tasks.task import TaskStream

#: tuning metric -> the run summary it minimises (``evaluation.metrics.summarize``):
#: "loss" = mean over the shots grid at the largest step count; "auc" = the adaptation AUC
#: (loss vs steps, mean over shots); "excess_loss" = loss over the oracle's (simulated only)
METRICS: dict[str, str] = {"loss": "mean_loss", "auc": "auc_steps",
                           "excess_loss": "mean_excess_loss"}
NEEDS_ORACLE = frozenset({"excess_loss"})
#: eta of successive halving and hyperband: each budget rung is 1/REDUCTION of the next, and
#: about 1/REDUCTION of the trials that reach a rung go on to the next
REDUCTION = 3


#: the search ``[evaluation.tuning]`` runs by default (``simlab.settings.Search``'s defaults)
DEFAULT_SEARCH = Search()


@dataclass(frozen=True)
class TuningResult:
    """What one tuning run chose and how it got there.

    ``best_params``: the tuned fields only (merge over the fixed ones); empty when the space is
    empty or no trial finished. ``best_value``: its full-budget objective. ``untuned_value``:
    the first trial's (the learner's own configuration; None when it was not inside the space
    or diverged). ``trace``: one dict per trial (number, params, value, state = complete |
    pruned | diverged, rungs = the objective at each rung it reached, seconds), in order.
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
    untuned_value: float | None = None
    #: the search's settings (``Search`` as a dict)
    search: dict[str, Any] = field(default_factory=dict)
    #: the learner scored the same at every budget rung (its first trial), so its other
    #: trials ran once at the full budget, unpruned (see ``_budget_free``)
    budget_free: bool = False

    def count(self, state: str) -> int:
        """Trials that ended in ``state`` (complete, pruned, diverged)."""
        return sum(t["state"] == state for t in self.trace)

    @property
    def gain(self) -> float | None:
        """How much lower (better) the chosen configuration's objective is than the untuned
        one's, on the tuning folds; None when either is missing."""
        if self.untuned_value is None or not math.isfinite(self.best_value):
            return None
        return self.untuned_value - self.best_value

    def as_log(self) -> dict[str, Any]:
        """JSON-able form, stored in the run's log under ``"tuning"``."""
        out = dataclasses.asdict(self)
        out["best_value"] = None if not math.isfinite(self.best_value) else self.best_value
        out["gain"] = self.gain
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
            raise ScenarioError(f"{where}: choices = {choices!r} must be a non-empty list, e.g. "
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
        raise ScenarioError(f"{where} = {value!r} is not a range; give {{low = 1e-3, high = 0.1, "
                            "log = true}} (a float), {low = 1, high = 5} (an integer) or "
                            "{choices = [...]}")
    if isinstance(rng, (Float, Int)):
        ok = all(isinstance(v, (int, float)) and math.isfinite(v) for v in (rng.low, rng.high))
        if not ok or rng.low > rng.high or (rng.log and rng.low <= 0):
            need = " and low > 0 (log scale)" if rng.log else ""
            raise ScenarioError(f"{where}: low = {rng.low!r}, high = {rng.high!r} is not a range; "
                                f"need finite low <= high{need}")
    elif not rng.choices:
        raise ScenarioError(f"{where}: Choice needs at least one value")
    return rng


def resolve_space(learner_name: str, fixed: Mapping[str, Any] | None = None,
                  space: Mapping[str, Any] | None = None,
                  where: str = "evaluation.tuning.space") -> SearchSpace:
    """The space tuning searches for ``learner_name``: the class's ``search_space`` minus the
    ``fixed`` fields, or the user's ``space`` (validated: every field must exist, none may be
    fixed, each range must be valid and its bounds accepted by the learner)."""
    cls = learner_class(learner_name)
    fixed = dict(fixed or {})
    if space is None:
        return {k: v for k, v in cls.search_space.items() if k not in fixed}
    fields: list[str] = ([f.name for f in dataclasses.fields(cls)]
                         if dataclasses.is_dataclass(cls) else [])
    out: SearchSpace = {}
    for name, value in space.items():
        at = f"{where}.{learner_name}.{name}"
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise LearnerError(f"{at}: learner {learner_name!r} has no hyperparameter {name!r}; "
                               f"{hint}its hyperparameters: {', '.join(fields) or 'none'}")
        if name in fixed:
            raise ScenarioError(f"{at}: {name} is fixed to {fixed[name]!r} for this learner (its "
                                "[learners] table, the sweep's hyperparameters or grid); remove "
                                "it from one of the two")
        out[name] = parse_range(at, value)
    for name, rng in out.items():     # the learner must accept the ends of every range
        ends = rng.choices if isinstance(rng, Choice) else (rng.low, rng.high)
        for v in ends:
            try:
                make_learner(learner_name, **{**fixed, name: v}).validate()
            except SimlabError as err:      # a bug in the learner's validate() is no refusal
                raise LearnerError(f"{where}.{learner_name}.{name}: the value {v!r} of this range "
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


def trial_settings(settings: ProtocolSettings, share: float = 1.0) -> ProtocolSettings:
    """The protocol settings of a trial of a run with ``settings``: the warm-up shortened by
    the tuning folds (the fold waves are scored, each after meta-fitting on the waves before),
    the warm-up budget the tuning's (``tuning.budget``; None: the run's), both budgets cut to
    ``share`` (a lower rung); everything else (shots, steps, online, episodes, divergence) as
    the run's, so a trial trains and scores as the run will."""
    tu = settings.tuning or TuningSettings()
    warm = settings.warmup_budget if tu.budget is None else tu.budget
    return dataclasses.replace(settings, warmup=settings.warmup - tu.search.folds,
                               budget=scaled(settings.budget, share),
                               warmup_budget=scaled(warm, share), tuning=None)


@overload
def scaled(budget: Budget, share: float) -> Budget: ...
@overload
def scaled(budget: None, share: float) -> None: ...
@overload
def scaled(budget: Budget | None, share: float) -> Budget | None: ...
def scaled(budget: Budget | None, share: float) -> Budget | None:
    """``budget`` with its iterations (and seconds cap) cut to ``share`` (at least 1 iteration
    where it had any): a lower budget rung."""
    if budget is None or share >= 1:
        return budget
    its = max(1, math.ceil(budget.iterations * share)) if budget.iterations else 0
    secs = None if budget.seconds is None else budget.seconds * share
    return dataclasses.replace(budget, iterations=its, seconds=secs)


def pretrain_scaled(stream: TaskStream, share: float) -> TaskStream:
    """``stream`` with its ``[evaluation.pretrain]`` plan's budget cut to ``share`` (a lower
    rung pre-trains with the same share of its budget as it trains; unchanged without a plan).
    A trial pre-trains like the run (``pretrain.before_warmup``), so the hyperparameters chosen
    are those that are best after pre-training."""
    from simlab.evaluation.pretrain import META_KEY   # here: it imports torch, and the schema
    # (experiment/scenario_base) imports this module where torch may be absent (the society tests)

    plan = stream.meta.get(META_KEY)
    if plan is None or share >= 1:
        return stream
    return dataclasses.replace(stream, meta={**stream.meta, META_KEY: dataclasses.replace(
        plan, budget=scaled(plan.budget, share))})


def rung_share(rung: int, rungs: int) -> float:
    """The share of the full budget a trial trains with at ``rung`` (0-based) of ``rungs``."""
    return float(REDUCTION) ** (rung - rungs + 1)


def trial_score(learner_name: str, params: Mapping[str, Any], streams: Sequence[TaskStream],
                settings: ProtocolSettings, seed: int, share: float = 1.0,
                on_wave: Callable[[int], None] | None = None, device: str = "cpu") -> float:
    """Mean over ``streams`` of the objective (``settings.tuning.metric``) of
    ``learner_name(**params)`` over the rolling-origin folds (see the module docstring),
    trained with ``share`` of the budgets (:func:`trial_settings`). NaN when the learner
    diverged. ``on_wave(wave)`` is called as each fold wave is scored."""
    from simlab.evaluation.protocol import iter_evaluate

    values = []
    trial = trial_settings(settings, share)
    metric = (settings.tuning or TuningSettings()).metric
    for stream in streams:
        fold_stream = pretrain_scaled(warmup_stream(stream, settings.warmup), share)
        waves = iter_evaluate(make_learner(learner_name, **params), fold_stream, trial,
                              seed=seed, device=device)
        while True:
            try:
                wave = next(waves)
            except StopIteration as done:
                result = done.value
                break
            if on_wave is not None:
                on_wave(wave.wave)
        values.append(result.summary.get(METRICS[metric], math.nan))
    value = float(np.mean(values))
    return value if math.isfinite(value) else math.nan


# --- the search ---------------------------------------------------------------------------------
def _is_int(value: Any, low: int) -> bool:
    return (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            and bool(value >= low))


def check_search(search: Search, where: str = "evaluation.tuning") -> None:
    """One clear ValueError per bad search setting, naming the field and the fix."""
    if not _is_int(search.trials, 1):
        raise ScenarioError(f"{where}.trials = {search.trials!r}: give an integer >= 1 (the "
                            "number of trials every learner gets); to switch tuning off, remove "
                            f"[{where}]")
    for name, low in (("startup", 1), ("folds", 1), ("rungs", 1)):
        if not _is_int(getattr(search, name), low):
            raise ScenarioError(f"{where}.{name} = {getattr(search, name)!r}: give an integer "
                                f">= {low}")
    if search.pruner not in PRUNERS:
        close = difflib.get_close_matches(str(search.pruner), PRUNERS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ScenarioError(f"{where}.pruner = {search.pruner!r} is unknown; {hint}choose one of "
                            f"{', '.join(PRUNERS)}")
    need = search.startup * search.brackets()
    if search.trials <= need:
        per = (f" ({search.brackets()} hyperband brackets x startup {search.startup}: TPE "
               "sees each bracket's trials alone)" if search.brackets() > 1 else "")
        pruned = (f" and the median pruner prunes nothing before {search.startup} trials"
                  if search.pruner == "median" else "")
        raise ScenarioError(f"{where}.trials = {search.trials} does not pass the start-up of "
                            f"{need} random trials{per}{pruned}, so TPE would never act; raise "
                            f"trials above {need} or lower {where}.startup")
    if search.pruner != "none" and search.rungs < 2:
        raise ScenarioError(f"{where}.pruner = {search.pruner!r} needs budget rungs to prune on, "
                            f"but {where}.rungs = {search.rungs}; give rungs >= 2 or "
                            'pruner = "none"')


def check_tuning(search: Search | int, metric: str, warmup: int,
                 has_oracle: bool | None = None, where: str = "evaluation.tuning") -> None:
    """One clear ValueError per bad setting (``has_oracle`` None: not known yet); ``search``
    may be a trial count (the other settings at their defaults)."""
    if not isinstance(search, Search):
        search = dataclasses.replace(DEFAULT_SEARCH, trials=search)
    check_search(search, where)
    if metric not in METRICS:
        close = difflib.get_close_matches(str(metric), list(METRICS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ScenarioError(f"{where}.metric = {metric!r} is unknown; {hint}choose one of "
                            f"{', '.join(METRICS)}")
    if metric in NEEDS_ORACLE and has_oracle is False:
        raise ScenarioError(f"{where}.metric = {metric!r} needs the oracle (true probabilities), "
                            "which real survey data does not have; use metric = \"loss\" or "
                            "\"auc\"")
    if warmup < 2:
        raise ScenarioError(f"evaluation.warmup = {warmup}: tuning fits on the earlier warm-up "
                            "waves and scores the last ones, so it needs warmup >= 2; raise "
                            f"warmup or remove [{where}]")
    if search.folds > warmup - 1:
        raise ScenarioError(f"{where}.folds = {search.folds} leaves no warm-up wave to fit on "
                            f"before the first fold (evaluation.warmup = {warmup}); give folds "
                            f"<= {warmup - 1} or raise warmup")


def _pruner(search: Search) -> Any:
    """Optuna's pruner for ``search``; resources are rung steps ``REDUCTION**r``."""
    import optuna

    top = REDUCTION ** (search.rungs - 1)
    if search.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1,
                                                      reduction_factor=REDUCTION)
    if search.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=top,
                                              reduction_factor=REDUCTION)
    if search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=search.startup, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def _run_trial(trial: Any, number: int, run: Callable[[float], float], search: Search
               ) -> tuple[str, float, list[float]]:
    """Climb the budget rungs, reporting each rung's objective to the pruner; returns the
    state (complete, pruned, diverged), the last objective and the objective per rung. The
    first trial (``number`` 0: the untuned configuration) reports but is never pruned."""
    values: list[float] = []
    for r in range(search.rungs):
        value = run(rung_share(r, search.rungs))
        if not math.isfinite(value):
            return "diverged", math.nan, values
        values.append(value)
        if r == search.rungs - 1:
            break
        trial.report(value, step=REDUCTION ** r)
        if trial.should_prune() and number > 0:
            return "pruned", value, values
    return "complete", values[-1], values


def _budget_free(rungs: list[float], search: Search) -> bool:
    """Whether the first trial scored exactly the same at every budget rung: the learner's
    score does not depend on the iteration budget (scratch, partial pooling and the dynamic
    model fit to convergence by their own rules), so a lower rung costs as much as the full
    budget and tells nothing new. Its later trials then run once, at the full budget."""
    return search.rungs > 1 and len(rungs) == search.rungs and len(set(rungs)) == 1


def tune(learner_name: str, base_hyperparameters: Mapping[str, Any] | None,
         stream_or_streams: TaskStream | Sequence[TaskStream],
         settings: ProtocolSettings | None = None, *, seed: int = 0, device: str = "cpu",
         space: Mapping[str, Any] | None = None, storage: str | Path | None = None,
         study_name: str | None = None,
         progress: Callable[[dict[str, Any]], None] | None = None,
         **overrides: Any) -> TuningResult:
    """Search ``learner_name``'s space as ``settings.tuning`` says (see the module docstring;
    ``settings.tuning`` None: ``TuningSettings()``'s defaults); ``base_hyperparameters`` stay
    fixed. ``settings``: the run's protocol settings (a scenario's ``scenario.protocol()``;
    None: the defaults), so a trial trains and scores as the run will; ``overrides`` are
    replaced in (``dataclasses.replace``, as ``evaluate``'s). ``space``: the space to search
    (None: ``settings.tuning.space[learner_name]`` if given, else the class's).
    ``storage``: an SQLite file for the Optuna study (in memory when None); ``study_name``
    names it there (re-created on each call). ``progress`` is called with each finished
    trial's trace entry (and its ``trials`` total)."""
    import optuna

    t0 = time.perf_counter()
    settings = ProtocolSettings.resolve(settings, overrides)
    tu = settings.tuning or TuningSettings()
    settings = dataclasses.replace(settings, tuning=tu)
    search, metric, warmup = tu.search, tu.metric, settings.warmup
    if space is None:
        space = tu.space.get(learner_name)
    fixed = dict(base_hyperparameters or {})
    streams = [stream_or_streams] if isinstance(stream_or_streams, TaskStream) \
        else list(stream_or_streams)
    if not streams:
        raise ValueError("tune: give at least one TaskStream")
    last = streams[0].waves[warmup - 1] if 0 < warmup <= len(streams[0]) else []
    check_tuning(search, metric, warmup, all(t.oracle_query is not None for t in last)
                 if last else None)
    if warmup >= min(len(s) for s in streams):
        raise ScenarioError(f"evaluation.warmup = {warmup} must leave scored waves: the stream has "
                            f"{min(len(s) for s in streams)} waves")
    resolved = resolve_space(learner_name, fixed, space)
    if not resolved:
        return TuningResult(learner_name, metric, 0, {}, math.nan, [], {},
                            time.perf_counter() - t0, search=dataclasses.asdict(search))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name or f"{learner_name}-seed{seed}"
    url = None if storage is None else f"sqlite:///{Path(storage)}"
    if url is not None:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=url)
    study = optuna.create_study(
        direction="minimize", study_name=name, storage=url, pruner=_pruner(search),
        sampler=optuna.samplers.TPESampler(seed=int(seed), n_startup_trials=search.startup))
    start = _start_point(learner_name, fixed, resolved)
    if start:
        study.enqueue_trial(start, skip_if_exists=False)
    states = {"complete": optuna.trial.TrialState.COMPLETE,
              "pruned": optuna.trial.TrialState.PRUNED,
              "diverged": optuna.trial.TrialState.FAIL}
    trace: list[dict[str, Any]] = []
    climb = search
    for i in range(int(search.trials)):
        trial = study.ask()
        params = _suggest(trial, resolved)
        t1 = time.perf_counter()

        def run(share: float, params: dict[str, Any] = params) -> float:
            return trial_score(learner_name, {**fixed, **params}, streams, settings, seed,
                               share, device=device)

        state, value, rungs = _run_trial(trial, i, run, climb)
        if i == 0 and _budget_free(rungs, search):
            climb = dataclasses.replace(search, rungs=1)
        study.tell(trial, value if state == "complete" else None, state=states[state])
        trace.append({"number": trial.number, "params": params,
                      "value": value if math.isfinite(value) else None, "state": state,
                      "rungs": rungs, "seconds": time.perf_counter() - t1})
        if progress is not None:
            progress({**trace[-1], "trials": int(search.trials)})
    done = [t for t in trace if t["state"] == "complete"]
    best = min(done, key=lambda t: t["value"]) if done else None
    first = trace[0]
    untuned = first["value"] if (len(start) == len(resolved) and first["state"] == "complete"
                                 ) else None
    return TuningResult(learner_name, metric, int(search.trials),
                        dict(best["params"]) if best else {},
                        best["value"] if best else math.nan, trace, describe_space(resolved),
                        time.perf_counter() - t0, untuned_value=untuned,
                        search=dataclasses.asdict(search),
                        budget_free=climb.rungs != search.rungs)


__all__ = ["DEFAULT_SEARCH", "METRICS", "PRUNERS", "REDUCTION", "Search",
           "TuningResult", "check_search", "check_tuning", "describe_space", "parse_range",
           "pretrain_scaled", "resolve_space", "rung_share", "scaled", "trial_settings",
           "trial_score", "tune", "warmup_stream"]
