"""The protocol's settings, in one place: :class:`Budget`, :class:`Episodes`, :class:`Search`,
:class:`TuningSettings`, :class:`PretrainSettings` and :class:`ProtocolSettings` (everything
``evaluate``, ``iter_evaluate`` and ``tune`` take besides the learner, the stream, the seed and
the device).

Why one module: the scenario schema (``experiment.scenario_base``) validates a scenario's
``[evaluation]`` table into these dataclasses and reads its defaults from them, so a notebook
call ``evaluate(learner, stream, scenario.protocol(), seed=s)`` runs exactly what the sweep's
cell runs, and a default lives in one place. The defaults are what ``scenarios/_base.toml``
ships (a test keeps them equal); the optional tables (``warmup_budget``, ``tuning``,
``pretrain``) are off unless given. A frozen dataclass per concept, validated on construction;
the run log stores :meth:`ProtocolSettings.as_dict` under ``"protocol"`` and
:meth:`ProtocolSettings.from_dict` reads it back.

A leaf module (no torch, no other simlab layer): every layer may import it.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from simlab.errors import ScenarioError

#: the seeds a scenario runs when it names none: the paired test's verdict needs at least
#: ``evaluation.statistics.MIN_SEEDS`` (6; a test keeps this at or above it)
DEFAULT_SEEDS = 6
#: a loss above this many times the support base-rate predictor's loss is a blow-up (diverged)
DIVERGENCE_MULTIPLE = 10.0
#: ``Episodes.shots`` modes besides a fixed integer K
EpisodeMode = Literal["grid", "matched", "stream"]
EPISODE_MODES: tuple[str, ...] = get_args(EpisodeMode)
#: ``Budget.mode`` values: a fixed count of meta-iterations, a fixed wall time, or training
#: until a held-out score stops improving
BudgetMode = Literal["iterations", "seconds", "early_stop"]
BUDGET_MODES: tuple[str, ...] = get_args(BudgetMode)
#: ``PretrainSettings.columns``: the source's columns must match by name, or by count only
PretrainColumns = Literal["names", "count"]
#: Optuna pruners by name ("none": every trial runs to the full budget)
PRUNERS = ("successive_halving", "hyperband", "median", "none")


def is_int(value: Any, low: int) -> bool:
    """An integer (not a bool) >= ``low``; numpy integers count."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) \
        and int(value) >= low


def is_number(value: Any, low: float = 0.0, strict: bool = True) -> bool:
    """A finite real number (not a bool) > ``low`` (>= ``low`` when not ``strict``)."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value) and (float(value) > low if strict else float(value) >= low))


@dataclass(frozen=True)
class Episodes:
    """How a meta-training episode is cut from a revealed task (``episodes.EpisodeSampler``).

    Every episode re-draws, for each sampled task, K support and up to ``query`` query
    respondents from ALL the task's labelled respondents (its support and query rows), so
    learners cannot memorise the stream's one fixed split. ``shots``: ``"grid"`` draws K per
    task uniformly from ``grid`` (the scored shots grid, filled in by the protocol; empty: each
    task's own support size); ``"matched"`` trains one model per scored K on K-shot episodes
    (Vinyals et al. 2016, Snell et al. 2017: train with the shots you test with; resolved by
    the protocol, which then passes an int; a learner given it directly treats it as "grid");
    an int is a fixed K; ``"stream"`` keeps the stream's fixed split (the old behaviour, for
    ablations only). ``query``: at most this many query respondents (None: all the rest).
    """

    shots: str | int = "grid"
    query: int | None = None
    grid: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        s = self.shots
        if not (s in EPISODE_MODES or is_int(s, 1)):
            raise ScenarioError(f"episodes.shots = {s!r} is invalid; use one of "
                                f"{', '.join(map(repr, EPISODE_MODES))} or an integer K >= 1")
        if self.query is not None and not is_int(self.query, 1):
            raise ScenarioError(f"episodes.query = {self.query!r} is invalid; use an integer "
                                ">= 1 (query respondents per episode) or leave it out (all the "
                                "rest)")
        if not all(is_int(k, 1) for k in self.grid):
            raise ScenarioError(f"episodes grid = {self.grid!r} must be integers >= 1")
        object.__setattr__(self, "grid", tuple(int(k) for k in self.grid))


@dataclass(frozen=True)
class Budget:
    """Outer-loop budget of one ``meta_fit`` call; the same for every learner in a comparison.

    ``mode`` (``episodes.fit_loop`` enforces it):

    * ``"iterations"``: ``iterations`` meta-iterations (``seconds``, if given, caps the wall
      time; every outer loop checks it between updates);
    * ``"seconds"``: meta-iterations until ``seconds`` of wall time have passed (equal time for
      every learner; ``iterations`` is only a safety cap, set it high);
    * ``"early_stop"``: meta-iterations until the score on held-out tasks (``holdout``, attached
      by the protocol: the last warm-up wave, never a scored one) has not improved for
      ``patience`` evaluations made every ``eval_every`` iterations, capped at ``iterations``
      and at ``seconds`` (if given); the parameters of the best evaluation are restored, as
      early stopping does. The training curve goes into the ``meta_fit`` log.

    Learners that fit to convergence by their own rule (the GLM baselines' EM and Newton
    iterations) ignore the mode. ``recency``: a half-life in waves; meta-batches are then drawn
    with task weights ``0.5 ** (age / recency)`` (age: waves behind the newest task), so a
    learner that wants recency weights the newest waves more (None: uniform, the default).
    ``episodes`` says how each meta-training episode is drawn from the revealed tasks; the
    protocol fills it in from ``ProtocolSettings.episodes`` (its one home).
    Defaults: ``scenarios/_base.toml``'s ``[evaluation.budget]`` (40 iterations of 16 tasks)."""

    iterations: int = 40         # meta-iterations (outer steps); early_stop: the cap
    meta_batch: int = 16         # tasks per meta-iteration
    seconds: float | None = None  # optional wall-clock cap (mode "seconds": the budget)
    episodes: Episodes = Episodes()
    mode: BudgetMode = "iterations"
    patience: int = 5            # early_stop: evaluations without improvement before stopping
    eval_every: int = 25         # early_stop: meta-iterations between held-out evaluations
    recency: float | None = None  # half-life in waves of the task sampling weights (None: off)
    #: the held-out scorer of an early-stopping call (``episodes.HeldOut``), attached by the
    #: protocol; not a setting (not compared, not recorded)
    holdout: Any = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not is_int(self.iterations, 0) or not is_int(self.meta_batch, 1):
            raise ScenarioError(f"Budget needs iterations >= 0 and meta_batch >= 1, got {self}")
        if self.seconds is not None and not is_number(self.seconds):
            raise ScenarioError(f"budget.seconds = {self.seconds!r} must be a number > 0 or None")
        if self.mode not in BUDGET_MODES:
            raise ScenarioError(f"budget.mode = {self.mode!r} is invalid; use one of "
                                f"{', '.join(map(repr, BUDGET_MODES))}")
        if self.mode == "seconds" and self.seconds is None:
            raise ScenarioError("budget.mode = 'seconds' needs budget.seconds (the wall time "
                                "every learner trains for), e.g. seconds = 60")
        if not is_int(self.patience, 1):
            raise ScenarioError(f"budget.patience = {self.patience!r} must be an integer >= 1 "
                                "(held-out evaluations without improvement before stopping)")
        if not is_int(self.eval_every, 1):
            raise ScenarioError(f"budget.eval_every = {self.eval_every!r} must be an integer "
                                ">= 1 (meta-iterations between held-out evaluations)")
        if self.recency is not None and not is_number(self.recency):
            raise ScenarioError(f"budget.recency = {self.recency!r} must be a half-life in "
                                "waves > 0 or None (uniform sampling)")

    def settings(self) -> dict[str, Any]:
        """The budget as recorded with a run (every field but the held-out scorer)."""
        return {f.name: (dataclasses.asdict(getattr(self, f.name)) if f.name == "episodes"
                         else getattr(self, f.name))
                for f in dataclasses.fields(self) if f.name != "holdout"}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Budget:
        """The budget :meth:`settings` recorded."""
        data = {k: v for k, v in data.items() if k != "holdout"}
        if isinstance(data.get("episodes"), Mapping):
            data["episodes"] = Episodes(**{**data["episodes"],
                                           "grid": tuple(data["episodes"].get("grid", ()))})
        return cls(**data)


@dataclass(frozen=True)
class Search:
    """How a tuning search spends its trials (``evaluation.tuning``).

    ``trials``: per learner, the same for every learner. ``startup``: TPE's random start-up
    trials (also the median pruner's: it prunes nothing before). ``pruner``: one of
    :data:`PRUNERS`. ``folds``: rolling-origin folds, the last warm-up waves each scored once.
    ``rungs``: budget rungs a trial climbs (1: full budget only, nothing to prune on).
    Defaults: ``scenarios/_base.toml``'s, sized for 2 cores (16 trials, 6 random, 2 folds,
    2 rungs); ``evaluation.tuning.check_search`` validates them against a warm-up."""

    trials: int = 16
    startup: int = 6
    pruner: str = "successive_halving"
    folds: int = 2
    rungs: int = 2

    def brackets(self) -> int:
        """Hyperband's successive-halving brackets (TPE sees each bracket's trials alone)."""
        return self.rungs if self.pruner == "hyperband" else 1


@dataclass(frozen=True)
class TuningSettings:
    """Equal-budget tuning before a learner is evaluated (``evaluation.tuning.tune``).

    ``search``: trials, pruning and folds. ``metric``: one of ``evaluation.tuning.METRICS``.
    ``budget``: each trial's warm-up meta-fit budget (None: the run's warm-up budget, so a
    trial trains exactly as the run will; ``_base.toml`` gives a fixed 400 iterations).
    ``seeds``: a sweep tunes once per learner on the streams of its first ``seeds`` seeds.
    ``space``: per-learner search spaces replacing the classes' (learner -> field -> range
    table, as in ``[evaluation.tuning.space.<name>]``)."""

    search: Search = Search()
    metric: str = "loss"
    budget: Budget | None = None
    seeds: int = 1
    space: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not is_int(self.seeds, 1):
            raise ScenarioError(f"tuning.seeds = {self.seeds!r} must be an integer >= 1")


@dataclass(frozen=True)
class PretrainSettings:
    """Pre-training on simulated societies (``evaluation.pretrain``), carried to the protocol
    on the stream (``experiment.pretraining.with_pretraining`` loads ``scenario``).

    ``scenario``: the source scenario file (None: the evaluated scenario's own streams at
    ``seeds``); ``budget``: the pre-training meta_fit's; ``learners``: who is pre-trained
    (None: every one that can be); ``columns``: "names" or "count" (see the schema)."""

    scenario: str | None = None
    seeds: tuple[int, ...] = (0,)
    budget: Budget = Budget(iterations=200)
    learners: tuple[str, ...] | None = None
    columns: PretrainColumns = "names"

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if self.learners is not None:
            object.__setattr__(self, "learners", tuple(self.learners))


@dataclass(frozen=True)
class ProtocolSettings:
    """Everything the prequential protocol takes besides the learner, the stream, the seed and
    the device (see ``evaluation.protocol``); a scenario's is ``scenario.protocol()``.

    ``warmup``: waves meta-fitted on before the first scored wave. ``shots`` / ``steps``: the
    grids (the protocol sorts and deduplicates them). ``budget``: every online ``meta_fit``;
    ``warmup_budget``: the warm-up one (None: ``budget``; mode ``"early_stop"`` holds the last
    warm-up wave out and needs ``warmup >= 2``; the online budget may not early-stop).
    ``online``: meta-fit again on each revealed wave. ``episodes``: how meta-training episodes
    are drawn (the protocol puts them, with the shots grid, into every ``Budget`` it passes).
    ``divergence_multiple``: a loss above this multiple of the support base-rate predictor's is
    diverged (None: only non-finite losses). ``recovery_tolerance``: the recovery line of the
    run summary (``metrics.SummaryOptions.rel_tol``). ``tuning`` / ``pretrain``: optional
    stages (None: off). Python-only knobs, not in the scenario schema: ``tell_shifts`` (call
    ``learner.notify_shift``), ``max_tasks`` (adapt on at most this many tasks per call:
    memory), ``threads`` (torch's intra-op threads while it runs; 1, as the sweep's workers;
    None: leave as is)."""

    warmup: int = 4
    shots: tuple[int, ...] = (5, 10, 20)
    steps: tuple[int, ...] = (0, 1, 5, 10)
    budget: Budget = Budget()
    warmup_budget: Budget | None = None
    online: bool = True
    episodes: Episodes = Episodes()
    divergence_multiple: float | None = DIVERGENCE_MULTIPLE
    recovery_tolerance: float = 0.1
    tuning: TuningSettings | None = None
    pretrain: PretrainSettings | None = None
    tell_shifts: bool = False
    max_tasks: int | None = None
    threads: int | None = 1

    def __post_init__(self) -> None:
        if not is_int(self.warmup, 0):
            raise ScenarioError(f"warmup={self.warmup!r} must be an int >= 0 (waves meta-fitted "
                                "on before the first scored wave)")
        for name, low in (("shots", 1), ("steps", 0)):
            grid = getattr(self, name)
            if isinstance(grid, (str, bytes)) or not isinstance(grid, Sequence) or not grid \
                    or not all(is_int(v, low) for v in grid):
                raise ScenarioError(f"{name}={grid!r} must be a non-empty list of ints >= {low}")
            object.__setattr__(self, name, tuple(int(v) for v in grid))
        if self.max_tasks is not None and not is_int(self.max_tasks, 1):
            raise ScenarioError(f"max_tasks={self.max_tasks!r} must be >= 1 or None")
        if self.divergence_multiple is not None and not is_number(self.divergence_multiple, 1):
            raise ScenarioError(f"divergence_multiple={self.divergence_multiple!r} must be a "
                                "number > 1 (e.g. 10: a loss 10x the base-rate predictor's is "
                                "a blow-up) or None")
        if not is_number(self.recovery_tolerance):
            raise ScenarioError(f"recovery_tolerance={self.recovery_tolerance!r} must be a "
                                "number > 0")
        if self.threads is not None and not is_int(self.threads, 1):
            raise ScenarioError(f"threads={self.threads!r} must be an int >= 1 or None")
        if self.budget.episodes != Episodes():
            raise ScenarioError("give the episodes as ProtocolSettings.episodes, not inside "
                                "budget.episodes (the protocol fills the budgets' episodes in)")
        self._check_budgets()

    def _check_budgets(self) -> None:
        """Early stopping needs held-out warm-up tasks, which only the warm-up meta_fit has."""
        separate = self.warmup_budget is not None
        warm = self.warmup_budget or self.budget
        name = "warmup_budget" if separate else "budget"
        if warm.mode == "early_stop" and self.warmup < 2:
            raise ScenarioError(f"{name}.mode = 'early_stop' holds out the last warm-up wave "
                                "and trains on the others, so it needs warmup >= 2; got "
                                f"warmup={self.warmup}. Raise warmup or use mode 'iterations'")
        if self.online and self.budget.mode == "early_stop" and separate:
            raise ScenarioError("budget.mode = 'early_stop' has no held-out tasks online (every "
                                "revealed wave is trained on); use it in warmup_budget and give "
                                "the online budget mode 'iterations' or 'seconds'")
        if self.online and self.budget.mode == "early_stop" and not separate:
            raise ScenarioError("budget.mode = 'early_stop' with no warmup_budget would apply to "
                                "every online meta_fit too, which has no held-out tasks; pass "
                                "warmup_budget=<the early-stopping budget> and an 'iterations' "
                                "budget")

    def warm(self) -> Budget:
        """The warm-up meta_fit's budget."""
        return self.warmup_budget or self.budget

    def replace(self, **changes: Any) -> ProtocolSettings:
        """A validated copy with ``changes`` (``dataclasses.replace``); an unknown name is one
        clear error listing the settings."""
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ScenarioError(f"{', '.join(unknown)}: not a protocol setting; {hint}the "
                                f"settings are {', '.join(names)}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """``dataclasses.asdict`` without the budgets' held-out scorers (never a setting):
        what the run log stores under ``"protocol"``; :meth:`from_dict` reads it back."""
        return _drop_holdout(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProtocolSettings:
        """The settings :meth:`as_dict` wrote (extra keys, e.g. the log's resolved ``seed``
        and ``scored_steps``, are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        out = {k: v for k, v in data.items() if k in names}
        for key in ("budget", "warmup_budget"):
            if isinstance(out.get(key), Mapping):
                out[key] = Budget.from_dict(out[key])
        if isinstance(out.get("episodes"), Mapping):
            out["episodes"] = Episodes(**{**out["episodes"],
                                          "grid": tuple(out["episodes"].get("grid", ()))})
        tu = out.get("tuning")
        if isinstance(tu, Mapping):
            out["tuning"] = TuningSettings(
                Search(**tu["search"]), tu["metric"],
                None if tu.get("budget") is None else Budget.from_dict(tu["budget"]),
                tu["seeds"], dict(tu.get("space") or {}))
        pt = out.get("pretrain")
        if isinstance(pt, Mapping):
            out["pretrain"] = PretrainSettings(**{**pt, "budget": Budget.from_dict(pt["budget"])})
        return cls(**out)

    @classmethod
    def resolve(cls, settings: ProtocolSettings | None, overrides: Mapping[str, Any]
                ) -> ProtocolSettings:
        """``settings`` (None: the defaults) with ``overrides`` replaced in (a notebook's
        ``evaluate(learner, stream, warmup=2, shots=[5])``)."""
        if settings is not None and not isinstance(settings, ProtocolSettings):
            raise ScenarioError(f"settings={settings!r} is not a ProtocolSettings; give "
                                "scenario.protocol(), ProtocolSettings(...) or None (defaults)")
        base = settings if settings is not None else cls()
        return base.replace(**overrides) if overrides else base


def _drop_holdout(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_holdout(v) for k, v in value.items() if k != "holdout"}
    return value


__all__ = ["BUDGET_MODES", "DEFAULT_SEEDS", "DIVERGENCE_MULTIPLE", "EPISODE_MODES", "PRUNERS",
           "BudgetMode", "EpisodeMode", "PretrainColumns",
           "Budget", "Episodes", "PretrainSettings", "ProtocolSettings",
           "Search", "TuningSettings", "is_int", "is_number"]
