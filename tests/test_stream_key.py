"""The stream cache key covers every piece of code that shapes a stream.

Each case edits one function's source the way an editor would (one changed body line, seen
through ``linecache``, which is what ``inspect`` and the code digest read) and checks that the
cache key of the same scenario and seed changes, so an edited dynamics, survey, seeding,
building or file-format function can never serve a stream cached by the old code. An edit to
code that does not shape streams (a learner) must leave the key alone.
"""
from __future__ import annotations

import inspect
import linecache
import os

import pytest

import simlab.learners.maml as maml
import simlab.society.base as base
import simlab.society.diagnostics.ceiling as ceiling
import simlab.society.diagnostics.reporters as reporters
import simlab.society.families.opinion as opinion
import simlab.society.graphs as graphs
import simlab.society.population as population
import simlab.society.response as response
import simlab.society.run as run
import simlab.society.shocks as shocks
import simlab.society.survey as survey
import simlab.tasks.stream as stream_format
import simlab.tasks.task as task
from simlab.experiment.config import Scenario
from simlab.tasks.stream import cache_key

from helpers.scenarios import TINY


SHAPERS = {
    "seed_streams": run.seed_streams,
    "build_society": run.build_society,
    "generate_stream": run.generate_stream,
    "shift_events": run.shift_events,
    "Scenario.society_spec": vars(Scenario)["society_spec"],
    "Scenario.generate_stream": vars(Scenario)["generate_stream"],
    "Society.step": base.Society.step,
    "OpinionSociety.advance": opinion.OpinionSociety.advance,
    "planted_partition": graphs.planted_partition,
    "make_population": population.make_population,
    "GLMResponse.score": response.GLMResponse.score,
    "validate_shocks": shocks.validate_shocks,
    "sample_wave": survey.sample_wave,
    "population_cells": survey.population_cells,
    "CeilingEstimator.__call__": ceiling.CeilingEstimator.__call__,
    "Reporters.collect": reporters.Reporters.collect,
    "TaskStream.__post_init__": task.TaskStream.__post_init__,
    "save_stream": stream_format.save_stream,
}


def _edit(fn, monkeypatch: pytest.MonkeyPatch) -> None:
    """Change the last line of ``fn`` in ``linecache`` (the file on disk is untouched;
    size and mtime are kept so ``linecache.checkcache`` keeps the edited lines)."""
    fn = inspect.unwrap(fn)
    file = inspect.getsourcefile(fn)
    lines, start = inspect.getsourcelines(fn)
    body = start + len(lines) - 1          # the last line of the function: inside its body
    edited = list(linecache.getlines(file))
    edited[body - 1] = edited[body - 1].rstrip("\n") + "  # edited\n"
    stat = os.stat(file)
    monkeypatch.setitem(linecache.cache, file, (stat.st_size, stat.st_mtime, edited, file))


@pytest.fixture
def scenario():
    run.code_digest.cache_clear()
    yield Scenario.from_dict(TINY)
    run.code_digest.cache_clear()


@pytest.mark.parametrize("name", list(SHAPERS))
def test_editing_any_stream_shaping_function_changes_the_cache_key(name, scenario, monkeypatch):
    before = cache_key(scenario, 0)
    _edit(SHAPERS[name], monkeypatch)
    run.code_digest.cache_clear()
    assert cache_key(scenario, 0) != before, f"editing {name} keeps the stream cache key"


def test_editing_code_that_does_not_shape_streams_keeps_the_key(scenario, monkeypatch):
    before = cache_key(scenario, 0)
    _edit(maml.MAML.adapt, monkeypatch)
    run.code_digest.cache_clear()
    assert cache_key(scenario, 0) == before


def test_editing_the_survey_adapter_changes_a_survey_scenarios_key(tmp_path, monkeypatch):
    import numpy as np
    import pandas as pd

    import simlab.experiment.survey_scenario as survey_scenario
    import simlab.survey.design as survey_design
    import simlab.survey.stream as survey_stream
    from simlab.experiment.config import load_scenario

    rng = np.random.default_rng(0)
    pd.DataFrame({"year": np.repeat([2000, 2002, 2004], 60),
                  "region": np.tile(np.repeat(["north", "south"], 30), 3),
                  "age": rng.normal(45, 15, 180).round(),
                  "y": rng.integers(0, 2, 180)}).to_csv(tmp_path / "s.csv", index=False)
    (tmp_path / "s.toml").write_text(
        '[data]\nsource = "s.csv"\ngroups = ["region"]\ntime = "year"\ntarget = "y"\n'
        'features = ["age"]\nsupport = 5\nquery = 10\n'
        '[evaluation]\nwarmup = 1\nshots = [5]\nsteps = [0]\nlearners = ["scratch"]\n')
    sc = load_scenario(tmp_path / "s.toml")
    survey_scenario._adapter_digest.cache_clear()
    before = cache_key(sc, 0)
    for fn in (survey_stream.survey_stream, survey_design.assign_waves,
               vars(type(sc))["generate_stream"],
               stream_format.load_stream):
        _edit(fn, monkeypatch)
        survey_scenario._adapter_digest.cache_clear()
        assert cache_key(sc, 0) != before, fn.__qualname__
        monkeypatch.undo()
        survey_scenario._adapter_digest.cache_clear()
        assert cache_key(sc, 0) == before
