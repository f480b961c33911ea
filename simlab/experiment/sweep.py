"""Sweeps: scenarios x learners x seeds (x hyperparameter grids), each cell one stored run.

Cells are independent, so any executor may run them in any order. What makes the numbers the
same whichever executor runs them: every cell rebuilds its learner from the seed, every
learner of a (scenario, seed) reads the identical stream (generated once, cached on disk by
``Scenario.stream``), and workers run torch single-threaded. The parent alone writes to the
store, one transaction per finished cell, so a killed sweep loses at most the cells in flight
and re-running the same sweep skips the cells already finished (failed cells are retried).

Tuned comparisons (``[evaluation.tuning]``) tune each learner once, not once per seed: after
the streams are prepared and before any cell runs, one job per learner (on the same executor)
searches its space on the warm-up waves of the sweep's first ``tuning.seeds`` seeds' streams;
every cell of that learner then runs with the choice. Those seeds are part of the cell key.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import time
import traceback
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field
from tqdm.auto import tqdm

from simlab import DEFAULT_DB
from simlab.evaluation.result import RunResult
from simlab.experiment.config import Scenario, load_scenario
from simlab.experiment import limits
from simlab.experiment.executors import Executor, WorkerCrash, contain_exits, make_executor
from simlab.errors import LearnerError, ScenarioError, StoreError, failure_reason
from simlab.experiment.errors_text import load_toml_model
from simlab.experiment.store import Cell, CellError, Store, to_json
from simlab.experiment.store import utc_now as _now
from simlab.tasks.stream import default_cache_dir
from simlab.learners.base import Learner
from simlab.learners.space import SearchSpace
from simlab.schema import check_seeds
from simlab.learners.registry import learner_class, make_learner
from simlab.schema import StrictModel

if TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import TypeIs   # typing.TypeIs from Python 3.13

    from simlab.experiment.survey_scenario import SurveyScenario

    AnyScenario = Scenario | SurveyScenario   # a simulated or a real-survey scenario

#: evaluation settings that do not change a cell's numbers (they choose which cells exist)
_NOT_SETTINGS = ("learners", "seeds")


# --- what to run ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LearnerSpec:
    """A learner to compare: a registry name (or ``pkg.mod:Class``), fixed hyperparameters, and
    the label it carries in the store and the report."""

    name: str
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    label: str | None = None

    @classmethod
    def of(cls, learner: str | type[Learner] | LearnerSpec) -> LearnerSpec:
        if isinstance(learner, LearnerSpec):
            return learner
        if isinstance(learner, type) and issubclass(learner, Learner):
            own = learner.name if learner.name != Learner.name else learner.__name__
            return cls(f"{learner.__module__}:{learner.__qualname__}", label=own)
        if isinstance(learner, str) and learner.strip():
            return cls(learner.strip())
        raise LearnerError(f"learner {learner!r} is not a name, a Learner subclass or a "
                           "LearnerSpec")

    @property
    def display(self) -> str:
        if self.label:
            return self.label
        if ":" not in self.name:
            return self.name
        cls = learner_class(self.name)
        return cls.name if cls.name != Learner.name else cls.__name__


@dataclass(frozen=True)
class Job:
    """What a worker needs for one cell (picklable)."""

    cell: Cell
    scenario: AnyScenario
    overrides: Mapping[str, Any]
    space: SearchSpace | None = None     # what tuning searches (None: not tuned)
    #: the parent's stream cache (absolute), so every worker reads the stream prepared for
    #: its (scenario, seed) whatever its working directory; None: the worker's default
    cache_dir: str | None = None
    #: the seeds whose warm-up waves tune this cell's learner (the sweep's first
    #: ``evaluation.tuning.seeds``); empty when untuned
    tuning_seeds: tuple[int, ...] = ()
    #: the shared tuning job's ``TuningResult``, filled in by the sweep before the cell runs
    tuned: Any = None


@dataclass(frozen=True)
class TuningJob:
    """One learner's tuning, shared by its cells of every seed (picklable): a pure function of
    (learner, fixed hyperparameters, space, the tuning seeds' streams, settings)."""

    scenario: AnyScenario
    learner_name: str
    label: str
    overrides: Mapping[str, Any]
    space: SearchSpace
    seeds: tuple[int, ...]
    device: str = "cpu"
    cache_dir: str | None = None
    storage: str | None = None      # an SQLite file for the Optuna study (None: in memory)
    #: a file the worker appends a line to per finished trial (the parent's progress bar)
    progress_file: str | None = None

    @classmethod
    def of(cls, job: Job, storage: str | Path | None = None) -> TuningJob:
        return cls(job.scenario, job.cell.learner_name, job.cell.label, job.overrides,
                   job.space or {}, job.tuning_seeds, job.cell.device, job.cache_dir,
                   None if storage is None else str(storage))


@dataclass
class Outcome:
    """What a worker sends back: the result or the error, and when it ran."""

    result: RunResult | CellError
    started: str
    finished: str


@dataclass
class SweepSummary:
    """Counts of one ``run_sweep`` call and where its runs are."""

    db: Path
    cells: int = 0
    skipped: int = 0
    ok: int = 0
    diverged: int = 0
    failed: int = 0
    seconds: float = 0.0
    run_ids: list[int] = field(default_factory=list)
    failures: list[tuple[str, int, str]] = field(default_factory=list)  # (cell, run_id, reason)

    def __str__(self) -> str:
        text = (f"{self.cells} cells: {self.ok} ok, {self.diverged} diverged, {self.failed} "
                f"failed, {self.skipped} already in {self.db} ({self.seconds:.1f} s)")
        for cell, run_id, reason in self.failures[:10]:
            text += f"\n  failed: {cell} (run {run_id}): {reason}"
        if len(self.failures) > 10:
            text += f"\n  ... and {len(self.failures) - 10} more (`simlab show RUN`)"
        return text


def settings_of(scenario: AnyScenario) -> dict[str, Any]:
    """Evaluation settings that determine a cell's numbers (shots, steps, budget, ...)."""
    ev = scenario.evaluation.model_dump(mode="json")
    if ev.get("tuning") is None:      # untuned: keys as before tuning existed
        ev.pop("tuning", None)
    return {k: v for k, v in ev.items() if k not in _NOT_SETTINGS}


def comparison_fingerprint(scenario: AnyScenario) -> str:
    """Identity of a comparison: name, stream and evaluation settings, but not the learner list
    or seed count, so adding a learner or a seed reuses the cells already run."""
    text = to_json({"name": scenario.name, "stream": scenario.stream_fingerprint(),
                    "evaluation": settings_of(scenario)})
    return hashlib.sha256(text.encode()).hexdigest()


def _grid_points(grid: Mapping[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
    if not grid:
        return [{}]
    for k, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ScenarioError(f"grid value of {k!r} must be a non-empty list, got {values!r}")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _label(base: str, point: Mapping[str, Any]) -> str:
    if not point:
        return base
    return base + "[" + ",".join(f"{k}={v}" for k, v in point.items()) + "]"


def plan_cells(scenarios: Sequence[AnyScenario], learners: Sequence[LearnerSpec] | None,
               seeds: Sequence[int] | None, grid: Mapping[str, Mapping[str, Sequence[Any]]]
               | None = None, device: str = "cpu", scheduler: str | None = None) -> list[Job]:
    """Every cell of the sweep, validated up front (an unknown learner or a bad hyperparameter
    fails here, before anything runs, as does a device that cannot be used; with a Dask
    ``scheduler`` the cells run elsewhere, so only the device's name is checked)."""
    from simlab.learners.device import check_device

    check_device(device, remote=scheduler is not None)
    grid = dict(grid or {})
    jobs: list[Job] = []
    for sc in scenarios:
        specs = learners if learners is not None else [LearnerSpec(n)
                                                       for n in sc.evaluation.learners]
        names = {s.name for s in specs} | {s.display for s in specs}
        unknown = sorted(set(grid) - names)
        if unknown:
            raise ScenarioError(f"grid for {', '.join(unknown)}: not among the learners "
                                f"{', '.join(sorted(s.display for s in specs))}")
        run_seeds = check_seeds(seeds if seeds is not None else sc.evaluation.seeds)
        fp, settings = comparison_fingerprint(sc), settings_of(sc)
        tuning_seeds: tuple[int, ...] = ()
        if sc.evaluation.tuning is not None:    # which streams tune: part of the key
            tuning_seeds = tuple(sorted(set(run_seeds)))[:sc.evaluation.tuning.seeds]
            settings = {**settings, "tuning": {**settings["tuning"],
                                               "on_seeds": list(tuning_seeds)}}
        for spec in specs:
            points = _grid_points(grid.get(spec.display) or grid.get(spec.name))
            for point in points:
                overrides = {**sc.hyperparameters(spec.name), **spec.hyperparameters, **point}
                label = _label(spec.display, point)
                limits.check_learner(label, overrides)     # before the network is allocated
                learner = make_learner(spec.name, **overrides)
                learner.validate()
                space = tuning_space(sc, spec, overrides)   # a bad space fails up front
                for seed in run_seeds:
                    cell = Cell(sc.name, fp, int(seed), spec.name,
                                json.loads(to_json(learner.hyperparameters())), label,
                                _cell_settings(settings, space, overrides), device)
                    jobs.append(Job(cell, sc, overrides, space,
                                    tuning_seeds=tuning_seeds if space is not None else ()))
    seen: dict[str, Cell] = {}
    for job in jobs:
        if job.cell.key in seen:
            raise ScenarioError(f"the sweep lists the same cell twice: {job.cell.describe()} and "
                                f"{seen[job.cell.key].describe()}; remove the duplicate")
        seen[job.cell.key] = job.cell
    return jobs


def _cell_settings(settings: Mapping[str, Any], space: SearchSpace | None,
                   fixed: Mapping[str, Any]) -> Mapping[str, Any]:
    """The settings that go into a cell's key: a tuned cell's also name what its tuning
    searches (the resolved space) and which hyperparameters are fixed (not searched), so a
    grid point equal to a default (``memory = 0``) is not taken for the tuned run that
    searched ``memory``: same fields, different runs. Untuned cells keep their old keys."""
    if space is None:
        return settings
    from simlab.evaluation.tuning import describe_space

    return {**settings, "tuning": {**settings["tuning"], "space": describe_space(space),
                                   "fixed": sorted(fixed)}}


def tuning_space(scenario: AnyScenario, spec: LearnerSpec, fixed: Mapping[str, Any]
                 ) -> SearchSpace | None:
    """The space tuning searches for this learner in this scenario (None: no tuning); the
    user's ``[evaluation.tuning.space.<name>]`` (by name or label) replaces the class's."""
    from simlab.evaluation.tuning import resolve_space

    tu = scenario.evaluation.tuning
    if tu is None:
        return None
    own = tu.space.get(spec.display, tu.space.get(spec.name))
    return resolve_space(spec.name, fixed, own)


def tune_learner(job: TuningJob, progress: Any = None) -> Any:
    """Tune one learner on the warm-up waves of the streams of ``job.seeds`` (sampler and
    trials seeded by the first of them); returns the ``TuningResult`` (with its ``seeds``).
    The sweep runs one per learner on its executor; ``simlab tune`` calls it directly.
    ``progress``: called with each finished trial (``tune``'s)."""
    from simlab.evaluation.pretrain import attach
    from simlab.evaluation.tuning import tune
    from simlab.experiment.pretraining import plan_for

    sc, seed = job.scenario, job.seeds[0]
    plan = plan_for(sc, job.cache_dir)        # [evaluation.pretrain]: every trial pre-trains
    streams = [attach(sc.stream(s, cache_dir=job.cache_dir), plan) for s in job.seeds]
    if progress is None and job.progress_file is not None:
        def progress(trial: Mapping[str, Any], path: str = job.progress_file) -> None:
            with open(path, "a") as f:
                f.write(f"{trial['number']} {trial['state']}\n")
    result = tune(job.learner_name, job.overrides, streams, sc.protocol(), seed=seed,
                  device=job.device, space=job.space, storage=job.storage,
                  study_name=f"{sc.name}-{job.label}-seeds" + "-".join(map(str, job.seeds)),
                  progress=progress)
    return dataclasses.replace(result, seeds=list(job.seeds))


def _tune_or_error(item: tuple[str, TuningJob]) -> Any:
    """``tune_learner`` of a (key, job), an exception becoming the ``CellError`` its cells are
    recorded with."""
    job, t0 = item[1], time.perf_counter()
    try:
        with contain_exits():
            return tune_learner(job)
    except Exception as err:  # noqa: BLE001 - fails this learner's cells, not the sweep
        return CellError(f"tuning failed: {failure_reason(err)}".splitlines()[0],
                         traceback.format_exc(), time.perf_counter() - t0)


# --- what a worker does -------------------------------------------------------------------------
def prepare_stream(item: tuple[str, int, AnyScenario] | tuple[str, int, AnyScenario, str | None]
                   ) -> tuple[str | None, list[str]]:
    """Generate and cache the stream of one (fingerprint, seed, scenario[, cache dir]);
    returns the error text, if any (then every cell of that stream is recorded as failed),
    and the warnings raised (e.g. an unwritable cache), which the parent shows the user."""
    _, seed, scenario, *cache_dir = item
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with contain_exits():
                scenario.stream(seed, cache_dir=cache_dir[0] if cache_dir else None)
            error = None
        except Exception as err:  # noqa: BLE001 - recorded on every cell of this stream
            error = f"{traceback.format_exc()}\n{failure_reason(err)}"   # last line: the reason
    return error, [str(w.message) for w in caught]


def run_cell(job: Job) -> Outcome:
    """Run one cell; any exception becomes a recorded ``CellError`` (the sweep goes on)."""
    from simlab.evaluation.protocol import evaluate
    from simlab.experiment.pretraining import with_pretraining

    started, t0 = _now(), time.perf_counter()
    try:
        with contain_exits():     # a plug-in's sys.exit() fails this cell, not the sweep
            stream = with_pretraining(job.scenario, job.scenario.stream(
                job.cell.seed, cache_dir=job.cache_dir), job.cache_dir)   # [evaluation.pretrain]
            tuned = job.tuned
            if job.space is not None and tuned is None:
                raise ValueError(f"{job.cell.describe()} is tuned but has no tuning result; "
                                 "run it through run_sweep, which tunes each learner once first")
            learner = make_learner(job.cell.learner_name,
                                   **{**job.overrides, **(tuned.best_params if tuned else {})})
            run = evaluate(learner, stream, job.scenario.protocol(), seed=job.cell.seed,
                           device=job.cell.device)
        if tuned is not None:     # stored with the run: chosen values, trace, seeds, time
            run.log["tuning"] = {**tuned.as_log(), "shared": True}
            run.timings["tuning_s"] = tuned.seconds     # the shared job's, not this cell's
        result: RunResult | CellError = run
    except Exception as err:  # noqa: BLE001 - a failing cell must not stop the sweep
        result = CellError(failure_reason(err).splitlines()[0],
                           traceback.format_exc(), time.perf_counter() - t0)
    return Outcome(result, started, _now())


# --- the sweep ----------------------------------------------------------------------------------
def resolve_scenarios(scenarios: Iterable[str | Path | AnyScenario] | str | Path | AnyScenario
                      ) -> list[AnyScenario]:
    """Scenario objects from objects, names (``opinion_shift``) or TOML paths.

    Any object with ``evaluation`` and ``stream(seed)`` counts (simulated ``Scenario`` and the
    real-survey scenarios alike)."""
    items: list[str | Path | AnyScenario]
    if isinstance(scenarios, (str, Path)) or not isinstance(scenarios, Iterable) \
            or _is_scenario(scenarios):
        items = [scenarios]
    else:
        items = list(scenarios)
    out = [load_scenario(s) if isinstance(s, (str, Path)) else s for s in items]
    if not out:
        raise ScenarioError("a sweep needs at least one scenario")
    bad = [s for s in out if not _is_scenario(s)]
    if bad:
        raise ScenarioError(f"{bad[0]!r} is not a scenario; give a name, a TOML path or a "
                            "Scenario (simlab.load_scenario)")
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ScenarioError(f"scenario name(s) {', '.join(dup)} listed twice; list each scenario "
                            "once, and give variants their own `name`")
    return out


def _is_scenario(obj: object) -> TypeIs[AnyScenario]:
    """Duck-typed: a pydantic scenario is itself iterable (its fields), so a sweep's argument
    is told apart from a list of scenarios by what it has, not by ``Iterable``."""
    return hasattr(obj, "evaluation") and callable(getattr(obj, "stream", None))


def run_sweep(scenarios: Iterable[str | Path | AnyScenario] | str | Path | AnyScenario,
              learners: Sequence[str | type[Learner] | LearnerSpec] | None = None,
              seeds: int | Sequence[int] | None = None,
              store: Store | str | Path = DEFAULT_DB,
              executor: str | Executor | None = "process", jobs: int | None = None,
              quiet: bool = False, grid: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
              scheduler: str | None = None, device: str = "cpu") -> SweepSummary:
    """Run every cell not yet in ``store``; returns the counts.

    ``learners`` / ``seeds`` default to the scenario's ``[evaluation]`` table; ``seeds`` may be
    a count (``5`` -> seeds 0..4) or a list. ``grid`` maps a learner to ``{field: [values]}``;
    each point of the product is its own cell (labelled ``name[field=value]``).
    """
    t0 = time.perf_counter()
    scs = resolve_scenarios(scenarios)
    specs = None if learners is None else [LearnerSpec.of(x) for x in learners]
    # the limits first: a count of 10**9 seeds or a 10**6-point grid never becomes a list
    n = limits.count(seeds) if seeds is not None and not isinstance(seeds, bool) else 0
    limits.check_sweep(n, _cell_count(scs, specs, n, grid or {}))
    if seeds is not None:
        seeds = check_seeds(seeds)
    planned = plan_cells(scs, specs, seeds, grid, device, scheduler)
    own_store = not isinstance(store, Store)
    db = store if isinstance(store, Store) else Store(store)
    try:
        done = db.done_keys()
        todo = [j for j in planned if j.cell.key not in done]
        summary = SweepSummary(db.path, cells=len(planned), skipped=len(planned) - len(todo))
        if todo:
            if executor is None or isinstance(executor, str):
                ex = make_executor(executor, jobs, scheduler)
                try:
                    _run(todo, ex, db, summary, quiet)
                finally:
                    ex.close()
            else:
                _run(todo, executor, db, summary, quiet)
    finally:
        if own_store:
            db.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _cell_count(scs: Sequence[AnyScenario], specs: Sequence[LearnerSpec] | None, n_seeds: int,
                grid: Mapping[str, Mapping[str, Sequence[Any]]]) -> int:
    """How many cells a sweep plans (seeds x learners x grid points, per scenario), counted
    before any is built."""
    total = 0
    for sc in scs:
        for spec in specs or [LearnerSpec(name) for name in sc.evaluation.learners]:
            points = limits.grid_points(grid.get(spec.display) or grid.get(spec.name))
            total += (n_seeds or limits.count(sc.evaluation.seeds)) * points
    return total


def _run(todo: list[Job], ex: Executor, db: Store, summary: SweepSummary, quiet: bool) -> None:
    """Each (scenario, seed) stream is generated once, by one worker, before any cell runs;
    the cells then read it from the parent's cache directory (on a cluster: a shared disk,
    see docs/cluster.md), so no two workers ever generate the same stream."""
    cache = str(default_cache_dir().resolve())
    todo = [j if j.cache_dir else dataclasses.replace(j, cache_dir=cache) for j in todo]
    by_stream = {(j.cell.fingerprint, j.cell.seed): j for j in todo}
    for j in todo:      # tuning reads the first seeds' streams, also where those cells are done
        for s in j.tuning_seeds:
            by_stream.setdefault((j.cell.fingerprint, s), j)
    configs = {fp: j.scenario.stored_config() for (fp, _), j in by_stream.items()}
    broken: dict[tuple[str, int], str] = {}
    bar = tqdm(total=len(by_stream), desc="streams", unit="stream", disable=quiet, leave=False)
    with bar:
        shown: set[str] = set()
        for (fp, seed, *_), res in ex.map_unordered(
                prepare_stream, [(fp, seed, j.scenario, j.cache_dir)
                                 for (fp, seed), j in by_stream.items()]):
            err, notes = (res.describe(), []) if isinstance(res, WorkerCrash) else res
            for note in sorted(set(notes) - shown):    # raised in a worker: tell the user
                shown.add(note)
                warnings.warn(note, RuntimeWarning, stacklevel=2)
            if err:
                broken[fp, seed] = err
            bar.update()
    ready = [j for j in todo if (j.cell.fingerprint, j.cell.seed) not in broken]
    for job in todo:
        err = broken.get((job.cell.fingerprint, job.cell.seed))
        if err:
            reason = "stream generation failed: " + err.strip().splitlines()[-1]
            _record(db, job, Outcome(CellError(reason, err), _now(), _now()), configs, summary)
    ready = _tuning_phase(ready, ex, db, configs, summary, quiet)
    with tqdm(total=len(ready), desc="cells", unit="cell", disable=quiet) as bar:
        for job, outcome in ex.map_unordered(run_cell, ready):
            if isinstance(outcome, WorkerCrash):
                text = outcome.describe()
                outcome = Outcome(CellError(text, f"{text}\n\nlast stderr lines of the worker:"
                                                  f"\n{outcome.stderr_tail}"), _now(), _now())
            _record(db, job, outcome, configs, summary)
            bar.set_postfix_str(f"{job.cell.label} seed {job.cell.seed}"
                                + (f", {summary.failed} failed" if summary.failed else ""))
            bar.update()


class _TrialProgress:
    """Moves the tuning bar trial by trial: a thread counts the lines the tuning workers
    append to their progress files (workers may be other processes or machines sharing the
    cache directory, so a file is what they all can write)."""

    def __init__(self, files: list[str | None], bar: Any, every: float = 0.5) -> None:
        import threading

        self.files, self.bar, self.every = [f for f in files if f], bar, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _count(self) -> int:
        n = 0
        for f in self.files:
            with contextlib.suppress(OSError):
                n += Path(f).read_text().count("\n")
        return n

    def _watch(self) -> None:
        while True:
            stopping = self.stop.wait(self.every)
            done = min(self._count(), self.bar.total or 0)
            if done > self.bar.n:
                self.bar.update(done - self.bar.n)
            if stopping:
                return

    def __enter__(self) -> _TrialProgress:
        if self.files:
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


def _tuning_key(job: Job) -> str:
    """Cells sharing one tuning: the same cell key but for the seed (scenario, learner, fixed
    hyperparameters, settings incl. the tuning config and its seeds)."""
    return dataclasses.replace(job.cell, seed=0, learner="").key


def _trials(job: Job) -> int:
    """The tuning trials of a tuned cell (its ``space`` comes from ``[evaluation.tuning]``)."""
    tuning = job.scenario.evaluation.tuning
    assert tuning is not None, "a tuned cell's scenario has [evaluation.tuning]"
    return tuning.trials


def _tuning_phase(ready: list[Job], ex: Executor, db: Store, configs: Mapping[str, Any],
                  summary: SweepSummary, quiet: bool) -> list[Job]:
    """Tune each learner of the cells to run once, in parallel on ``ex`` (one job per learner);
    returns the cells with their ``tuned`` result. A learner whose tuning failed (or whose
    worker died) has its cells recorded as failed with the reason; the others go on."""
    groups: dict[str, list[Job]] = {}
    for job in ready:
        if job.space is not None:
            groups.setdefault(_tuning_key(job), []).append(job)
    if not groups:
        return ready
    folder = Path(ready[0].cache_dir or default_cache_dir()) / "tuning-progress"
    if not quiet:
        folder.mkdir(parents=True, exist_ok=True)
    items = [(key, dataclasses.replace(TuningJob.of(js[0]), progress_file=None if quiet else str(
        folder / f"{hashlib.sha1(f'{key}{time.time_ns()}'.encode()).hexdigest()[:16]}.log")))
        for key, js in groups.items()]
    total = sum(_trials(js[0]) for js in groups.values() if js[0].space)
    results: dict[str, Any] = {}
    with tqdm(total=total, desc="tuning", unit="trial", disable=quiet, leave=False) as bar, \
            _TrialProgress([tj.progress_file for _, tj in items], bar):
        for (key, tj), res in ex.map_unordered(_tune_or_error, items):
            if isinstance(res, WorkerCrash):
                text = "tuning " + res.describe()
                res = CellError(text, f"{text}\n\nlast stderr lines of the worker:\n"
                                f"{res.stderr_tail}")
            results[key] = res
            bar.set_postfix_str(f"{tj.label} done")
    for _, tj in items:
        if tj.progress_file:
            Path(tj.progress_file).unlink(missing_ok=True)
    out = []
    for job in ready:
        if job.space is None:
            out.append(job)
            continue
        res = results[_tuning_key(job)]
        if isinstance(res, CellError):
            _record(db, job, Outcome(res, _now(), _now()), configs, summary)
        else:
            out.append(dataclasses.replace(job, tuned=res))
    return out


def _record(db: Store, job: Job, outcome: Outcome, configs: Mapping[str, Any],
            summary: SweepSummary) -> None:
    """Store one cell; a result the store refuses becomes a failed cell, not a stopped sweep."""
    def write(result: RunResult | CellError) -> int:
        return db.write(job.cell, result, config=configs[job.cell.fingerprint],
                        started=outcome.started, finished=outcome.finished)

    try:
        run_id = write(outcome.result)
    except StoreError:      # the store itself cannot be written (a full disk): stop, clearly
        raise
    except (ValueError, TypeError) as err:      # the transaction rolled back: nothing partial
        outcome = Outcome(CellError(f"the store refused the result: {type(err).__name__}: "
                                    f"{err}".splitlines()[0], traceback.format_exc()),
                          outcome.started, outcome.finished)
        run_id = write(outcome.result)
    summary.run_ids.append(run_id)
    if isinstance(outcome.result, CellError):
        summary.failed += 1
        summary.failures.append((job.cell.describe(), run_id, outcome.result.message))
    elif outcome.result.status == "diverged":
        summary.diverged += 1
    else:
        summary.ok += 1


# --- sweep files ------------------------------------------------------------------------------
class SweepFile(StrictModel):
    """A sweep TOML file (scenario paths relative to the file; db and report to the working
    directory). Keep sweep files out of ``scenarios/``, where every ``*.toml`` is a scenario::

        scenarios = ["opinion_shift", "my_scenario.toml"]
        learners = ["maml", "protonet", "partial_pooling"]   # default: each scenario's list
        seeds = 5                                             # or [0, 3, 7]
        db = "results/simlab.db"                              # the default
        report = "reports/my_sweep"                           # optional
        executor = "process"                                  # inline | process | dask
        jobs = 2

        [hyperparameters.maml]      # fixed values for one learner
        inner_lr = 0.05

        [grid.maml]                 # every combination is its own cell
        inner_steps = [1, 5]
    """

    scenarios: list[str] = Field(min_length=1)
    learners: list[str] | None = None
    seeds: int | list[int] | None = None
    hyperparameters: dict[str, dict[str, Any]] = Field(default_factory=dict)
    grid: dict[str, dict[str, list[Any]]] = Field(default_factory=dict)
    db: str | None = None
    report: str | None = None
    executor: str | None = None
    jobs: int | None = Field(None, ge=1)
    scheduler: str | None = None


@dataclass
class SweepPlan:
    """A loaded sweep file, ready for ``run_sweep(**plan.kwargs())``."""

    scenarios: list[AnyScenario]
    learners: list[LearnerSpec] | None
    seeds: int | list[int] | None
    grid: dict[str, dict[str, list[Any]]]
    db: Path | None
    report: Path | None
    executor: str | None
    jobs: int | None
    scheduler: str | None

    def kwargs(self) -> dict[str, Any]:
        return {"scenarios": self.scenarios, "learners": self.learners, "seeds": self.seeds,
                "grid": self.grid}


def load_sweep(path: str | Path) -> SweepPlan:
    """Read and validate a sweep TOML file; every problem is one ``ScenarioError`` (a
    ``ValueError``)."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"no sweep file {str(path)!r}; give the path of a sweep TOML file "
                            "(see simlab.experiment.sweep.SweepFile)")
    spec = load_toml_model(path, SweepFile, f"fields: {', '.join(SweepFile.model_fields)}")
    here = path.parent
    scenarios = []
    for ref in spec.scenarios:
        local = here / (ref if ref.endswith(".toml") else f"{ref}.toml")
        scenarios.append(load_scenario(local if local.is_file() else ref))
    unknown = sorted(set(spec.hyperparameters) - set(spec.learners or spec.hyperparameters))
    if unknown and spec.learners is not None:
        raise ScenarioError(f"{path}: hyperparameters.{unknown[0]}: not among learners "
                            f"{spec.learners}")
    learners = None if spec.learners is None else [
        LearnerSpec(n, spec.hyperparameters.get(n, {})) for n in spec.learners]
    if learners is None and spec.hyperparameters:
        raise ScenarioError(f"{path}: [hyperparameters] needs an explicit learners list "
                            "(or put them in the scenario's [learners.<name>] tables)")
    return SweepPlan(scenarios, learners, spec.seeds, spec.grid, _path(spec.db), _path(spec.report),
                     spec.executor, spec.jobs, spec.scheduler)


def _path(text: str | None) -> Path | None:
    return None if text is None else Path(text)
