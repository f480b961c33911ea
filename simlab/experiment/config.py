"""Scenario files: the TOML schema, loading (with ``extends``), validation and clear errors.

A scenario names one dynamics family with its parameters, the social graph, the population,
the shocks, the survey design, the burn-in, and how learners are evaluated on the resulting
stream. Everything is a pydantic model with ``extra="forbid"``, so a misspelled field is an
error, never silently ignored. ``load_scenario`` turns every problem in a file into ONE
``ScenarioError`` (a ``ValueError``) naming the file, the field path, the bad value and what is
allowed, with a did-you-mean for misspellings.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import tomllib
import types
import typing
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, Union

import numpy as np
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, SerializeAsAny, ValidationError,
                      ValidationInfo, field_validator, model_validator)

from simlab.errors import ScenarioError
from simlab.experiment import limits
from simlab.schema import StrictModel
from simlab.society import FAMILIES, society_class
from simlab.society.base import DynamicsParams, Society
from simlab.society.graphs import GraphSpec, planted_partition
from simlab.society.population import PopulationSpec, make_population
from simlab.society.response import AnyResponseSpec, GLMSpec
from simlab.society.shocks import ShockSpec, validate_shocks
from simlab.society.survey import SurveyDesign, feature_names
from simlab.tasks.stream import (cached_stream, family_code_digest, generate_stream,
                                 seed_streams)
from simlab.tasks.task import TaskStream

if typing.TYPE_CHECKING:  # pragma: no cover
    from simlab.experiment.survey_scenario import SurveyScenario

DEFAULT_SCENARIO = "opinion_shift"


class _Strict(StrictModel):
    """A section of a scenario file (see ``simlab.schema.StrictModel``)."""


# --- dynamics ----------------------------------------------------------------------------------
class DynamicsSpec(_Strict):
    """A dynamics family (``FAMILIES`` name or ``package.module:Class``) and its parameters,
    validated by that family's ``Params`` class (unknown fields are errors)."""

    family: str = Field(description="dynamics family, e.g. 'opinion'")
    params: SerializeAsAny[DynamicsParams] = Field(default_factory=dict, validate_default=True,
                                                   description="the family's Params fields")

    @field_validator("family")
    @classmethod
    def _known_family(cls, name: str) -> str:
        if ":" not in name and name not in FAMILIES:
            close = difflib.get_close_matches(name, list(FAMILIES), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"unknown dynamics family; {hint}choose one of "
                             f"{', '.join(FAMILIES)} (or 'package.module:Class' for your own)")
        society_class(name)   # imports it: a broken user class fails here, with its reason
        return name

    @field_validator("params", mode="wrap")
    @classmethod
    def _family_params(cls, value: Any, handler: Any, info: ValidationInfo) -> Any:
        family = info.data.get("family")
        if family is None:        # the family itself is invalid; that error is reported
            return value
        return society_class(family).Params.model_validate(value)


# --- evaluation ---------------------------------------------------------------------------------
class BudgetSpec(_Strict):
    """Outer-loop budget of each ``meta_fit`` call (the same for every learner compared)."""

    iterations: int = Field(100, ge=0, description="meta-iterations per meta_fit call")
    meta_batch: int = Field(16, ge=1, description="tasks per meta-iteration")
    seconds: float | None = Field(None, gt=0, description="optional wall-clock cap per call")


#: ``learners.base.EPISODE_MODES`` without importing torch here (a test keeps them equal)
EpisodeMode = Literal["grid", "matched", "stream"]


class EpisodesSpec(_Strict):
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
        raise ValueError(f"{hint}use \"grid\" (K drawn from evaluation.shots), \"matched\" "
                         "(one model per scored K), an integer K >= 1, or \"stream\" (the "
                         "stream's fixed split)")


class TuningSpec(_Strict):
    """Equal-budget tuning (``simlab.evaluation.tuning``): every learner gets ``trials`` Optuna
    trials over its ``search_space``, scored inside the warm-up waves only (fit on the earlier
    ones, score the last); the oracle (empty space) gets none."""

    trials: int = Field(8, description="trials per learner (the same for every learner)")
    metric: str = Field("loss", description="objective: loss | auc | excess_loss (oracle only)")
    space: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-learner search space replacing the class's, "
        "e.g. [evaluation.tuning.space.maml] inner_lr = {low = 1e-3, high = 0.5, log = true}")
    budget: BudgetSpec | None = Field(
        None, description="warm-up meta-fit budget of each trial (None: evaluation's)")

    @field_validator("trials")
    @classmethod
    def _trials(cls, v: int) -> int:
        if v < 1:
            raise ValueError("give an integer >= 1 (trials every learner gets); to switch "
                             "tuning off, remove [evaluation.tuning]")
        return v


class EvaluationSpec(_Strict):
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

    @field_validator("tuning", mode="before")
    @classmethod
    def _untuned(cls, v: Any) -> Any:
        if v is True:
            raise ValueError("give a table ([evaluation.tuning] trials = 8) or false")
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
            raise ValueError("list at least one learner, e.g. ['scratch', 'maml']")
        dup = sorted({n for n in v if v.count(n) > 1})
        if dup:
            raise ValueError(f"learner(s) listed twice: {', '.join(dup)}")
        return v


def _grid(v: list[int], minimum: int, what: str) -> list[int]:
    if not v:
        raise ValueError(f"{what} needs at least one value")
    if min(v) < minimum:
        raise ValueError(f"every {what} value must be >= {minimum}")
    if len(set(v)) != len(v) or v != sorted(v):
        raise ValueError(f"{what} must be strictly increasing, e.g. {sorted(set(v))}")
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
        for name in self.learners:
            if name not in ev.learners:
                close = difflib.get_close_matches(name, ev.learners, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                out.append(f"learners.{name} sets hyperparameters for a learner that is not in "
                           f"evaluation.learners = {ev.learners}{hint}")
        return out + self._tuning_checks()

    def _tuning_checks(self) -> list[str]:
        """[evaluation.tuning]: warm-up long enough, a metric this data can compute, space
        tables for listed learners and their real, unfixed hyperparameters."""
        tu, ev = self.evaluation.tuning, self.evaluation
        if tu is None:
            return []
        from simlab.evaluation.tuning import check_tuning, resolve_space

        out = []
        try:
            check_tuning(tu.trials, tu.metric, ev.warmup, has_oracle=isinstance(self, Scenario))
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
        data = _merge(self.model_dump(mode="python"), changes)
        return self._revalidated(data, f"{self._source or self.name} (overridden)",
                                 [("overrides", dict(changes))])

    def _revalidated(self, data: dict[str, Any], where: str,
                     chain: list[tuple[str, dict[str, Any]]]) -> Self:
        out = _validate(data, where, chain, type(self))
        out._source = self._source
        return out


# --- the scenario -------------------------------------------------------------------------------
class Scenario(ScenarioBase):
    """One simulated scenario: society, shocks, survey, and how learners are evaluated on it."""

    stream_sections: ClassVar[tuple[str, ...]] = (
        "dynamics", "graph", "population", "shocks", "survey", "burn_in", "response")

    dynamics: DynamicsSpec
    graph: GraphSpec
    population: PopulationSpec = Field(default_factory=PopulationSpec)
    shocks: list[ShockSpec] = Field(default_factory=list)
    survey: SurveyDesign = Field(default_factory=SurveyDesign)
    response: AnyResponseSpec = Field(default_factory=GLMSpec,
                                      description="response mechanism, [response] kind = ...")
    burn_in: int = Field(50, ge=0, description="ticks run before the first survey wave")
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    learners: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-learner hyperparameters, [learners.<name>]")

    # --- derived --------------------------------------------------------------------------
    @property
    def family(self) -> str:
        return self.dynamics.family

    @property
    def n_ticks(self) -> int:
        """Ticks in a run: burn-in plus ``waves * every``."""
        return self.burn_in + self.survey.waves * self.survey.every

    def wave_tick(self, wave: int) -> int:
        """The tick after which wave ``wave`` is surveyed."""
        return self.burn_in + self.survey.wave_tick(wave)

    # --- cross-field checks (each problem one line; all raised together) ------------------
    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        problems = self._evaluation_checks() + self._size_checks()
        probe = self._probe() if not problems else None
        problems += self._shock_checks(probe)
        if probe is not None:
            try:
                feature_names(probe, self.survey)
            except ValueError as err:
                problems.append(str(err))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _evaluation_checks(self) -> list[str]:
        out = []
        ev, sv = self.evaluation, self.survey
        if ev.warmup >= sv.waves:
            out.append(f"evaluation.warmup = {ev.warmup} leaves no wave to score: the survey has "
                       f"{sv.waves} waves; lower warmup or raise survey.waves")
        if sv.wave_groups is not None and (len(sv.wave_groups) != sv.waves
                                           or not all(sv.wave_groups)):
            out.append(f"survey.wave_groups has {len(sv.wave_groups)} lists for {sv.waves} "
                       "waves (or an empty one); give one non-empty list of community ids per "
                       "wave")
        return out + self._learner_checks(sv.support, "survey.support")

    def _size_checks(self) -> list[str]:
        """Sizes within the stated limits (``limits.LIMITS``, memory), and every community
        able to hold ``support + query`` respondents (generated graphs)."""
        limited = self._limit_checks()
        if limited:
            return limited
        smallest = _smallest_group(self.graph)
        need = self.survey.support + self.survey.query
        if smallest is None or smallest >= need:
            return []
        return [f"survey.support + survey.query = {need} respondents per community, but the "
                f"smallest community of graph ({self.graph.kind}) has {smallest} agents; "
                f"lower the survey sizes or enlarge the communities"]

    def _limit_checks(self) -> list[str]:
        g, sv = self.graph, self.survey
        size = getattr(g, "group_size", None)
        agents = (getattr(g, "n", None) if size is None
                  else sum(size) if isinstance(size, list) else size * g.n_groups)
        degree = {"planted_partition": "mean_degree", "watts_strogatz": "k"}.get(g.kind)
        features = (len(self.population.traits) + sv.distractors + len(sv.binary_distractors))
        return limits.scenario_problems(
            agents=agents, groups=getattr(g, "n_groups", None), waves=sv.waves,
            features=features, respondents=sv.support + sv.query,
            mean_degree=getattr(g, degree, None) if degree else 2.0 * getattr(g, "m", 5),
            fields={"agents": f"graph ({g.kind}) agents", "groups": "graph.n_groups",
                    "waves": "survey.waves", "features": "survey features (traits + "
                    "distractors)"}) + [p for p in [limits.over(
                        "evaluation.seeds", self.evaluation.seeds, "seeds")] if p]

    def _shock_checks(self, probe: Society | None) -> list[str]:
        out = []
        first, last = self.burn_in + 1, self.n_ticks
        names = probe.parameter_names() if probe is not None else None
        for i, shock in enumerate(self.shocks):
            label = f"shocks[{i}] ({shock.name!r})"
            start, end = shock.ticks()
            if end > last:
                out.append(f"{label} is scheduled up to tick {end}, after the end of the run at "
                           f"tick {last} (burn_in {self.burn_in} + survey.waves "
                           f"{self.survey.waves} x survey.every {self.survey.every}); move it "
                           f"earlier or run longer")
            elif start < first and shock.kind != "regime":
                out.append(f"{label} fires at tick {start}, during the burn-in (ticks 1.."
                           f"{self.burn_in}), before the first survey wave; schedule it in "
                           f"{first}..{last}")
            if names is not None and shock.target not in names:
                close = difflib.get_close_matches(shock.target, names, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                out.append(f"shocks[{i}].target = {shock.target!r} is not a parameter of the "
                           f"{self.family} society; {hint}allowed: {', '.join(names)}")
        if probe is not None and not out:
            try:
                validate_shocks(self.shocks, probe, self.n_ticks)
            except ValueError as err:
                out.append(f"shocks: {err}")
        return out

    def _probe(self) -> Society | None:
        """A tiny society of this scenario's family, params and population on a graph with the
        same number of communities: checks shocks and survey features at load time without
        building the full graph. None when the number of communities is known only at build."""
        n_groups = getattr(self.graph, "n_groups", None)
        if n_groups is None:
            return None
        rng = np.random.default_rng(0)
        graph = planted_partition(n_groups, 4, 2.0, 0.5, rng)
        pop = make_population(graph.groups, n_groups, self.population, rng)
        return society_class(self.family)(graph, pop, params=self.dynamics.params, rng=rng,
                                          response=self.response)

    # --- running --------------------------------------------------------------------------
    def society(self, seed: int) -> Society:
        """A fresh society for ``seed``, ready to step (no burn-in run yet)."""
        return self.build_society(seed_streams(seed))

    def build_society(self, seeds: Mapping[str, np.random.SeedSequence]) -> Society:
        """Graph, population and society each from their own child seed (see ``seed_streams``)."""
        graph = self.graph.build(np.random.default_rng(seeds["graph"]))
        pop = make_population(graph.groups, graph.n_groups, self.population,
                              np.random.default_rng(seeds["population"]))
        shocks = [s.model_copy(deep=True) for s in self.shocks]
        cls = society_class(self.family)
        society = cls(graph, pop, params=self.dynamics.params, shocks=shocks,
                      rng=np.random.default_rng(seeds["society"]), response=self.response,
                      response_rng=np.random.default_rng(seeds["response"]))
        validate_shocks(shocks, society, self.n_ticks)
        return society

    def generate_stream(self, seed: int) -> TaskStream:
        """Run the society and survey it (see ``simlab.tasks.stream.generate_stream``)."""
        return generate_stream(self, seed)

    def code_digest(self) -> str:
        """The society package's source, plus a user family's own file."""
        return family_code_digest(self.family)

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | Path = "<dict>") -> Scenario:
        """Validate a plain dict (e.g. parsed TOML); errors become one ``ScenarioError``."""
        return _validate(dict(data), str(source), [(str(source), dict(data))])


def _smallest_group(graph: Any) -> int | None:
    """Size of the smallest community a generated graph spec will have (None if unknown)."""
    if graph.kind == "planted_partition":
        size = graph.group_size
        return int(min(size)) if isinstance(size, list) else int(size)
    if graph.kind in ("watts_strogatz", "barabasi_albert"):
        return int(graph.n) // int(graph.n_groups)
    return None


# --- loading ------------------------------------------------------------------------------------
def load_scenario(path: str | Path | Scenario | SurveyScenario) -> Scenario | SurveyScenario:
    """Read, merge (``extends``) and validate a scenario TOML file.

    ``path`` is a file, or a bare name such as ``"opinion_shift"`` looked up in ``./scenarios``
    and in the scenarios folder of the simlab checkout. A file with a ``[data]`` section is a
    real survey and loads as a :class:`~simlab.experiment.survey_scenario.SurveyScenario`
    (same duck-typed interface). An already loaded scenario is returned unchanged.
    """
    from simlab.experiment.survey_scenario import SurveyScenario, survey_from_chain

    if isinstance(path, (Scenario, SurveyScenario)):
        return path
    file = _resolve(path)
    chain = _read_chain(file, [])
    data: dict[str, Any] = {}
    for f, raw in reversed(chain):
        data = _merge(data, _files_relative_to(raw, f.parent))
    data.pop("extends", None)
    data["name"] = chain[0][1].get("name", file.stem)
    if "data" in data:
        return survey_from_chain(data, file, chain)
    scenario = _validate(data, str(file), [(str(f), raw) for f, raw in chain])
    scenario._source = file
    return scenario


def _files_relative_to(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A user graph's ``path``/``groups`` are relative to the file that names them."""
    graph = raw.get("graph")
    if not isinstance(graph, dict):
        return raw
    fixed = {k: str(folder / v) if k in ("path", "groups") and isinstance(v, str)
             and not Path(v).is_absolute() else v for k, v in graph.items()}
    return {**raw, "graph": fixed}


def scenario_dirs() -> list[Path]:
    """Where bare scenario names are looked up: ``./scenarios``, then the checkout's."""
    here = Path.cwd() / "scenarios"
    shipped = Path(__file__).resolve().parents[2] / "scenarios"
    return [here] + ([shipped] if shipped.resolve() != here.resolve() else [])


def list_scenarios(root: str | Path = "scenarios") -> list[tuple[str, Path, str]]:
    """``(name, path, description)`` of every scenario file in ``root`` (``_*.toml`` are bases).

    A file that fails to load is listed with its error as the description, so one broken file
    does not hide the others.
    """
    root = Path(root)
    if not root.is_dir() and not root.is_absolute() and str(root) == "scenarios":
        root = next((d for d in scenario_dirs() if d.is_dir()), root)
    out = []
    for file in sorted(root.glob("*.toml")):
        if file.name.startswith("_"):
            continue
        try:
            user_code = _user_code(file)
            if user_code:     # listing never runs user code; `simlab stream` validates it
                raw = _merged(file)
                out.append((str(raw.get("name", file.stem)), file,
                            f"{raw.get('description', '')} [not validated: runs user code "
                            f"{', '.join(user_code)}]".strip()))
                continue
            sc = load_scenario(file)
            out.append((sc.name, file, sc.description))
        except ScenarioError as err:
            out.append((file.stem, file, f"INVALID: {str(err).splitlines()[0]}"))
    return out


def _merged(file: Path) -> dict[str, Any]:
    """A scenario file merged with its ``extends`` chain, unvalidated."""
    data: dict[str, Any] = {}
    for _, raw in reversed(_read_chain(file.resolve(), [])):
        data = _merge(data, raw)
    return data


def _user_code(file: Path) -> list[str]:
    """The ``package.module:Class`` references (dynamics family, learners) of a scenario file:
    loading it imports and runs them, so such files must be trusted."""
    data = _merged(file)
    family = (data.get("dynamics") or {}).get("family", "")
    learners = (data.get("evaluation") or {}).get("learners", []) or []
    refs = [family] + list(learners) if isinstance(learners, list) else [family]
    return [r for r in refs if isinstance(r, str) and ":" in r and not r.startswith("cpd:")]


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    if p.is_file():
        return p.resolve()
    candidates = [p] if p.suffix else [p.with_suffix(".toml")]
    if not p.is_absolute() and len(p.parts) == 1:
        name = p.name if p.suffix else f"{p.name}.toml"
        candidates += [d / name for d in scenario_dirs()]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    folder = p.parent if p.parent != Path(".") and p.parent.is_dir() else next(
        (d for d in scenario_dirs() if d.is_dir()), None)
    found = sorted(f.stem for f in folder.glob("*.toml") if not f.name.startswith("_")) \
        if folder else []
    close = difflib.get_close_matches(p.stem, found, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    listing = f"scenarios in {folder}: {', '.join(found)}" if found else \
        f"no scenario files found in {', '.join(map(str, scenario_dirs()))}"
    raise ScenarioError(f"no scenario file {str(path)!r}; {hint}{listing}")


def _read_chain(file: Path, seen: list[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """The file and its ``extends`` ancestors, most derived first; cycles are an error."""
    if file in seen:
        cycle = " -> ".join(f.name for f in [*seen, file])
        raise ScenarioError(f"{seen[0]}: `extends` forms a cycle: {cycle}")
    try:
        with open(file, "rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{file}: not valid TOML: {err}") from err
    parent = raw.get("extends")
    if parent is None:
        return [(file, raw)]
    if not isinstance(parent, str):
        raise ScenarioError(f"{file}: extends = {parent!r} must be a file name, e.g. "
                            "extends = \"_base.toml\"")
    base = (file.parent / parent).resolve()
    if not base.is_file():
        found = sorted(f.name for f in file.parent.glob("*.toml"))
        raise ScenarioError(f"{file}: extends = {parent!r}: no such file {base}; files in "
                            f"{file.parent}: {', '.join(found)}")
    return [(file, raw)] + _read_chain(base, [*seen, file])


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge tables; arrays and values in ``over`` replace. A table whose ``kind`` or
    ``family`` differs from the base's replaces it whole (its fields belong to another type)."""
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and not _retyped(old, value):
            out[key] = _merge(old, value)
        else:
            out[key] = value
    return out


def _retyped(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return any(tag in new and tag in old and new[tag] != old[tag] for tag in ("kind", "family"))


# --- error messages -----------------------------------------------------------------------------
def _validate(data: dict[str, Any], source: str,
              chain: list[tuple[str, dict[str, Any]]], model: type[BaseModel] = Scenario
              ) -> Any:
    """``model.model_validate(data)``; every pydantic error becomes one ``ScenarioError``."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            keys, msg = _describe(e, data, chain, model)
            lines += [(keys, m) for m in msg.splitlines()]
        lines = list(dict.fromkeys(lines))
        if len(lines) == 1:
            raise ScenarioError(f"{_origin(lines[0][0], chain, source)}: {lines[0][1]}") from None
        body = "\n".join(f"  - {_origin(p, chain, source)}: {m}" for p, m in lines)
        raise ScenarioError(f"{source}: {len(lines)} problems:\n{body}") from None


def _describe(e: Mapping[str, Any], data: Any, chain: list[tuple[str, dict[str, Any]]],
              root: type[BaseModel] = Scenario) -> tuple[tuple[Any, ...], str]:
    """``(key path, message)`` for one pydantic error, tags of tagged unions dropped."""
    keys, parts, models = _walk(e["loc"], data, root)
    path = "".join(parts) or "(scenario)"
    kind, msg, value = e["type"], e["msg"], e.get("input")
    shown = _show(value)
    if kind == "extra_forbidden":
        allowed = sorted(models[-2].model_fields) if len(models) > 1 and models[-2] else []
        close = difflib.get_close_matches(str(keys[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        where = "".join(parts[:-1]) or "the top level"
        return keys, (f"{path} = {shown} is not a known field; {hint}"
                      f"fields of {where}: {', '.join(allowed)}")
    if kind == "missing":
        return keys, f"{path} is required"
    if kind == "union_tag_invalid":
        tag = e["ctx"]["discriminator"].strip("'")
        tags = [t.strip(" '") for t in e["ctx"]["expected_tags"].split(",")]
        close = difflib.get_close_matches(str(e["ctx"]["tag"]), tags, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return (*keys, tag), (f"{path}.{tag} = {e['ctx']['tag']!r} is unknown; {hint}"
                              f"choose one of: {', '.join(tags)}")
    if kind == "union_tag_not_found":
        tag = e["ctx"]["discriminator"].strip("'")
        return keys, f"{path} needs a `{tag}` field naming its type"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if not e["loc"]:
        return keys, msg
    return keys, f"{path} = {shown}: {msg}"


def _walk(loc: tuple[Any, ...], data: Any, root: type[BaseModel] = Scenario
          ) -> tuple[tuple[Any, ...], list[str], list[Any]]:
    """Follow ``loc`` through the input, skipping union tags; also track the model at each step.

    Returns the key path into the raw data, display parts (``survey``, ``.support``,
    ``[0]``), and the pydantic model class at each level (None where not a model).
    """
    keys: list[Any] = []
    parts: list[str] = []
    models: list[Any] = [root]
    node, tp = data, root
    for item in loc:
        union = _tagged_members(tp)
        if union is not None and isinstance(item, str) and item in union:
            tp = union[item]
            models[-1] = tp
            continue
        parent = node
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            parts.append(item if not parts else f".{item}")
            node = node.get(item) if isinstance(node, dict) else None
        keys.append(item)
        tp = _child_type(tp, item)
        if tp is DynamicsParams and isinstance(parent, dict):
            tp = _params_class(parent.get("family"))
        models.append(tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None)
    return tuple(keys), parts, models


def _params_class(family: Any) -> type[DynamicsParams]:
    try:
        return society_class(str(family)).Params
    except ValueError:
        return DynamicsParams


def _strip(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _tagged_members(tp: Any) -> dict[str, type[BaseModel]] | None:
    """tag value -> model class for a discriminated union type, else None."""
    tp = _strip(tp)
    if typing.get_origin(tp) not in (Union, types.UnionType):
        return None
    out = {}
    for member in typing.get_args(tp):
        member = _strip(member)
        if not (isinstance(member, type) and issubclass(member, BaseModel)):
            continue
        for name in ("kind", "family"):
            f = member.model_fields.get(name)
            if f is not None and typing.get_origin(f.annotation) is Literal:
                out.update({str(v): member for v in typing.get_args(f.annotation)})
    return out or None


def _child_type(tp: Any, item: Any) -> Any:
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        f = tp.model_fields.get(item) if isinstance(item, str) else None
        return f.annotation if f is not None else None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        return _child_type(non_none[0], item) if len(non_none) == 1 else None
    if origin in (list, tuple) and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    return None


def _origin(keys: tuple[Any, ...], chain: list[tuple[str, dict[str, Any]]], source: str) -> str:
    """The most derived file in the ``extends`` chain that sets the field at ``keys``."""
    for i in range(len(keys), 0, -1):
        for file, raw in chain:
            node: Any = raw
            for k in keys[:i]:
                if isinstance(node, dict) and k in node:
                    node = node[k]
                elif isinstance(node, list) and isinstance(k, int) and k < len(node):
                    node = node[k]
                else:
                    break
            else:
                return file
    return source


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = ["DEFAULT_SCENARIO", "BudgetSpec", "DynamicsSpec", "EpisodesSpec", "EvaluationSpec",
           "Scenario", "ScenarioBase", "ScenarioError", "TuningSpec", "list_scenarios",
           "load_scenario", "scenario_dirs"]
