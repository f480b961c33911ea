"""Maps: where on a society's knobs meta-learning beats the best baseline, ties or loses.

A map file names a base scenario and one or two axes (a scenario field and its levels, or
``field = "scenario"`` with scenario files as levels). Every grid point is a scenario derived
with ``Scenario.override`` and named ``<map>@<field>=<level>[;<field>=<level>]``, so the point
is recoverable from the store alone (the report reads the names back); the cells (point x
learner x seed) run through ``run_sweep`` unchanged, so the process pool, Dask, the resumable
store and tuning per point all work as for a sweep. Every problem of the file (an unknown
field, a level of the wrong type, a level that makes a point invalid, a map over the limits) is
one ``ScenarioError`` naming the field and the fix, raised before anything runs.

Adaptive refinement (``refine = N``): after the grid has run, a numeric axis gets the midpoint
of two neighbouring levels whose verdicts differ, point by point, up to N extra points in all
(the caller passes the verdicts, computed in ``report.map``; see :func:`refine_points`).
"""
from __future__ import annotations

import difflib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from simlab import DEFAULT_DB
from simlab.errors import ScenarioError
from simlab.experiment import limits
from simlab.experiment.config import load_scenario
from simlab.experiment.errors_text import load_toml_model
from simlab.experiment.scenario_base import merge_tables
from simlab.experiment.sweep import LearnerSpec, SweepSummary, run_sweep
from simlab.schema import StrictModel, check_seeds

if TYPE_CHECKING:  # pragma: no cover
    from simlab.experiment.sweep import AnyScenario

#: the axis whose levels are scenario files (the other axes apply to each of them)
SCENARIO_AXIS = "scenario"
#: fields a map may not put on an axis: the map itself chooses them
_NOT_AXES = {"name": "the map names every point itself",
             "description": "it does not change a cell",
             "evaluation.seeds": "use the map's `seeds`",
             "evaluation.learners": "use the map's `learners`"}
POINT_SEP, AXIS_SEP = "@", ";"


# --- the file -----------------------------------------------------------------------------------
class AxisSpec(StrictModel):
    """One axis: a dotted scenario field (``graph.n_groups``) or ``scenario``, and its levels."""

    field: str = Field(min_length=1)
    levels: list[Any] = Field(min_length=1)


class RefineSpec(StrictModel):
    """Adaptive refinement: at most ``points`` extra points, midpoints of numeric neighbours
    whose verdicts differ, in at most ``rounds`` rounds."""

    points: int = Field(ge=1)
    rounds: int = Field(2, ge=1)


class MapSpec(StrictModel):
    """The ``[map]`` table (paths relative to the map file; db and report to the working
    directory)::

        [map]
        scenario = "../scenarios/response_threshold.toml"   # the base (optional with a
        axes = [{field = "graph.n_groups", levels = [10, 20, 40]},   # scenario axis)
                {field = "scenario", levels = ["../scenarios/a.toml", "../scenarios/b.toml"]}]
        learners = ["partial_pooling", "protonet"]
        seeds = 6
        db = "results/map.db"
        report = "reports/map"
        executor = "process"      # inline | process | dask
        jobs = 2
        refine = {points = 4}     # optional: adaptive refinement

        [map.set]                 # optional: the same value at every point
        "evaluation.budget.iterations" = 20
    """

    name: str | None = None
    scenario: str | None = None
    axes: list[AxisSpec] = Field(min_length=1, max_length=2)
    learners: list[str] = Field(min_length=2)
    seeds: int | list[int] = 6
    #: fields set at every point (dotted name -> value), e.g. to make cells cheaper
    set: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, dict[str, Any]] = Field(default_factory=dict)
    db: str | None = None
    report: str | None = None
    executor: str | None = None
    jobs: int | None = Field(None, ge=1)
    scheduler: str | None = None
    refine: RefineSpec | None = None


class MapFile(StrictModel):
    map: MapSpec


# --- a planned map ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Axis:
    """A validated axis: its field, the level values and their labels (as in point names)."""

    field: str
    levels: tuple[Any, ...]
    labels: tuple[str, ...]

    @property
    def numeric(self) -> bool:
        return self.field != SCENARIO_AXIS and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.levels)


@dataclass
class MapPlan:
    """A loaded map: its points (scenarios, in grid order) and how to run them."""

    name: str
    axes: list[Axis]
    points: list[AnyScenario]
    coords: list[tuple[str, ...]]        # each point's level labels, one per axis
    learners: list[LearnerSpec]
    seeds: list[int]
    db: Path
    report: Path
    executor: str | None = None
    jobs: int | None = None
    scheduler: str | None = None
    refine: RefineSpec | None = None
    source: Path | None = None
    #: what derives a point: base scenarios by level label (scenario axis) or one under ""
    bases: dict[str, AnyScenario] = field(default_factory=dict)
    #: fields set at every point before the axes' (``[map.set]``)
    fixed: dict[str, Any] = field(default_factory=dict)

    @property
    def n_cells(self) -> int:
        return len(self.points) * len(self.learners) * len(self.seeds)

    def point_names(self) -> list[str]:
        return [p.name for p in self.points]


def level_label(value: Any) -> str:
    """How a level is written in a point name (compact JSON; a scenario level by its stem)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def point_name(map_name: str, fields: Sequence[str], labels: Sequence[str]) -> str:
    """``<map>@<field>=<label>[;<field>=<label>]``: the point's scenario name in the store."""
    return map_name + POINT_SEP + AXIS_SEP.join(f"{f}={lab}" for f, lab in zip(fields, labels))


def parse_point(name: str) -> tuple[str, list[tuple[str, str]]] | None:
    """(map name, [(field, level label), ...]) of a point name; None when not a point."""
    if POINT_SEP not in name:
        return None
    head, _, rest = name.partition(POINT_SEP)
    pairs = []
    for part in rest.split(AXIS_SEP):
        f, eq, lab = part.partition("=")
        if not eq or not f:
            return None
        pairs.append((f, lab))
    return head, pairs


def level_value(label: str) -> Any:
    """The level a label stands for (JSON where it parses, else the text)."""
    try:
        return json.loads(label)
    except json.JSONDecodeError:
        return label


def _problem(where: str, text: str) -> ScenarioError:
    return ScenarioError(f"{where}: {text}")


def _paths(data: Any, prefix: str = "") -> dict[str, Any]:
    """Every dotted field path of a dumped scenario and its value (lists by index too)."""
    out: dict[str, Any] = {}
    items = (data.items() if isinstance(data, dict)
             else enumerate(data) if isinstance(data, list) else ())
    for k, v in items:
        path = f"{prefix}{k}"
        out[path] = v
        if isinstance(v, (dict, list)):
            out.update(_paths(v, path + "."))
    return out


def _type_name(v: Any) -> str:
    return {bool: "true/false", int: "a whole number", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(v), type(v).__name__)


def _same_kind(level: Any, base: Any) -> bool:
    """A level may replace ``base``: same JSON type (an int where a float is, too)."""
    if base is None:
        return True
    if isinstance(base, bool) or isinstance(level, bool):
        return isinstance(base, bool) and isinstance(level, bool)
    if isinstance(base, float):
        return isinstance(level, (int, float))
    if isinstance(base, int):
        return isinstance(level, int) or (isinstance(level, float) and level.is_integer())
    return isinstance(level, type(base))


def check_field(scenario: AnyScenario, name: str, levels: Sequence[Any], where: str,
                single: bool = False) -> None:
    """An axis field must exist in ``scenario`` and every level must have its type
    (``single``: one value of ``[map.set]``, not an axis's levels)."""
    if name in _NOT_AXES:
        raise _problem(where, f"field = {name!r} cannot be an axis ({_NOT_AXES[name]})")
    paths = _paths(scenario.model_dump(mode="json"))
    if name not in paths:
        close = difflib.get_close_matches(name, [p for p in paths if p not in _NOT_AXES], n=3)
        hint = (f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else
                "; name a field of the scenario file, e.g. 'graph.n_groups'")
        raise _problem(where, f"field = {name!r} is not a field of scenario "
                       f"{scenario.name!r}{hint} (or 'scenario' for an axis of scenario files)")
    base = paths[name]
    for i, level in enumerate(levels):
        if not _same_kind(level, base):
            what = "the value" if single else f"levels[{i}] ="
            raise _problem(where, f"{what} {level!r} is {_type_name(level)}, but "
                           f"{name} is {_type_name(base)} (the base scenario has {base!r}); "
                           f"give levels like {base!r}")


def _changes(name: str, value: Any, dumped: Mapping[str, Any]) -> dict[str, Any]:
    """The ``override`` table setting dotted field ``name`` to ``value``: nested tables (so a
    changed ``kind`` replaces its table whole), or, under a list index, the whole top-level
    value with that element changed."""
    parts = name.split(".")
    if any(p.isdigit() for p in parts):
        top = json.loads(json.dumps(dumped[parts[0]]))
        node: Any = top
        for p in parts[1:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        return {parts[0]: top}
    out: dict[str, Any] = {}
    node = out
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def derive_point(base: AnyScenario, name: str, settings: Sequence[tuple[str, Any]],
                 where: str) -> AnyScenario:
    """``base`` with each (field, value) set and renamed ``name``; an invalid point is one
    ``ScenarioError`` saying which point and why."""
    dumped = base.model_dump(mode="json")
    changes: dict[str, Any] = {"name": name}
    for f, v in settings:
        changes = merge_tables(changes, _changes(f, v, dumped))
    try:
        return base.override(changes)
    except (ScenarioError, ValueError) as err:
        said = ", ".join(f"{f} = {v!r}" for f, v in settings)
        reason = str(err).strip().splitlines()
        detail = "; ".join(ln.strip() for ln in reason[1:4]) or reason[0]
        raise _problem(where, f"point {name!r} ({said}) is not a valid scenario: {detail}. "
                       "Change or drop that level") from None


def _resolve_ref(ref: str, here: Path) -> Path | str:
    """A scenario path relative to the map file; a bare name (no folder, no ``.toml``) as
    given, for ``load_scenario`` to look up in ``scenarios/``."""
    if "/" in ref or ref.endswith(".toml"):
        return here / ref
    local = here / f"{ref}.toml"
    return local if local.is_file() else ref


def _load(ref: str, here: Path, where: str) -> AnyScenario:
    target = _resolve_ref(ref, here)
    if isinstance(target, Path) and not target.is_file():
        raise _problem(where, f"no scenario file {str(target)!r} ({ref!r} relative to the map "
                       "file); give a path relative to the map file or a name from "
                       "`simlab list scenarios`")
    try:
        return load_scenario(target)
    except (FileNotFoundError, ValueError) as err:
        raise _problem(where, str(err)) from None


def load_map(path: str | Path) -> MapPlan:
    """Read and validate a map file; every point is built (and so validated) here."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"no map file {str(path)!r}; give the path of a map TOML file "
                            "with a [map] table (see simlab.experiment.map.MapSpec)")
    spec = load_toml_model(path, MapFile,
                           f"fields of [map]: {', '.join(MapSpec.model_fields)}").map
    return plan_map(spec, path)


def plan_map(spec: MapSpec, path: Path | None = None, name: str | None = None) -> MapPlan:
    """Every point of ``spec`` as a validated scenario, in grid order (the first axis
    slowest)."""
    here = path.parent if path else Path.cwd()
    src = str(path or "map")
    map_name = name or spec.name or (path.stem if path else "map")
    if POINT_SEP in map_name or AXIS_SEP in map_name:
        raise _problem(f"{src}: map.name", f"{map_name!r} may not contain "
                       f"{POINT_SEP!r} or {AXIS_SEP!r}; rename the map")
    fields = [a.field for a in spec.axes]
    if len(set(fields)) != len(fields):
        raise _problem(f"{src}: map.axes", f"field {fields[0]!r} is on two axes; give each "
                       "axis its own field")
    seeds = _seeds(spec, src)
    learners = _learners(spec, src)
    _check_limits(spec, len(seeds), len(learners), src)
    bases = _bases(spec, here, src)
    on_axes = set(fields) & set(spec.set)
    if on_axes:
        raise _problem(f"{src}: map.set", f"{sorted(on_axes)[0]!r} is also an axis; keep it "
                       "in one place")
    for key, value in spec.set.items():
        for b in bases.values():
            check_field(b, key, [value], f"{src}: map.set.{key}", single=True)
    axes = []
    for i, ax in enumerate(spec.axes):
        where = f"{src}: map.axes[{i}]"
        if ax.field == SCENARIO_AXIS:
            labels = tuple(bases)
        else:
            for b in bases.values():
                check_field(b, ax.field, ax.levels, where)
            labels = tuple(level_label(v) for v in ax.levels)
        if len(set(labels)) != len(labels):
            dup = next(lab for lab in labels if labels.count(lab) > 1)
            raise _problem(where, f"level {dup!r} is listed twice; list each level once")
        bad = [lab for lab in labels if AXIS_SEP in lab or POINT_SEP in lab]
        if bad:
            raise _problem(where, f"level {bad[0]!r} contains {AXIS_SEP!r} or {POINT_SEP!r}, "
                           "which point names reserve; rename it")
        axes.append(Axis(ax.field, tuple(ax.levels), labels))
    plan = MapPlan(map_name, axes, [], [], learners, seeds,
                   Path(spec.db) if spec.db else Path(DEFAULT_DB),
                   Path(spec.report) if spec.report else Path("reports") / map_name,
                   spec.executor, spec.jobs, spec.scheduler, spec.refine, path, bases,
                   dict(spec.set))
    for combo in itertools.product(*(range(len(a.levels)) for a in axes)):
        add_point(plan, [(a, a.levels[i], a.labels[i]) for a, i in zip(axes, combo)],
                  f"{src}: map.axes")
    return plan


def add_point(plan: MapPlan, coord: Sequence[tuple[Axis, Any, str]], where: str
              ) -> AnyScenario:
    """Build one point (axis, value, label per axis) into ``plan``; returns it."""
    fields = [a.field for a, _, _ in coord]
    labels = tuple(lab for _, _, lab in coord)
    base_key = next((lab for a, _, lab in coord if a.field == SCENARIO_AXIS), "")
    settings = [*plan.fixed.items(),
                *((a.field, v) for a, v, _ in coord if a.field != SCENARIO_AXIS)]
    point = derive_point(plan.bases[base_key], point_name(plan.name, fields, labels), settings,
                         where)
    plan.points.append(point)
    plan.coords.append(labels)
    return point


def _bases(spec: MapSpec, here: Path, src: str) -> dict[str, AnyScenario]:
    """The scenarios points derive from: one per level of a scenario axis, else the base."""
    axis = next((a for a in spec.axes if a.field == SCENARIO_AXIS), None)
    if axis is None:
        if spec.scenario is None:
            raise _problem(f"{src}: map.scenario", "missing; name the base scenario file, "
                           "or put field = \"scenario\" on an axis")
        return {"": _load(spec.scenario, here, f"{src}: map.scenario")}
    if spec.scenario is not None:
        raise _problem(f"{src}: map.scenario", "is given and an axis has field = "
                       "\"scenario\"; keep one (the axis's levels are the base scenarios)")
    out: dict[str, AnyScenario] = {}
    for i, ref in enumerate(axis.levels):
        where = f"{src}: map.axes (scenario levels[{i}])"
        if not isinstance(ref, str):
            raise _problem(where, f"{ref!r} is not a scenario file path or name; give "
                           "strings like \"../scenarios/response_threshold.toml\"")
        label = Path(ref).stem
        if label in out:
            raise _problem(where, f"two levels are named {label!r}; list each scenario once")
        out[label] = _load(ref, here, where)
    return out


def _seeds(spec: MapSpec, src: str) -> list[int]:
    n = limits.count(spec.seeds) if not isinstance(spec.seeds, bool) else 0
    problem = limits.over("map.seeds", n, "seeds")
    if problem:
        raise _problem(src, problem)
    try:
        return [int(s) for s in check_seeds(spec.seeds, "map.seeds")]
    except ValueError as err:
        raise _problem(src, str(err)) from None


def _learners(spec: MapSpec, src: str) -> list[LearnerSpec]:
    from simlab.learners.registry import learner_class
    from simlab.learners.roles import baseline_names, is_baseline, is_method

    unknown = sorted(set(spec.hyperparameters) - set(spec.learners))
    if unknown:
        raise _problem(f"{src}: map.hyperparameters.{unknown[0]}",
                       f"not among map.learners = {spec.learners}; add it or drop the table")
    try:                      # each learner's declared role (references are never compared)
        roles = [learner_class(n).role for n in spec.learners]
    except ValueError as err:
        raise _problem(f"{src}: map.learners", str(err)) from None
    if not any(map(is_method, roles)) or not any(map(is_baseline, roles)):
        raise _problem(f"{src}: map.learners", f"{spec.learners} needs at least one "
                       f"meta-learner and one baseline ({', '.join(baseline_names())}), since "
                       "each point compares the best of each")
    return [LearnerSpec(n, spec.hyperparameters.get(n, {})) for n in spec.learners]


def _check_limits(spec: MapSpec, n_seeds: int, n_learners: int, src: str) -> None:
    n_points = math.prod(len(a.levels) for a in spec.axes) + (
        spec.refine.points if spec.refine else 0)
    cells = n_points * n_learners * n_seeds
    problem = limits.over("map points x learners x seeds", cells, "cells")
    if problem:
        raise _problem(src, f"{problem} ({n_points} points x {n_learners} learners x "
                       f"{n_seeds} seeds); use fewer levels or seeds")


# --- running ------------------------------------------------------------------------------------
def run_map(plan: MapPlan, *, executor: str | None = None, jobs: int | None = None,
            scheduler: str | None = None, quiet: bool = False, device: str = "cpu",
            db: str | Path | None = None) -> SweepSummary:
    """Run every cell of the map not yet in its store (``run_sweep``: resumable, any
    executor); returns the sweep's counts."""
    return run_sweep(plan.points, plan.learners, plan.seeds, db or plan.db,
                     executor=executor or plan.executor or "process",
                     jobs=jobs or plan.jobs, quiet=quiet,
                     scheduler=scheduler or plan.scheduler, device=device)


def refine_points(plan: MapPlan, verdicts: Mapping[tuple[str, ...], str], budget: int
                  ) -> list[AnyScenario]:
    """Add (to ``plan``) up to ``budget`` points: on each numeric axis, the midpoint of two
    neighbouring levels whose verdicts (by coordinate labels) differ, the other coordinates
    held. Integer axes get integer midpoints; a midpoint equal to a level is skipped."""
    new: list[AnyScenario] = []
    have = set(plan.coords)
    for k, axis in enumerate(plan.axes):
        if not axis.numeric or budget - len(new) <= 0:
            continue
        values = sorted({level_value(c[k]) for c in plan.coords})
        others = sorted({c[:k] + c[k + 1:] for c in plan.coords})
        for rest in others:
            for lo, hi in zip(values, values[1:]):
                a = _coord(rest, k, level_label(lo))
                b = _coord(rest, k, level_label(hi))
                va, vb = verdicts.get(a), verdicts.get(b)
                if va is None or vb is None or va == vb:
                    continue
                mid: Any = (lo + hi) / 2
                if all(isinstance(v, int) for v in (lo, hi)):
                    mid = (lo + hi) // 2
                label = level_label(mid)
                coord = _coord(rest, k, label)
                if mid in (lo, hi) or coord in have or len(new) >= budget:
                    continue
                setting = [(ax, mid if j == k else _level_of(ax, lab), lab)
                           for j, (ax, lab) in enumerate(zip(plan.axes, coord))]
                new.append(add_point(plan, setting, f"{plan.source or 'map'}: refine"))
                have.add(coord)
    return new


def _coord(rest: tuple[str, ...], k: int, label: str) -> tuple[str, ...]:
    return rest[:k] + (label,) + rest[k:]


def _level_of(axis: Axis, label: str) -> Any:
    """The level value of ``label`` on ``axis`` (a scenario level is its label)."""
    if axis.field == SCENARIO_AXIS:
        return label
    return axis.levels[axis.labels.index(label)] if label in axis.labels else level_value(label)


__all__ = ["Axis", "MapPlan", "MapSpec", "SCENARIO_AXIS", "add_point", "check_field",
           "level_label", "level_value", "load_map", "parse_point", "plan_map",
           "point_name", "refine_points", "run_map"]
