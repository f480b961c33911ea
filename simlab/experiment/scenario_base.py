"""What simulated and survey scenarios share: the evaluation sections of a scenario file and
:class:`ScenarioBase` (identity, stream cache, learner tables, ``override``).

Its own module so that ``config`` (simulated scenarios, loading) and ``survey_scenario`` (real
data) both build on it without importing each other's internals.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import typing
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from simlab.errors import ScenarioError
from simlab.evaluation.tuning import DEFAULT_SEARCH, REDUCTION, Search
from simlab.experiment import limits
from simlab.experiment.errors_text import validate_model
from simlab.schema import StrictModel
from simlab.tasks.stream import cached_stream
from simlab.tasks.task import TaskStream


class Section(StrictModel):
    """A section of a scenario file (see ``simlab.schema.StrictModel``)."""


# --- evaluation ---------------------------------------------------------------------------------
#: ``learners.base.BUDGET_MODES`` without importing torch here (a test keeps them equal)
BudgetMode = Literal["iterations", "seconds", "early_stop"]


class BudgetSpec(Section):
    """Outer-loop budget of each ``meta_fit`` call (the same for every learner compared;
    ``learners.base.Budget``)."""

    iterations: int = Field(100, ge=0, description="meta-iterations per meta_fit call "
                            "(mode 'early_stop': the cap; 'seconds': a safety cap)")
    meta_batch: int = Field(16, ge=1, description="tasks per meta-iteration")
    seconds: float | None = Field(None, gt=0, description="wall-clock cap per call (mode "
                                  "'seconds': the budget itself)")
    mode: BudgetMode = Field("iterations", description="'iterations' (a fixed count), "
                             "'seconds' (equal wall time) or 'early_stop' (until the held-out "
                             "score of the last warm-up wave stops improving; warm-up only)")
    patience: int = Field(5, ge=1, description="early_stop: held-out evaluations without "
                          "improvement before stopping")
    eval_every: int = Field(25, ge=1, description="early_stop: meta-iterations between "
                            "held-out evaluations")
    recency: float | None = Field(None, gt=0, description="half-life in waves of the task "
                                  "sampling weights (None: every revealed task alike)")

    @model_validator(mode="after")
    def _seconds(self) -> Self:
        if self.mode == "seconds" and self.seconds is None:
            raise ScenarioError("mode = 'seconds' needs `seconds` (the wall time every learner "
                                "trains for), e.g. seconds = 60")
        return self

    def budget_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``learners.base.Budget`` (episodes come separately)."""
        return self.model_dump(mode="python")


#: ``learners.base.EPISODE_MODES`` without importing torch here (a test keeps them equal)
EpisodeMode = Literal["grid", "matched", "stream"]


class EpisodesSpec(Section):
    """How meta-training episodes are cut from revealed tasks (``learners.base.Episodes``):
    each episode re-draws K support and up to ``query`` query respondents from all of a
    task's labelled respondents, instead of reusing the stream's one fixed split."""

    shots: str | int = Field(
        "grid", description="K per episode: 'grid' (drawn from evaluation.shots), 'matched' "
        "(one model per scored K, trained on K-shot episodes), an int K, or 'stream' (the "
        "stream's fixed split; ablations only)")
    query: int | None = Field(None, ge=1, description="query respondents per episode at most "
                              "(None: all the task's other labelled respondents)")

    @field_validator("shots", mode="before")
    @classmethod
    def _shots(cls, v: Any) -> str | int:
        modes = typing.get_args(EpisodeMode)
        if (isinstance(v, int) and not isinstance(v, bool) and v >= 1) or v in modes:
            return v
        close = difflib.get_close_matches(str(v), modes, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ScenarioError(f"{hint}use \"grid\" (K drawn from evaluation.shots), \"matched\" "
                            "(one model per scored K), an integer K >= 1, or \"stream\" (the "
                            "stream's fixed split)")


class TuningSpec(Section):
    """Equal-budget tuning (``simlab.evaluation.tuning``): every learner gets ``trials`` Optuna
    trials (seeded TPE, pruned on budget rungs) over its ``search_space``, scored inside the
    warm-up waves only (rolling origin over the last ``folds``); the oracle (empty space) gets
    none. Defaults: ``simlab.evaluation.tuning.Search``."""

    trials: int = Field(DEFAULT_SEARCH.trials,
                        description="trials per learner (the same for every learner); must "
                        "exceed startup so TPE acts")
    startup: int = Field(DEFAULT_SEARCH.startup, description="TPE's random start-up trials "
                         "(also the median pruner's)")
    pruner: str = Field(DEFAULT_SEARCH.pruner, description="successive_halving | hyperband | "
                        "median | none: stops trials that trail at a lower budget rung")
    rungs: int = Field(DEFAULT_SEARCH.rungs, description="budget rungs a trial climbs, each "
                       f"{REDUCTION}x the last's iterations up to the full budget")
    folds: int = Field(DEFAULT_SEARCH.folds, description="rolling-origin folds: the last "
                       "`folds` warm-up waves, each scored after fitting on the waves before")
    metric: str = Field("loss", description="objective: loss | auc | excess_loss (oracle only)")
    space: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-learner search space replacing the class's, "
        "e.g. [evaluation.tuning.space.maml] inner_lr = {low = 1e-3, high = 0.5, log = true}")
    budget: BudgetSpec | None = Field(
        None, description="warm-up meta-fit budget of each trial (None: evaluation's)")
    seeds: int = Field(2, ge=1, description="tune once per learner on the warm-up waves of the "
                       "streams of the sweep's first `seeds` seeds (all of them if fewer); "
                       "every seed's cell then runs with that choice")

    def search(self) -> Search:
        """The ``Search`` these settings describe."""
        return Search(self.trials, self.startup, self.pruner, self.folds, self.rungs)


class PretrainSpec(Section):
    """Pre-training on simulated societies (``simlab.evaluation.pretrain``): before the
    warm-up, every learner that can use it meta-fits on every task of these simulated streams
    with this budget (the same for all)."""

    scenario: str | None = Field(
        None, description="scenario file to pre-train on (relative to this file; for a survey "
        "its `simlab twin`); None: this scenario's own streams at `seeds`")
    seeds: list[int] = Field(default_factory=lambda: [0],
                             description="seeds of the pre-training scenario's streams")
    budget: BudgetSpec = Field(default_factory=lambda: BudgetSpec(iterations=200),
                               description="the pre-training meta_fit's budget")
    learners: list[str] | None = Field(
        None, description="learners to pre-train (None: every listed one that can be)")
    columns: Literal["names", "count"] = Field(
        "names", description="how the source's feature columns must match: 'names' (the same "
        "columns) or 'count' (the same number: a `simlab twin` matches a survey's number and "
        "kind of columns, not their meaning)")

    @field_validator("budget")
    @classmethod
    def _budget(cls, v: BudgetSpec) -> BudgetSpec:
        if v.iterations < 1:
            raise ScenarioError("iterations = 0 pre-trains nothing; give iterations >= 1 (e.g. "
                                "200) or remove [evaluation.pretrain]")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v or min(v) < 0 or len(set(v)) != len(v):
            raise ScenarioError("give distinct seeds >= 0, e.g. [100, 101]")
        return v


class EvaluationSpec(Section):
    """How the prequential protocol scores learners on this scenario's stream."""

    bool_fields: ClassVar[frozenset[str]] = frozenset({"tuning"})   # `tuning = false`: off

    warmup: int = Field(4, ge=1, description="waves meta-fitted on before the first scored wave")
    shots: list[int] = Field(default_factory=lambda: [1, 5, 10],
                             description="support sizes K to adapt on")
    steps: list[int] = Field(default_factory=lambda: [0, 1, 5, 10],
                             description="inner-loop step counts to score")
    seeds: int = Field(3, ge=1, description="independent streams (seeds 0..seeds-1)")
    learners: list[str] = Field(
        default_factory=lambda: ["scratch", "finetune", "partial_pooling", "maml", "oracle"],
        description="learner names, entry points or package.module:Class")
    budget: BudgetSpec = Field(default_factory=BudgetSpec,
                               description="budget of every online meta_fit (after each wave)")
    warmup_budget: BudgetSpec | None = Field(
        None, description="budget of the warm-up meta_fit on the first waves (None: budget)")
    online: bool = Field(True, description="meta-fit again on each wave once it is revealed")
    episodes: EpisodesSpec = Field(default_factory=EpisodesSpec,
                                   description="how meta-training episodes are drawn")
    divergence_multiple: float | None = Field(
        10.0, gt=1, description="a loss above this multiple of the support base-rate "
        "predictor's is recorded as diverged (None: only non-finite losses)")
    recovery_tolerance: float = Field(
        0.1, gt=0, description="recovered = excess loss back within this share of the "
        "ceiling's loss (plus 0.01), sustained (see evaluation.metrics.SummaryOptions)")
    tuning: TuningSpec | None = Field(
        None, description="equal-budget tuning of every learner before it is evaluated "
        "(`tuning = false` switches off a tuning table inherited through `extends`)")
    pretrain: PretrainSpec | None = Field(
        None, description="pre-train on a simulated scenario before the warm-up")

    @model_validator(mode="after")
    def _early_stop(self) -> Self:
        """Early stopping holds out the last warm-up wave: the warm-up budget only, and a
        warm-up with a wave to train on besides (tuning trials use one wave fewer)."""
        warm = self.warmup_budget or self.budget
        field = "warmup_budget" if self.warmup_budget is not None else "budget"
        if self.online and self.budget.mode == "early_stop":
            raise ScenarioError("evaluation.budget.mode = 'early_stop': online meta-fits have no "
                                "held-out tasks; set mode = 'early_stop' in "
                                "[evaluation.warmup_budget] and keep evaluation.budget at "
                                "'iterations' or 'seconds'")
        need = 3 if self.tuning is not None else 2
        why = (" (tuning trials score the last warm-up wave and early-stop on the one before)"
               if need == 3 else "")
        if warm.mode == "early_stop" and self.warmup < need:
            raise ScenarioError(f"evaluation.{field}.mode = 'early_stop' holds out the last "
                                f"warm-up wave and trains on the earlier ones, so it needs "
                                f"evaluation.warmup >= {need}{why}; got warmup = {self.warmup}. "
                                "Raise warmup or use mode 'iterations'")
        return self

    @field_validator("tuning", mode="before")
    @classmethod
    def _untuned(cls, v: Any) -> Any:
        if v is True:
            raise ScenarioError("give a table ([evaluation.tuning], its keys optional) or false")
        return None if v is False else v

    @field_validator("shots")
    @classmethod
    def _shots(cls, v: list[int]) -> list[int]:
        return _grid(v, minimum=1, what="shots")

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        return _grid(v, minimum=0, what="steps")

    @field_validator("learners")
    @classmethod
    def _learners(cls, v: list[str]) -> list[str]:
        if not v:
            raise ScenarioError("list at least one learner, e.g. ['scratch', 'maml']")
        dup = sorted({n for n in v if v.count(n) > 1})
        if dup:
            raise ScenarioError(f"learner(s) listed twice: {', '.join(dup)}")
        return v


def _grid(v: list[int], minimum: int, what: str) -> list[int]:
    if not v:
        raise ScenarioError(f"{what} needs at least one value")
    if min(v) < minimum:
        raise ScenarioError(f"every {what} value must be >= {minimum}")
    if len(set(v)) != len(v) or v != sorted(v):
        raise ScenarioError(f"{what} must be strictly increasing, e.g. {sorted(set(v))}")
    return v


# --- what simulated and survey scenarios share -------------------------------------------------
class ScenarioBase(StrictModel):
    """Identity, stream cache and learner tables shared by :class:`Scenario` (simulated) and
    :class:`~simlab.experiment.survey_scenario.SurveyScenario` (real data), so the sweep, the
    store and the CLI treat both alike.

    Immutable once validated (its fingerprint names the streams and results made from it);
    use ``override`` to derive a changed, re-validated copy.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: the top-level sections a stream depends on (its cache key hashes only these)
    stream_sections: ClassVar[tuple[str, ...]] = ()
    #: whether its streams carry the true probabilities (simulated: yes; real data: no)
    has_oracle: ClassVar[bool] = False

    name: str = Field(min_length=1, description="short identifier (defaults to the file name)")
    description: str = Field("", description="one line shown by `simlab list scenarios`")

    if typing.TYPE_CHECKING:   # declared by each kind (their defaults differ)
        evaluation: EvaluationSpec
        learners: dict[str, dict[str, Any]]

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file this scenario was loaded from (None when built in Python)."""
        return self._source

    # --- identity -------------------------------------------------------------------------
    def canonical(self, sections: tuple[str, ...] | None = None) -> str:
        """Canonical JSON of the validated config (defaults filled in, keys sorted)."""
        data = self.model_dump(mode="json")
        if sections is not None:
            data = {k: data[k] for k in sections}
        data.update(self._content_identity())
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    def _content_identity(self) -> dict[str, str]:
        """What the config reads besides itself (a survey's data file); none here."""
        return {}

    def fingerprint(self) -> str:
        """Stable sha256 of the whole validated config, recorded with every result."""
        return hashlib.sha256(self.canonical().encode()).hexdigest()

    def stream_fingerprint(self) -> str:
        """sha256 of only what the stream depends on (not name, evaluation or learners)."""
        return hashlib.sha256(self.canonical(self.stream_sections).encode()).hexdigest()

    def stored_config(self) -> dict[str, Any]:
        """What the results store records with each run (a survey adds its data ledger)."""
        return self.model_dump(mode="json")

    # --- running --------------------------------------------------------------------------
    @abstractmethod
    def generate_stream(self, seed: int) -> TaskStream:
        """The stream for ``seed``, generated (no cache)."""

    @abstractmethod
    def code_digest(self) -> str:
        """Hash of the code that makes this scenario's stream (part of the cache key)."""

    def stream(self, seed: int, cache_dir: str | Path | None = None,
               cache: bool = True) -> TaskStream:
        """The task stream for ``seed``, from the disk cache when possible."""
        return cached_stream(self, seed, cache_dir) if cache else self.generate_stream(seed)

    def hyperparameters(self, learner: str) -> dict[str, Any]:
        """The ``[learners.<name>]`` table for ``learner`` (empty when none is given)."""
        return dict(self.learners.get(learner, {}))

    def _learner_checks(self, support: int, support_field: str) -> list[str]:
        """Shots that fit the support size; hyperparameters only for listed learners."""
        out = []
        ev = self.evaluation
        if max(ev.shots) > support:
            out.append(f"evaluation.shots = {ev.shots} asks for more respondents than "
                       f"{support_field} = {support}; lower the shots or raise support")
        out += self._episode_checks(support, support_field)
        out += [p for p in [limits.over("evaluation.steps", max(ev.steps), "steps")] if p]
        for name, table in self.learners.items():
            out += limits.learner_problems(f"learners.{name}", table)
        for name in self.learners:
            if name not in ev.learners:
                close = difflib.get_close_matches(name, ev.learners, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                out.append(f"learners.{name} sets hyperparameters for a learner that is not in "
                           f"evaluation.learners = {ev.learners}{hint}")
        return out + self._tuning_checks() + self._pretrain_checks()

    def _pretrain_checks(self) -> list[str]:
        """[evaluation.pretrain]: pre-trainable learners; no evaluated seed pre-trained on."""
        pt, ev = self.evaluation.pretrain, self.evaluation
        if pt is None:
            return []
        from simlab.evaluation.pretrain import check_learners

        out = check_learners(pt.learners or [], ev.learners)
        if pt.scenario is None and not self.has_oracle:
            out.append("evaluation.pretrain.scenario is missing: a survey has one stream, so "
                       "name the simulated scenario to pre-train on (its `simlab twin` file)")
        elif pt.scenario is None and min(pt.seeds) < ev.seeds:
            out.append(f"evaluation.pretrain.seeds = {pt.seeds} includes evaluated seeds "
                       f"(0..{ev.seeds - 1}); without evaluation.pretrain.scenario the "
                       f"pre-training streams are this scenario's, so use seeds >= {ev.seeds}")
        return out

    def _tuning_checks(self) -> list[str]:
        """[evaluation.tuning]: warm-up long enough, a metric this data can compute, space
        tables for listed learners and their real, unfixed hyperparameters."""
        tu, ev = self.evaluation.tuning, self.evaluation
        if tu is None:
            return []
        from simlab.evaluation.tuning import check_tuning, resolve_space

        out = []
        try:
            check_tuning(tu.search(), tu.metric, ev.warmup, has_oracle=self.has_oracle)
        except ValueError as err:
            out.append(str(err))
        for name, space in tu.space.items():
            if name not in ev.learners:
                close = difflib.get_close_matches(name, ev.learners, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                out.append(f"evaluation.tuning.space.{name}: {name!r} is not in "
                           f"evaluation.learners = {ev.learners}{hint}")
                continue
            try:
                resolve_space(name, self.learners.get(name, {}), space)
            except ValueError as err:
                out.append(str(err))
        return out

    def _episode_checks(self, support: int, support_field: str) -> list[str]:
        """A fixed episode K must leave a query respondent in a task of ``support`` + query."""
        k = self.evaluation.episodes.shots
        query_field = support_field.replace("support", "query")
        labelled = support + int(getattr(self, support_field.split(".")[0]).query)
        if isinstance(k, int) and k >= labelled:
            return [f"evaluation.episodes.shots = {k} is larger than a task's labelled "
                    f"respondents ({support_field} + {query_field} = {labelled}) minus the one "
                    f"query respondent an episode needs; use at most {labelled - 1}, or "
                    "\"grid\" to draw K from evaluation.shots"]
        return []

    # --- construction ---------------------------------------------------------------------
    def override(self, changes: Mapping[str, Any]) -> Self:
        """A re-validated copy with ``changes`` deep-merged in (tables merge, values replace),
        e.g. ``sc.override({"survey": {"waves": 8}, "evaluation": {"seeds": 1}})``."""
        data = merge_tables(self.model_dump(mode="python"), changes)
        return self._revalidated(data, f"{self._source or self.name} (overridden)",
                                 [("overrides", dict(changes))])

    def _revalidated(self, data: dict[str, Any], where: str,
                     chain: list[tuple[str, dict[str, Any]]]) -> Self:
        out = validate_model(data, where, chain, type(self))
        out._source = self._source
        return out


# --- the scenario -------------------------------------------------------------------------------


def merge_tables(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge tables; arrays and values in ``over`` replace. A table whose ``kind`` or
    ``family`` differs from the base's replaces it whole (its fields belong to another type)."""
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and not _retyped(old, value):
            out[key] = merge_tables(old, value)
        else:
            out[key] = value
    return out


def _retyped(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return any(tag in new and tag in old and new[tag] != old[tag] for tag in ("kind", "family"))


__all__ = ["BudgetMode", "BudgetSpec", "EpisodeMode", "EpisodesSpec", "EvaluationSpec",
           "ScenarioBase", "TuningSpec", "merge_tables"]
