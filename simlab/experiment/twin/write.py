"""Writing a calibrated twin as a scenario file (TOML by ``tomli_w``, its calibration table as
leading comments), checked to load, next to the survey's file by default."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tomli_w

from simlab.errors import ScenarioError
from simlab.experiment.twin.calibrate import TwinFit, fit_twin
from simlab.tasks.stream import safe_name

if TYPE_CHECKING:  # pragma: no cover
    from simlab.experiment.survey_scenario import SurveyScenario


def write_twin(path_in: str | Path, path_out: str | Path | None = None, seed: int = 0,
               rounds: int = 4, heterogeneity: float = 0.5) -> Path:
    """Load a survey scenario, calibrate its twin, write it as TOML; returns the path written
    (default: ``<name>_twin.toml`` next to the survey's file)."""
    survey = load_survey(path_in)
    return write_fit(survey, fit_twin(survey, seed, rounds, heterogeneity), path_out)


def write_fit(survey: SurveyScenario, fit: TwinFit, path_out: str | Path | None = None) -> Path:
    """Write a calibrated twin, with its calibration table as comments, and check it loads."""
    from simlab.experiment.config import load_scenario

    folder = survey.source.parent if survey.source is not None else Path.cwd()
    out = Path(path_out) if path_out is not None else \
        folder / f"{safe_name(fit.config['name'])}.toml"
    header = [(f"Simulated twin of {_shown(survey.source, out) if survey.source else survey.name}"
               ", written by `simlab twin`."),
              "Regenerate rather than edit: the numbers below are calibrated to the survey.",
              "",
              "Groups are matched in sorted order: community g is survey group",
              *[f"  {g}: {name}" for g, name in enumerate(fit.shape.group_names)],
              "The regime shock 'group_levels' sets each community's intercept at tick 1 (it",
              "never switches, so it is the initial condition); each 'wave_*' shock moves",
              "every intercept before that wave, as the survey's prevalence moved.",
              "",
              *fit.summary().splitlines()]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dumps_toml(fit.config, header), encoding="utf-8")
    load_scenario(out)   # what was written must load as a valid scenario
    return out


def _shown(path: Path, out: Path) -> str:
    """``path`` relative to the twin's folder when it lies below it, else its file name."""
    try:
        return str(Path(path).resolve().relative_to(out.parent.resolve()))
    except ValueError:
        return Path(path).name


def load_survey(path: str | Path | SurveyScenario) -> SurveyScenario:
    """The survey scenario at ``path`` (or given); a simulated scenario is a ScenarioError."""
    from simlab.experiment.config import load_scenario
    from simlab.experiment.survey_scenario import SurveyScenario

    sc = load_scenario(path)
    if not isinstance(sc, SurveyScenario):
        raise ScenarioError(f"{sc.source or path}: a twin is made from a survey scenario (a "
                            "file with a [data] section, e.g. scenarios/gss_happiness.toml); "
                            f"{sc.name!r} is already simulated")
    return sc


def dumps_toml(data: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """TOML text for a scenario dict (written by ``tomli_w``); ``header`` lines become leading
    comments. TOML has no null: None values and empty tables are left out (the schema's
    defaults apply); numpy scalars become Python numbers."""
    lines = [f"# {part}".rstrip() for h in header for part in (str(h).splitlines() or [""])]
    body = tomli_w.dumps(_plain(data, "")).rstrip()
    return "\n".join([*lines, "", ""] if lines else []) + (f"{body}\n" if body else "")


def _plain(value: Any, where: str) -> Any:
    """``value`` with what TOML cannot hold dropped (None, empty tables) or converted (numpy
    scalars, tuples); a non-finite number is an error naming its key."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}" if where else str(k))
                for k, v in value.items()
                if v is not None and not (isinstance(v, Mapping) and not v)}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ScenarioError(f"twin config {where}: cannot write the non-finite number {value!r} "
                            "to TOML")
    return value


__all__ = ["dumps_toml", "load_survey", "write_fit", "write_twin"]
