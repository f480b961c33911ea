"""Run a society and survey it: seeding, building, the burn-in and the waves, shift events.

A stream is a pure function of (plain specs, seed): every random draw comes from one
``np.random.SeedSequence(seed)`` spawned into named children (graph, population, society,
survey, ...), so the same pair gives byte-identical arrays on the same machine, whoever runs it.
The inputs are the society layer's own specs (:class:`SocietySpec`), not an experiment
``Scenario``: a scenario hands over ``Scenario.society_spec()``, so this layer never imports
the one above it. :func:`code_digest` hashes the source of everything here that shapes a
stream (part of the stream cache key in ``simlab.tasks.stream``).
"""
from __future__ import annotations

import hashlib
import inspect
import linecache
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from simlab.schema import check_seed
from simlab.society import society_class
from simlab.society.base import DynamicsParams, Society
from simlab.society.diagnostics.ceiling import CeilingEstimator
from simlab.society.diagnostics.reporters import Reporters
from simlab.society.graphs import GraphSpec
from simlab.society.population import PopulationSpec, make_population
from simlab.society.response import AnyResponseSpec, GLMSpec
from simlab.society.shocks import ShockSpec, validate_shocks
from simlab.society.survey import SurveyDesign, feature_names, sample_wave
from simlab.tasks.task import ShiftEvent, Task, TaskStream

SEED_STREAMS: tuple[str, ...] = ("graph", "population", "society", "survey", "response",
                                  "ceiling", "cells")
"""Appended names keep the earlier children's draws (``spawn`` numbers children in order)."""


@dataclass(frozen=True)
class SocietySpec:
    """Everything that shapes a simulated stream, as the society layer's own specs."""

    name: str
    family: str
    params: DynamicsParams
    graph: GraphSpec
    population: PopulationSpec = field(default_factory=PopulationSpec)
    shocks: Sequence[ShockSpec] = ()
    survey: SurveyDesign = field(default_factory=SurveyDesign)
    response: AnyResponseSpec = field(default_factory=GLMSpec)
    burn_in: int = 50
    #: the identity of the config it came from, recorded in the stream's metadata
    fingerprint: str = ""

    @property
    def n_ticks(self) -> int:
        """Ticks in a run: burn-in plus ``waves * every``."""
        return self.burn_in + self.survey.waves * self.survey.every


class HasSocietySpec(Protocol):
    """Anything that can describe its society as a :class:`SocietySpec` (a ``Scenario``)."""

    def society_spec(self) -> SocietySpec: ...


def as_spec(spec: SocietySpec | HasSocietySpec) -> SocietySpec:
    return spec if isinstance(spec, SocietySpec) else spec.society_spec()


# --- seeds ------------------------------------------------------------------------------------
def seed_streams(seed: int) -> dict[str, np.random.SeedSequence]:
    """Independent child seeds, one per consumer of randomness, from one root seed.

    Spawning (rather than ``seed + 1`` etc.) gives statistically independent streams and
    keeps each consumer's draws unchanged when another consumer draws more or fewer numbers.
    """
    children = np.random.SeedSequence(check_seed(seed)).spawn(len(SEED_STREAMS))
    return dict(zip(SEED_STREAMS, children))


# --- building and running ---------------------------------------------------------------------
def build_society(spec: SocietySpec | HasSocietySpec,
                  seeds: Mapping[str, np.random.SeedSequence]) -> Society:
    """Graph, population and society each from their own child seed (see ``seed_streams``)."""
    spec = as_spec(spec)
    graph = spec.graph.build(np.random.default_rng(seeds["graph"]))
    pop = make_population(graph.groups, graph.n_groups, spec.population,
                          np.random.default_rng(seeds["population"]))
    shocks = [s.model_copy(deep=True) for s in spec.shocks]
    cls = society_class(spec.family)
    society = cls(graph, pop, params=spec.params, shocks=shocks,
                  rng=np.random.default_rng(seeds["society"]), response=spec.response,
                  response_rng=np.random.default_rng(seeds["response"]))
    validate_shocks(shocks, society, spec.n_ticks)
    return society


def generate_stream(spec: SocietySpec | HasSocietySpec, seed: int) -> TaskStream:
    """Run the society and survey it: burn-in, then one wave every ``every`` ticks.

    Each fired shock becomes a ``ShiftEvent`` whose ``wave`` is the first wave surveyed at or
    after the tick it fired (wave w is surveyed after tick ``burn_in + (w + 1) * every``; a
    shock fires at the start of its tick, so that tick's wave already sees it).
    """
    spec = as_spec(spec)
    seeds = seed_streams(seed)
    society = build_society(spec, seeds)
    design = spec.survey
    survey_rng = np.random.default_rng(seeds["survey"])
    ceiling = CeilingEstimator() if design.ceiling else None
    ceiling_rng = np.random.default_rng(seeds["ceiling"])
    cells_rng = np.random.default_rng(seeds["cells"])
    reporters = Reporters(society)
    for _ in range(spec.burn_in):
        society.step()
    reporters.collect()
    waves: list[list[Task]] = []
    for w in range(design.waves):
        for _ in range(design.every):
            society.step()
            reporters.collect()
        tasks = list(sample_wave(society, design, w, survey_rng, ceiling, ceiling_rng,
                                 cells_rng))
        if design.wave_groups is not None:      # a survey design that skips some groups
            tasks = [t for t in tasks if t.info["group"] in set(design.wave_groups[w])]
        waves.append(tasks)
    shifts = shift_events(society.events, spec.burn_in, design.every, design.waves)
    shifted = {s.wave for s in shifts}
    for wave in waves:
        for task in wave:
            task.info.update(scenario=spec.name, seed=int(seed),
                             shift=task.info.get("wave") in shifted)
    meta = {"scenario": spec.name, "seed": int(seed), "family": society.family,
            "target": society.target, "n_classes": int(society.n_classes),
            "feature_names": feature_names(society, design), "fingerprint": spec.fingerprint,
            "n_agents": int(society.n_agents), "n_groups": int(society.social.n_groups),
            "burn_in": int(spec.burn_in), "every": int(design.every),
            "response": society.response_spec.kind, "reporters": reporters.table()}
    prior = society.response.prior()
    if prior is not None:     # the task prior a reference learner may know (learners/floor.py)
        meta["response_prior"] = prior | {"noise_sd": float(design.noise_sd)}
    return TaskStream(waves=waves, shifts=shifts, meta=meta)


def shift_events(events: Iterable[tuple[int, Any, float]], burn_in: int, every: int,
                 n_waves: int) -> list[ShiftEvent]:
    """Turn a society's ``(tick, shock, size)`` records into ``ShiftEvent``s with wave indices.

    Events during the burn-in (a regime cycling from tick 1) precede every wave, so they are
    part of the initial conditions, not shifts a learner could observe.
    """
    out = []
    for tick, shock, size in events:
        if tick <= burn_in:
            continue
        wave = max(0, -(-(int(tick) - burn_in) // every) - 1)   # ceil((tick - burn_in)/every) - 1
        out.append(ShiftEvent(wave=min(wave, n_waves - 1), tick=int(tick), kind=str(shock.kind),
                              name=str(shock.name), target=str(shock.target), size=float(size)))
    return out


# --- the code that shapes a stream ------------------------------------------------------------
def source_text(obj: Path | Callable[..., Any] | type) -> str:
    """The current source of a file, function or class, read through ``linecache`` (what
    ``inspect`` reads too), so the digest sees exactly the code Python reports."""
    if isinstance(obj, Path):
        linecache.checkcache(str(obj))
        return "".join(linecache.getlines(str(obj)))
    return inspect.getsource(obj)


def stream_code_files(extra: Sequence[str] = ()) -> list[Path]:
    """The files whose code turns specs into a stream: the society package (this module
    included), the task and stream-format modules, and ``extra`` (a user's dynamics family)."""
    import simlab.tasks.stream as stream_format
    import simlab.tasks.task as task_module

    files = sorted(Path(__file__).parent.rglob("*.py"))    # families/, diagnostics/ too
    files += [Path(stream_format.__file__), Path(task_module.__file__)]
    return files + [Path(f) for f in extra]


@lru_cache(maxsize=16)
def code_digest(extra: tuple[str, ...] = ()) -> str:
    """sha256 of :func:`stream_code_files`: part of the cache key, so editing a dynamics
    model never serves streams made by the old one. Cached per process (call
    ``code_digest.cache_clear()`` after editing code in a running interpreter)."""
    h = hashlib.sha256()
    own = Path(__file__).parent
    for f in stream_code_files(extra):
        h.update((f.relative_to(own).as_posix() if f.is_relative_to(own) else f.name).encode())
        h.update(source_text(f).encode())
    return h.hexdigest()


def family_code_digest(family: str) -> str:
    """``code_digest`` for a dynamics family: a user's own class adds its source file."""
    source = inspect.getsourcefile(society_class(family))
    own = Path(__file__).parent
    return code_digest((source,) if source and not Path(source).is_relative_to(own) else ())


__all__ = ["SEED_STREAMS", "HasSocietySpec", "SocietySpec", "as_spec", "build_society",
           "code_digest", "family_code_digest", "generate_stream", "seed_streams",
           "shift_events", "source_text", "stream_code_files"]
