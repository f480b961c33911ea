"""Build the ``[evaluation.pretrain]`` plan of a scenario: load the simulated source, take its
streams, hand them to the protocol (``simlab.evaluation.pretrain`` does the rest)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from simlab.errors import ScenarioError
from simlab.evaluation.pretrain import Pretraining, attach, from_streams
from simlab.learners.base import Budget
from simlab.tasks.task import TaskStream


def source_scenario(scenario: Any) -> Any:
    """The scenario ``evaluation.pretrain.scenario`` names (relative to ``scenario``'s file),
    or ``scenario`` itself when it names none."""
    from simlab.experiment.config import load_scenario   # here: config imports us

    name = scenario.evaluation.pretrain.scenario
    if name is None:
        return scenario
    path = Path(name)
    if not path.is_absolute() and scenario.source is not None:
        near = scenario.source.parent / path
        path = near if near.exists() or path.suffix else path
    try:
        out = load_scenario(path)
    except FileNotFoundError as err:
        raise ScenarioError(f"evaluation.pretrain.scenario = {name!r}: {err}; give a scenario "
                            "file (relative to this one) or a bundled scenario name") from err
    if not out.has_oracle:
        raise ScenarioError(f"evaluation.pretrain.scenario = {name!r} is a survey (real data); "
                            "pre-train on a simulated scenario, e.g. the survey's `simlab twin`")
    return out


def plan_for(scenario: Any, cache_dir: str | Path | None = None) -> Pretraining | None:
    """The pre-training plan of ``scenario`` (None without ``[evaluation.pretrain]``)."""
    spec = scenario.protocol().pretrain
    if spec is None:
        return None
    src = source_scenario(scenario)
    streams = [src.stream(int(s), cache_dir=cache_dir) for s in spec.seeds]
    budget = Budget(spec.budget.iterations, spec.budget.meta_batch, spec.budget.seconds)
    source = {"scenario": src.name, "file": str(src.source) if src.source else None,
              "seeds": list(spec.seeds), "columns": spec.columns,
              "stream_fingerprint": src.stream_fingerprint()}
    return from_streams(streams, budget, learners=spec.learners, source=source,
                        columns=spec.columns)


def with_pretraining(scenario: Any, stream: TaskStream, cache_dir: str | Path | None = None
                     ) -> TaskStream:
    """``stream`` carrying its scenario's pre-training plan (unchanged without one)."""
    return attach(stream, plan_for(scenario, cache_dir))


__all__ = ["plan_for", "source_scenario", "with_pretraining"]
