"""Scenario files: the TOML schema of a simulated scenario and loading (with ``extends``).

A scenario names one dynamics family with its parameters, the social graph, the population,
the shocks, the survey design, the burn-in, and how learners are evaluated on the resulting
stream. Everything is a pydantic model with ``extra="forbid"``, so a misspelled field is an
error, never silently ignored. ``load_scenario`` turns every problem in a file into ONE
``ScenarioError`` (a ``ValueError``) naming the file, the field path, the bad value and what is
allowed, with a did-you-mean for misspellings (rendered by ``experiment.errors_text``). The
sections simulated and survey scenarios share live in ``experiment.scenario_base``.
"""
from __future__ import annotations

import difflib
import hashlib
import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, SerializeAsAny, ValidationInfo, field_validator, model_validator

from simlab.errors import ScenarioError
from simlab.experiment import limits
from simlab.experiment.errors_text import validate_model
from simlab.experiment.scenario_base import (BudgetSpec, EpisodeMode, EpisodesSpec,
                                             EvaluationSpec, ScenarioBase, TuningSpec, Section,
                                             merge_tables)
from simlab.experiment.survey_scenario import SurveyScenario, survey_from_chain
from simlab.society import FAMILIES, society_class
from simlab.society import run as society_run
from simlab.society.base import DynamicsParams, Society
from simlab.society.graphs import GraphSpec, planted_partition
from simlab.society.population import PopulationSpec, make_population
from simlab.society.response import AnyResponseSpec, GLMSpec
from simlab.society.shocks import ShockSpec, validate_shocks
from simlab.society.survey import SurveyDesign, feature_names
from simlab.tasks.task import TaskStream

DEFAULT_SCENARIO = "opinion_shift"


# --- dynamics ----------------------------------------------------------------------------------
class DynamicsSpec(Section):
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
            raise ScenarioError(f"unknown dynamics family; {hint}choose one of "
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


#: the methods of ``Scenario`` that shape its stream (their source is in its cache key)
STREAM_METHODS: tuple[str, ...] = ("society_spec", "generate_stream")


class Scenario(ScenarioBase):
    """One simulated scenario: society, shocks, survey, and how learners are evaluated on it."""

    has_oracle: ClassVar[bool] = True

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
            raise ScenarioError("\n".join(problems))
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
            features=features, respondents=sv.support + sv.query + sv.population_cells,
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

    # --- running (``simlab.society.run`` does it, from plain specs) -----------------------
    def society_spec(self) -> society_run.SocietySpec:
        """What shapes this scenario's stream, as the society layer's own specs."""
        return society_run.SocietySpec(
            name=self.name, family=self.family, params=self.dynamics.params, graph=self.graph,
            population=self.population, shocks=tuple(self.shocks), survey=self.survey,
            response=self.response, burn_in=self.burn_in, fingerprint=self.fingerprint())

    def society(self, seed: int) -> Society:
        """A fresh society for ``seed``, ready to step (no burn-in run yet)."""
        return self.build_society(society_run.seed_streams(seed))

    def build_society(self, seeds: Mapping[str, np.random.SeedSequence]) -> Society:
        """Graph, population and society each from their own child seed (``seed_streams``)."""
        return society_run.build_society(self.society_spec(), seeds)

    def generate_stream(self, seed: int) -> TaskStream:
        """Run the society and survey it (``simlab.society.run.generate_stream``)."""
        return society_run.generate_stream(self.society_spec(), seed)

    def code_digest(self) -> str:
        """The society package, the stream format and a user family's own file, plus this
        class's own stream-shaping methods (``society_spec``, ``generate_stream``)."""
        h = hashlib.sha256(society_run.family_code_digest(self.family).encode())
        for method in _STREAM_CODE:
            h.update(society_run.source_text(method).encode())
        return h.hexdigest()

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | Path = "<dict>") -> Scenario:
        """Validate a plain dict (e.g. parsed TOML); errors become one ``ScenarioError``."""
        return validate_model(dict(data), str(source), [(str(source), dict(data))], cls)


#: the defining functions of ``STREAM_METHODS`` (their source as written in this file, not
#: whatever a test monkeypatches onto the class)
_STREAM_CODE = tuple(vars(Scenario)[m] for m in STREAM_METHODS)


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
    if isinstance(path, (Scenario, SurveyScenario)):
        return path
    file = _resolve(path)
    chain = _read_chain(file, [])
    data: dict[str, Any] = {}
    for f, raw in reversed(chain):
        data = merge_tables(data, _files_relative_to(raw, f.parent))
    data.pop("extends", None)
    data["name"] = chain[0][1].get("name", file.stem)
    _drop_inherited_tables(data, chain)
    if "data" in data:
        return survey_from_chain(data, file, chain)
    scenario = validate_model(data, str(file), [(str(f), raw) for f, raw in chain], Scenario)
    scenario._source = file
    return scenario


class ScenarioNote(UserWarning):
    """Something a scenario file does that simlab adjusted (shown, never an error)."""


def _drop_inherited_tables(data: dict[str, Any], chain: list[tuple[Path, dict[str, Any]]]
                           ) -> None:
    """Per-learner tables (``[learners.X]``, ``[evaluation.tuning.space.X]``) inherited from a
    base file for a learner the scenario does not list are dropped with a note, so a scenario
    may set its own learner list; such a table in the file itself stays an error (a typo)."""
    ev = data.get("evaluation")
    listed = ev.get("learners") if isinstance(ev, dict) else None
    if not isinstance(listed, list):
        return
    own = chain[0][1]
    for path in (("learners",), ("evaluation", "tuning", "space")):
        parent, mine = data, own
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
            mine = mine.get(key) if isinstance(mine, dict) else None
        tables = parent.get(path[-1]) if isinstance(parent, dict) else None
        if not isinstance(tables, dict):
            continue
        mine = (mine or {}).get(path[-1]) if isinstance(mine, dict) else None
        dropped = [n for n in tables if n not in listed and n not in (mine or {})]
        if dropped:
            parent[path[-1]] = {n: t for n, t in tables.items() if n not in dropped}
            where = ".".join(path)
            names = ", ".join(f"[{where}.{n}]" for n in dropped)
            warnings.warn(f"{chain[0][0]}: ignoring the inherited table(s) {names}: not in "
                          f"evaluation.learners = {listed}", ScenarioNote, stacklevel=3)


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
        data = merge_tables(data, raw)
    return data


def _user_code(file: Path) -> list[str]:
    """The ``package.module:Class`` references (dynamics family, learners) of a scenario file:
    loading it imports and runs them, so such files must be trusted."""
    data = _merged(file)
    family = (data.get("dynamics") or {}).get("family", "")
    learners = (data.get("evaluation") or {}).get("learners", []) or []
    refs = [family] + list(learners) if isinstance(learners, list) else [family]
    refs = [r.removeprefix("cpd:") for r in refs if isinstance(r, str)]   # cpd:pkg.mod:Cls too
    return [r for r in refs if ":" in r]


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
    except UnicodeDecodeError as err:
        raise ScenarioError(f"{file}: not UTF-8 text (byte {err.object[err.start]:#x} at "
                            f"offset {err.start}); save the file as UTF-8") from err
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


__all__ = ["DEFAULT_SCENARIO", "BudgetSpec", "DynamicsSpec", "EpisodeMode", "EpisodesSpec",
           "EvaluationSpec",
           "Scenario", "ScenarioBase", "ScenarioError", "TuningSpec", "list_scenarios",
           "load_scenario", "scenario_dirs"]
