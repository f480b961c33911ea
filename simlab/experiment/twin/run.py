"""The survey and its twin run side by side with the same learners and seeds (the report is
``simlab.report.twin``'s job)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simlab import DEFAULT_DB
from simlab.experiment.twin.calibrate import fit_twin
from simlab.experiment.twin.write import load_survey, write_fit
from simlab.tasks.stream import safe_name

if TYPE_CHECKING:  # pragma: no cover
    from simlab.experiment.config import Scenario
    from simlab.experiment.survey_scenario import SurveyScenario


@dataclass
class TwinRun:
    """The survey and its twin after both were run into ``db`` (``report.twin`` reports it)."""

    real: SurveyScenario
    sim: Scenario
    twin_path: Path
    db: Path
    summaries: list[Any] = field(default_factory=list)   # one SweepSummary per scenario


def run_twin(survey: str | Path | SurveyScenario, twin: str | Path | None = None, *,
             learners: Sequence[str] | None = None, seeds: int | Sequence[int] | None = None,
             db: str | Path = DEFAULT_DB, executor: str | None = None,
             jobs: int | None = None, quiet: bool = False, scheduler: str | None = None,
             device: str = "cpu") -> TwinRun:
    """Run the survey and its twin with the same learners and seeds (cells already in ``db``
    are skipped); the side-by-side report is ``simlab.report.twin.compare_twin``'s job.

    ``twin``: the twin's scenario file (default: ``<name>_twin.toml`` next to the survey's
    file, written first when missing). The oracle is added to the twin's learners (the
    ceiling there; it is left out of the rank agreement).
    """
    from simlab.experiment.config import ScenarioError, load_scenario
    from simlab.experiment.survey_scenario import SurveyScenario
    from simlab.experiment.sweep import run_sweep

    real = load_survey(survey)
    folder = real.source.parent if real.source is not None else Path.cwd()
    twin_path = Path(twin) if twin is not None else folder / f"{safe_name(real.name)}_twin.toml"
    if twin is None and not twin_path.exists():
        write_fit(real, fit_twin(real), twin_path)
    sim = load_scenario(twin_path)
    if isinstance(sim, SurveyScenario):
        raise ScenarioError(f"{twin_path}: the twin must be a simulated scenario, but it has a "
                            "[data] section; pass the file `simlab twin` wrote")
    names = list(learners) if learners is not None else list(real.evaluation.learners)
    sim_names = names if "oracle" in names else [*names, "oracle"]
    run = TwinRun(real, sim, twin_path, Path(db))
    for sc, who in ((real, names), (sim, sim_names)):
        run.summaries.append(run_sweep([sc], who, seeds, db, executor=executor, jobs=jobs,
                                       quiet=quiet, scheduler=scheduler, device=device))
    return run


__all__ = ["TwinRun", "run_twin"]
