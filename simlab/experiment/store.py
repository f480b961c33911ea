"""The results store: one SQLite file that every sweep appends to and every report reads.

Why SQLite: one portable file, transactions (a run is written whole or not at all, so a killed
sweep leaves no half runs), WAL mode so several processes may write to the same file, and
``pandas.read_sql`` for the long-format frames the report consumes.

Tables (schema version in ``meta``): ``runs`` (one row per cell), ``metrics`` (long format,
``run_id`` + ``RECORD_COLUMNS``), ``summaries`` (``run_id``, name, value), ``shifts``
(``fingerprint``, ``seed`` + ``SHIFT_COLUMNS``, once per stream), ``configs`` (the scenario
config of every fingerprint, so a report can say what was run) and ``prevalence`` (``run_id`` +
``evaluation.poststrat.GROUP_COLUMNS``: each group's prevalence estimate per scored wave x K
with its interval; added without a version bump, since no existing table changes meaning: a
store from before it simply has no estimates to read).
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import simlab
from simlab import __version__
from simlab.errors import StoreError
from simlab.evaluation.poststrat import GROUP_COLUMNS
from simlab.evaluation.result import RECORD_COLUMNS, SHIFT_COLUMNS, RunResult

#: the parts of the package that do not make numbers (a change there is not a new code version)
_PRESENTATION = ("report", "cli.py", "__main__.py")


@functools.cache
def code_version() -> str:
    """What the ``version`` column records for each run: the package version and the first 12
    hex digits of a sha256 over the source of every module that makes numbers (all of
    ``simlab`` but the report and the CLI). The package version has never been bumped, so
    without the digest a resumed store could not tell cells computed by older code from new
    ones; the report names a scenario whose runs come from several (``report.code_fact``)."""
    root = Path(simlab.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] in _PRESENTATION:
            continue
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{__version__}+{h.hexdigest()[:12]}"


#: bump when a table or column changes meaning; an older/newer store is refused, never altered
SCHEMA_VERSION = 1
DEFAULT_DB = Path(simlab.DEFAULT_DB)
STATUSES = ("ok", "diverged", "failed")
FINISHED = ("ok", "diverged")   # a cell with one of these is done; "failed" is retried

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS configs (
    fingerprint TEXT PRIMARY KEY, scenario TEXT NOT NULL, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    scenario TEXT NOT NULL, fingerprint TEXT NOT NULL, seed INTEGER NOT NULL,
    learner TEXT NOT NULL, learner_name TEXT NOT NULL, hyperparameters TEXT NOT NULL,
    device TEXT NOT NULL, version TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN {STATUSES!r}),
    error TEXT, started TEXT, finished TEXT, seconds REAL, timings TEXT, log TEXT);
CREATE INDEX IF NOT EXISTS runs_scenario ON runs (scenario, fingerprint);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL, wave INTEGER NOT NULL, shots INTEGER NOT NULL,
    steps INTEGER NOT NULL, metric TEXT NOT NULL, value REAL);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics (run_id);
CREATE TABLE IF NOT EXISTS summaries (
    run_id INTEGER NOT NULL, name TEXT NOT NULL, value REAL, PRIMARY KEY (run_id, name));
CREATE TABLE IF NOT EXISTS shifts (
    fingerprint TEXT NOT NULL, seed INTEGER NOT NULL, wave INTEGER, tick INTEGER, kind TEXT,
    name TEXT, target TEXT, size REAL);
CREATE INDEX IF NOT EXISTS shifts_stream ON shifts (fingerprint, seed);
CREATE TABLE IF NOT EXISTS prevalence (
    run_id INTEGER NOT NULL, wave INTEGER NOT NULL, shots INTEGER NOT NULL,
    "group" TEXT NOT NULL, category INTEGER NOT NULL, estimate REAL, lo REAL, hi REAL,
    observed REAL, truth REAL, n INTEGER, lo_model REAL, hi_model REAL);
CREATE INDEX IF NOT EXISTS prevalence_run ON prevalence (run_id);
"""
#: the tidy group x wave prevalence table ``simlab export`` writes (``NAME.prevalence.csv``)
PREVALENCE_EXPORT = ["scenario", "learner", "seed", "wave", "wave_time", "group", "K",
                     "category", "estimate", "lo", "hi", "lo_model", "hi_model", "observed",
                     "truth", "n", "run_id"]


def to_json(value: Any) -> str:
    """Canonical JSON (sorted keys; tuples as lists; anything else by ``repr``)."""
    return json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-inf) as None: strict JSON, which SQLite's
    ``json_extract`` and every other reader accept (bare ``NaN`` tokens are not JSON)."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    return value


def log_json(value: Any) -> str:
    """A run's log or timings as strict JSON: non-finite numbers are stored as null and read
    back as NaN (``Store.frames``, ``read_log``)."""
    return json.dumps(_finite(value), sort_keys=True, default=repr, separators=(",", ":"),
                      allow_nan=False)


@dataclass(frozen=True)
class Cell:
    """One (scenario, seed, learner, hyperparameters) point of a sweep.

    ``learner`` is the display label (the registry name, or e.g. ``maml[inner_lr=0.1]`` for a
    point of a hyperparameter grid); ``learner_name`` is what ``make_learner`` resolves.
    ``hyperparameters`` are the learner's full fields, so the key changes when a default does.
    ``settings`` are the evaluation settings that change results (shots, steps, budget, ...).
    """

    scenario: str
    fingerprint: str
    seed: int
    learner_name: str
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    learner: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    device: str = "cpu"

    @property
    def label(self) -> str:
        return self.learner or self.learner_name

    @property
    def key(self) -> str:
        """Hash of everything that determines the cell's numbers (not of its label)."""
        ident = {"fingerprint": self.fingerprint, "seed": int(self.seed),
                 "learner": self.learner_name, "hyperparameters": self.hyperparameters,
                 "settings": self.settings}
        if self.device != "cpu":
            ident["device"] = self.device
        return hashlib.sha256(to_json(ident).encode()).hexdigest()[:32]

    def describe(self) -> str:
        return f"{self.scenario} seed={self.seed} {self.label}"


@dataclass
class CellError:
    """A cell that raised: the one-line reason and the full traceback, kept in the store."""

    message: str
    traceback: str = ""
    seconds: float = 0.0


def _wave_times(text: Any) -> dict[int, str]:
    """wave index -> its time value (survey year) from a run's ``wave_times`` log field."""
    try:
        times = json.loads(text) if isinstance(text, str) else list(text or [])
    except (TypeError, ValueError):
        return {}
    return {i: str(t) for i, t in enumerate(times)}


def _canonical(text: str | None) -> str | None:
    """JSON text in the store's canonical form (``to_json``), None stays None."""
    return None if text is None else to_json(json.loads(text))


def utc_now() -> str:
    """The current UTC time as stored in ``runs.started`` / ``runs.finished``."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _num(value: Any) -> float | None:
    """SQLite stores NaN as NULL; keep +-inf as a float (diverged runs carry them)."""
    value = float(value)
    return None if math.isnan(value) else value


#: the log entries ``Store.frames`` returns as run columns (JSON text, as ``json_extract``;
#: ``role``: the learner's declared role, None in logs written before roles were recorded)
_LOG_FIELDS = ("wave_times", "tuning", "pretrain", "prevalence", "meta_fit", "role")


def read_entry(text: Any) -> dict[str, Any] | None:
    """A JSON object stored as text (a run's log, or a table entry of it such as the ``tuning``
    or ``pretrain`` column of ``Store.frames``) as data; None for anything else (None, NaN,
    not JSON, not an object). Also reads the bare ``NaN`` / ``Infinity`` tokens of logs
    written before non-finite numbers were stored as null."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def read_log(text: str | None) -> dict[str, Any]:
    """A stored log as data (a non-finite number is stored as null; numeric columns of
    ``Store.frames`` read it as NaN); {} when there is none (:func:`read_entry`)."""
    return read_entry(text) or {}


def _used_text(text: str | None) -> str | None:
    """The ``hyperparameters`` of one stored log as canonical JSON text (None without)."""
    used = read_log(text).get("hyperparameters")
    return None if used is None else to_json(used)


def _log_fields(text: str | None) -> dict[str, Any]:
    """The ``_LOG_FIELDS`` of one stored log: lists and tables as strict JSON text, scalars as
    themselves, absent as None."""
    log = read_log(text)
    out: dict[str, Any] = {}
    for name in _LOG_FIELDS:
        value = log.get(name)
        out[name] = log_json(value) if isinstance(value, (dict, list)) else _finite(value)
    return out


class Store:
    """A results store at ``path`` (created on first use unless ``create=False``)."""

    def __init__(self, path: str | Path = DEFAULT_DB, *, create: bool = True) -> None:
        self.path = Path(path)
        try:
            self._open(create)
        except (OSError, sqlite3.OperationalError) as err:
            raise StoreError(f"cannot open the results store {self.path} ({err}); pass a "
                             "writable --db path (or fix the folder's permissions)") from err

    def _open(self, create: bool) -> None:
        if not self.path.exists():
            if not create:
                raise StoreError(f"no results store at {self.path}; run `simlab run SCENARIO` "
                                 "or `simlab demo` first, or pass the right --db path.")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = self._connect(create)
        try:
            self._con.execute("PRAGMA busy_timeout=60000")
            self._check_version()
            if create:
                self._con.execute("PRAGMA journal_mode=WAL")
                with self._transaction():
                    self._check_version()     # again, under the write lock
                    for statement in filter(str.strip, _SCHEMA.split(";")):
                        self._con.execute(statement)
                    self._con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                      (str(SCHEMA_VERSION),))
                    self._con.execute("INSERT OR IGNORE INTO meta VALUES ('created_by', ?)",
                                      (f"simlab {__version__}",))
            elif "runs" not in self._tables():
                raise StoreError(f"{self.path} is an empty file, not a results store; run "
                                 "`simlab run SCENARIO` or pass the right --db path.")
        except BaseException:
            self._con.close()
            raise

    # -- opening ------------------------------------------------------------------------------
    def _connect(self, create: bool) -> sqlite3.Connection:
        """A connection; for reading (``create=False``) a store that cannot be opened normally
        (a read-only folder or filesystem: SQLite cannot make the WAL's ``-shm`` file) is
        opened read-only and immutable."""
        con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        if create:
            return con
        try:
            con.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
            return con
        except sqlite3.OperationalError:
            con.close()
        except sqlite3.DatabaseError as err:    # "file is not a database"
            con.close()
            raise StoreError(f"{self.path} is not a SQLite file ({err}); pass a different --db "
                             "path.") from err
        uri = f"{self.path.resolve().as_uri()}?mode=ro&immutable=1"
        return sqlite3.connect(uri, uri=True, timeout=60.0, isolation_level=None)

    def _tables(self) -> set[str]:
        try:
            return {r[0] for r in self._con.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.OperationalError as err:       # exists, but cannot be opened
            raise StoreError(f"cannot open the results store {self.path} ({err}): its folder "
                             "or filesystem is read-only or not accessible. To read it, use a "
                             "command that only reads (report, export, show); to run, pass a "
                             "writable --db path (or copy the store there)") from err
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path} is not a SQLite file ({err}); "
                             "pass a different --db path.") from err

    def _check_version(self) -> None:
        """Refuse (without touching the file) a store this version cannot read correctly."""
        tables = self._tables()
        if not tables:
            return
        if "meta" not in tables:
            raise StoreError(f"{self.path} is a SQLite file but not a simlab results store "
                             "(no meta table); pass a different --db path.")
        if "runs" not in tables:
            raise StoreError(f"results store {self.path} is damaged: its runs table is "
                             "missing. Keep the file for inspection and pass a new --db path "
                             "(simlab never recreates tables in an existing store).")
        meta = dict(self._con.execute("SELECT key, value FROM meta"))
        found = meta.get("schema_version")
        if found != str(SCHEMA_VERSION):
            raise StoreError(
                f"results store {self.path} has schema version {found} "
                f"(written by {meta.get('created_by', 'an unknown simlab')}); this simlab "
                f"{__version__} reads version {SCHEMA_VERSION}. Open it with the simlab that "
                "wrote it (e.g. to `simlab export` it), or pass a new --db path.")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock up front, so concurrent writers queue cleanly."""
        self._con.execute("BEGIN IMMEDIATE")
        try:
            yield self._con
            self._con.execute("COMMIT")
        except BaseException:
            if self._con.in_transaction:     # SQLite may have rolled back already (disk full)
                self._con.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------
    def done_keys(self) -> set[str]:
        """Keys of cells that finished (ok or diverged); failed cells are not done."""
        rows = self._con.execute(
            f"SELECT key FROM runs WHERE status IN {FINISHED!r}").fetchall()
        return {r[0] for r in rows}

    def write(self, cell: Cell, outcome: RunResult | CellError | BaseException, *,
              config: Mapping[str, Any] | str | None = None, started: str | None = None,
              finished: str | None = None) -> int:
        """Write one run (replacing an earlier run of the same cell) in one transaction.

        ``config`` (the scenario's config) is stored once per fingerprint. Returns the run_id.
        """
        if isinstance(outcome, BaseException):
            outcome = CellError(f"{type(outcome).__name__}: {outcome}")
        if isinstance(outcome, RunResult):
            status, error = outcome.status, None
            seconds = outcome.timings.get("total_s")
            timings, log = outcome.timings, outcome.log
        else:
            status, error, seconds = "failed", outcome.traceback or outcome.message, outcome.seconds
            timings, log = {}, {"message": outcome.message}
        if status not in STATUSES:
            raise ValueError(f"run status {status!r} is not one of {STATUSES}")
        finished = finished or utc_now()
        try:
            return self._write(cell, outcome, status, error, seconds, timings, log, config,
                               started, finished)
        except sqlite3.OperationalError as err:      # disk full, I/O error, read-only
            raise StoreError(
                f"cannot write the run of {cell.describe()} to the results store {self.path} "
                f"({err}); nothing of this cell was stored and the runs already stored are "
                "intact. Free disk space (or pass another --db) and run the same command "
                "again: it resumes with this cell") from err

    def _write(self, cell: Cell, outcome: RunResult | CellError, status: str,
               error: str | None, seconds: float | None, timings: Mapping[str, Any],
               log: Mapping[str, Any], config: Mapping[str, Any] | str | None,
               started: str | None, finished: str) -> int:
        """``write``'s one transaction (all of the run or none of it)."""
        with self._transaction() as con:
            self._delete_cell(cell.key)
            cur = con.execute(
                "INSERT INTO runs (key, scenario, fingerprint, seed, learner, learner_name, "
                "hyperparameters, device, version, status, error, started, finished, seconds, "
                "timings, log) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (cell.key, cell.scenario, cell.fingerprint, int(cell.seed), cell.label,
                 cell.learner_name, to_json(cell.hyperparameters), cell.device, code_version(),
                 status, error, started or finished, finished,
                 None if seconds is None else float(seconds), log_json(timings), log_json(log)))
            assert cur.lastrowid is not None        # set by every INSERT
            run_id = int(cur.lastrowid)
            if config is not None:
                text = config if isinstance(config, str) else to_json(config)
                con.execute("INSERT OR IGNORE INTO configs VALUES (?,?,?)",
                            (cell.fingerprint, cell.scenario, text))
            if isinstance(outcome, RunResult):
                self._write_result(run_id, cell, outcome)
        return run_id

    def _delete_cell(self, key: str) -> None:
        old = [r[0] for r in self._con.execute("SELECT run_id FROM runs WHERE key=?", (key,))]
        for table in ("metrics", "summaries", "prevalence", "runs"):
            self._con.executemany(f"DELETE FROM {table} WHERE run_id=?", [(r,) for r in old])

    def _write_result(self, run_id: int, cell: Cell, result: RunResult) -> None:
        rec = result.records
        missing = [c for c in RECORD_COLUMNS if c not in rec.columns]
        if missing:
            raise ValueError(f"RunResult.records lacks columns {missing}")
        self._con.executemany(
            "INSERT INTO metrics VALUES (?,?,?,?,?,?)",
            ((run_id, int(w), int(k), int(s), str(m), _num(v)) for w, k, s, m, v in
             rec[RECORD_COLUMNS].itertuples(index=False, name=None)))
        self._con.executemany("INSERT OR REPLACE INTO summaries VALUES (?,?,?)",
                              ((run_id, str(n), _num(v)) for n, v in result.summary.items()))
        prev = result.prevalence
        if len(prev):
            self._con.executemany(
                "INSERT INTO prevalence VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                ((run_id, int(r[0]), int(r[1]), str(r[2]), int(r[3]), *map(_num, r[4:9]),
                  int(r[9]), _num(r[10]), _num(r[11]))
                 for r in prev[GROUP_COLUMNS].itertuples(index=False, name=None)))
        have = self._con.execute("SELECT 1 FROM shifts WHERE fingerprint=? AND seed=? LIMIT 1",
                                 (cell.fingerprint, int(cell.seed))).fetchone()
        if have is None and len(result.shifts):
            self._con.executemany(
                "INSERT INTO shifts VALUES (?,?,?,?,?,?,?,?)",
                ((cell.fingerprint, int(cell.seed), int(w), int(t), str(k), str(n), str(g),
                  _num(z)) for w, t, k, n, g, z in
                 result.shifts[SHIFT_COLUMNS].itertuples(index=False, name=None)))

    # -- reading ------------------------------------------------------------------------------
    def _read(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        return pd.read_sql_query(sql, self._con, params=params)

    def _metrics(self, marks: str, ids: tuple[int, ...]) -> pd.DataFrame:
        """The metric rows of runs ``ids`` in insertion order, read as numbers only: the metric
        name comes back as a code (a CASE over the distinct names) and the rows go through one
        float64 array, about a third faster than a frame of mixed Python objects at millions of
        rows (a 10,000-run store); any row that does not fit (a non-numeric value) falls back
        to the plain read."""
        sql = f"FROM metrics WHERE run_id IN ({marks}) ORDER BY rowid"
        plain = f"SELECT run_id, {', '.join(RECORD_COLUMNS)} {sql}"
        names = [r[0] for r in self._con.execute("SELECT DISTINCT metric FROM metrics")]
        if not names or not ids:
            return self._read(plain, ids)
        code = "CASE metric " + " ".join(f"WHEN ? THEN {i}" for i in range(len(names))) + " END"
        rows = self._con.execute(f"SELECT run_id, wave, shots, steps, {code}, value {sql}",
                                 (*names, *ids)).fetchall()
        try:
            a = np.array(rows, dtype=np.float64).reshape(-1, 6)
        except (TypeError, ValueError):
            return self._read(plain, ids)
        del rows
        cols = {c: a[:, j].astype(np.int64) for j, c in enumerate(("run_id", "wave", "shots",
                                                                    "steps"))}
        metric = np.asarray(names, dtype=object)[a[:, 4].astype(np.int64)]
        return pd.DataFrame({**cols, "metric": metric, "value": a[:, 5]})[["run_id",
                                                                           *RECORD_COLUMNS]]

    def frames(self, scenario: str | Sequence[str] | None = None, *,
               latest: bool = True) -> dict[str, pd.DataFrame]:
        """The long-format frames the report reads: runs, metrics, shifts, summaries, configs
        (of every scenario, or of ``scenario``: one name or several).

        ``latest`` keeps, per scenario name, only the fingerprint run most recently (an edited
        scenario file gives a new fingerprint; mixing the two would break paired comparisons)
        and, per (seed, learner), the latest run.
        """
        runs = self._runs()
        if scenario is not None:
            wanted = [scenario] if isinstance(scenario, str) else list(scenario)
            missing = [s for s in wanted if s not in set(runs["scenario"])]
            if missing:
                have = ", ".join(sorted(set(runs["scenario"]))) or "none"
                raise StoreError(f"no runs of scenario {missing[0]!r} in {self.path}; "
                                 f"scenarios in the store: {have}")
            runs = runs[runs["scenario"].isin(wanted)]
        if latest and len(runs):
            last = runs.groupby(["scenario", "fingerprint"])["finished"].max().reset_index()
            keep = last.sort_values("finished").groupby("scenario").tail(1)["fingerprint"]
            runs = runs[runs["fingerprint"].isin(set(keep))]
            runs = runs.sort_values("run_id").groupby(["scenario", "seed", "learner"]).tail(1)
        runs = runs.reset_index(drop=True)
        ids = tuple(int(i) for i in runs["run_id"])
        marks = ",".join("?" * len(ids)) or "NULL"
        metrics = self._metrics(marks, ids)
        summaries = self._read(f"SELECT run_id, name, value FROM summaries "
                               f"WHERE run_id IN ({marks}) ORDER BY run_id, name", ids)
        streams = runs[["scenario", "fingerprint", "seed"]].drop_duplicates()
        shifts = self._read(f"SELECT fingerprint, seed, {', '.join(SHIFT_COLUMNS)} FROM shifts "
                            "ORDER BY rowid")
        shifts = streams.merge(shifts, on=["fingerprint", "seed"])[
            ["scenario", "seed", *SHIFT_COLUMNS, "fingerprint"]]
        configs = self._read("SELECT fingerprint, scenario, config FROM configs")
        configs = configs[configs["fingerprint"].isin(set(runs["fingerprint"]))]
        for frame, col in ((metrics, "value"), (summaries, "value"), (shifts, "size")):
            frame[col] = pd.to_numeric(frame[col], errors="coerce")   # NULL (NaN) -> float
        return {"runs": runs, "metrics": metrics, "shifts": shifts.reset_index(drop=True),
                "summaries": summaries, "configs": configs.reset_index(drop=True)}

    def prevalence(self, runs: pd.DataFrame) -> pd.DataFrame:
        """The group x wave prevalence estimates of ``runs`` (a ``frames()["runs"]`` frame) as
        one tidy frame (``PREVALENCE_EXPORT``: K is the shots; ``category`` the class for
        multiclass, -1 for P(y=1) / a mean; ``wave_time`` the survey year where known). Empty
        (same columns) for a store written before the table existed."""
        ids = tuple(int(i) for i in runs["run_id"])
        if "prevalence" not in self._tables() or not ids:
            return pd.DataFrame(columns=PREVALENCE_EXPORT)
        marks = ",".join("?" * len(ids))
        cols = ", ".join(f'"{c}"' for c in GROUP_COLUMNS)
        rows = self._read(f"SELECT run_id, {cols} FROM prevalence WHERE run_id IN ({marks}) "
                          "ORDER BY rowid", ids)
        for c in ("estimate", "lo", "hi", "observed", "truth", "lo_model", "hi_model"):
            rows[c] = pd.to_numeric(rows[c], errors="coerce")      # NULL -> NaN
        out = runs[["run_id", "scenario", "learner", "seed"]].merge(rows, on="run_id")
        times = {int(r): _wave_times(t) for r, t in zip(runs["run_id"], runs.get(
            "wave_times", pd.Series([None] * len(runs), index=runs.index)))}
        out["wave_time"] = [times.get(int(r), {}).get(int(w), "") for r, w in
                            zip(out["run_id"], out["wave"])]
        return out.rename(columns={"shots": "K"})[PREVALENCE_EXPORT]

    def _runs(self) -> pd.DataFrame:
        """Every run with the ``_LOG_FIELDS`` of its log as columns: extracted by SQLite, or,
        for a store whose older logs hold bare ``NaN`` tokens (not JSON, which SQLite
        refuses), parsed here (slower, so only then)."""
        cols = ("run_id, scenario, fingerprint, seed, learner, learner_name, hyperparameters, "
                "device, version, status, error, started, finished, seconds, timings")
        fields = ", ".join(f"json_extract(log, '$.{n}') AS {n}" for n in _LOG_FIELDS)
        try:
            return self._read(f"SELECT {cols}, {fields} FROM runs ORDER BY run_id")
        except (sqlite3.OperationalError, pd.errors.DatabaseError) as err:
            if "malformed JSON" not in str(err):
                raise
        runs = self._read(f"SELECT {cols}, log FROM runs ORDER BY run_id")
        parsed = [_log_fields(text) for text in runs.pop("log")]
        for name in _LOG_FIELDS:
            runs[name] = pd.Series([f[name] for f in parsed], index=runs.index, dtype=object)
        return runs

    def configs(self) -> dict[str, dict[str, Any]]:
        """Scenario config of every fingerprint (by fingerprint)."""
        rows = self._con.execute("SELECT fingerprint, config FROM configs")
        return {fp: json.loads(text) for fp, text in rows}

    def export(self, path: str | Path, fmt: str | None = None, *,
               latest: bool = False) -> list[Path]:
        """Write the metrics as one tidy file (run columns joined in), plus runs, summaries and
        shifts alongside (``NAME.runs.csv`` ...). ``fmt`` defaults to the file's suffix."""
        path = Path(path)
        fmt = (fmt or path.suffix.lstrip(".") or "csv").lower()
        if fmt not in ("csv", "parquet"):
            raise StoreError(f"export format {fmt!r} is not supported; use csv or parquet")
        if path.suffix.lstrip(".").lower() != fmt:
            path = path.with_name(path.name + f".{fmt}")
        f = self.frames(latest=latest)
        if f["runs"].empty:
            raise StoreError(f"results store {self.path} has no runs to export")
        f["runs"] = self._with_used_hyperparameters(f["runs"])
        cols = ["run_id", "scenario", "seed", "learner", "hyperparameters", "status"]
        tidy = f["runs"][cols].merge(f["metrics"], on="run_id")
        tables = {"": tidy, ".runs": f["runs"], ".summaries": f["runs"][cols[:4]].merge(
            f["summaries"], on="run_id"), ".shifts": f["shifts"],
            ".prevalence": self.prevalence(f["runs"])}
        path.parent.mkdir(parents=True, exist_ok=True)
        written = []
        for suffix, frame in tables.items():
            out = path.with_name(path.stem + suffix + path.suffix)
            if fmt == "csv":
                frame.to_csv(out, index=False)
            else:
                frame.to_parquet(out, index=False)
            written.append(out)
        return written

    def _with_used_hyperparameters(self, runs: pd.DataFrame) -> pd.DataFrame:
        """``hyperparameters`` = what the run used (its log's, tuned values included; the
        configured ones for a run without a log), the configured ones kept as
        ``hyperparameters_configured``."""
        # extracted by SQLite; an older log with bare NaN tokens (not JSON) parsed here
        rows = self._con.execute(
            "SELECT run_id, CASE WHEN json_valid(log) THEN json_extract(log, "
            "'$.hyperparameters') END, CASE WHEN json_valid(log) THEN NULL ELSE log END "
            "FROM runs").fetchall()
        used = {rid: _canonical(text) if text is not None else _used_text(raw)
                for rid, text, raw in rows}
        out = runs.rename(columns={"hyperparameters": "hyperparameters_configured"})
        out.insert(list(out.columns).index("hyperparameters_configured"), "hyperparameters", [
            used.get(r) or c for r, c in
            zip(out["run_id"], out["hyperparameters_configured"])])
        return out

    def _used(self, rid: int) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """The hyperparameters run ``rid`` used (None without a log) and what tuning chose."""
        row = self._con.execute("SELECT log FROM runs WHERE run_id=?", (rid,)).fetchone()
        log = read_log(row[0] if row else None)
        tuning = log.get("tuning")
        best = tuning.get("best_params") if isinstance(tuning, dict) else None
        return log.get("hyperparameters"), best or {}

    def run_ids(self) -> list[int]:
        return [int(r[0]) for r in self._con.execute("SELECT run_id FROM runs ORDER BY run_id")]

    def run_info(self, run_id: int | str) -> dict[str, Any]:
        """One run as plain data (``simlab show --json``): the cell, status, timings, log,
        summaries and the mean of every metric over waves per (shots, steps)."""
        rid = self._find_run(run_id)
        cols = ["run_id", "key", "scenario", "fingerprint", "seed", "learner", "hyperparameters",
                "device", "version", "status", "error", "started", "finished", "seconds",
                "timings"]
        row = dict(zip(cols, self._con.execute(f"SELECT {', '.join(cols)} FROM runs WHERE "
                                               "run_id=?", (rid,)).fetchone()))
        for k in ("hyperparameters", "timings"):
            row[k] = json.loads(row[k] or "{}")
        used, tuned = self._used(rid)
        row["hyperparameters_configured"] = row["hyperparameters"]
        row["hyperparameters"] = used if used is not None else row["hyperparameters"]
        row["tuned"] = tuned
        row["summaries"] = dict(self._con.execute(
            "SELECT name, value FROM summaries WHERE run_id=? ORDER BY name", (rid,)).fetchall())
        curve = self._read("SELECT shots, steps, metric, AVG(value) AS mean FROM metrics "
                           "WHERE run_id=? GROUP BY shots, steps, metric", (rid,))
        row["metrics"] = curve.to_dict(orient="records")
        return row

    def _find_run(self, run_id: int | str) -> int:
        """The run id of ``run_id`` (an id, or a unique prefix of a cell key)."""
        text = str(run_id).strip()
        row = self._con.execute("SELECT run_id FROM runs WHERE run_id=?",
                                (int(text),)).fetchall() if text.isdigit() else []
        if not row and text:
            row = self._con.execute("SELECT run_id FROM runs WHERE key LIKE ?",
                                    (text.lower() + "%",)).fetchall()
        if len(row) != 1:
            ids = self.run_ids()
            span = f"{ids[0]}..{ids[-1]}" if ids else "none (the store is empty)"
            what = "matches several runs" if row else "is not in"
            raise StoreError(f"run {run_id!r} {what} {self.path}; run ids: {span} "
                             "(or give a unique prefix of a cell key)")
        return int(row[0][0])

    def show(self, run_id: int | str) -> str:
        """A readable account of one run: cell, status, timings, summaries, error, curve."""
        cols = ("run_id, key, scenario, fingerprint, seed, learner, hyperparameters, device, "
                "version, status, error, started, finished, seconds, timings")
        row = self._con.execute(f"SELECT {cols} FROM runs WHERE run_id=?",
                                (self._find_run(run_id),)).fetchall()
        (rid, key, scen, fp, seed, learner, hp, device, version, status, error, started,
         finished, seconds, timings) = row[0]
        used, tuned = self._used(rid)
        shown = hp if used is None else to_json(used)
        lines = [f"run {rid}  [{status}]",
                 f"  scenario      {scen} (fingerprint {fp[:12]})  seed {seed}",
                 f"  learner       {learner}  on {device}",
                 f"  hyperparams   {shown}"
                 + (" (what the run used)" if used is not None and shown != hp else ""),
                 *(["  tuned         " + ", ".join(f"{k}={v!r}" for k, v in tuned.items()),
                    f"  configured    {hp}"] if tuned else []),
                 f"  cell key      {key}",
                 f"  simlab        {version}; {started} -> {finished}"
                 + (f" ({seconds:.1f} s)" if seconds is not None else ""),
                 "  timings       " + (", ".join(
                     f"{k} {v:.2f}" for k, v in json.loads(timings or "{}").items()
                     if isinstance(v, (int, float))) or "-")]
        summ = self._con.execute("SELECT name, value FROM summaries WHERE run_id=? ORDER BY name",
                                 (rid,)).fetchall()
        if summ:
            lines.append("  summaries")
            lines += [f"    {n:<28} {'nan' if v is None else f'{v:.4g}'}" for n, v in summ]
        if error:
            lines.append("  error")
            lines += ["    " + ln for ln in error.rstrip().splitlines()]
        curve = self._read("SELECT shots, steps, metric, AVG(value) AS mean FROM metrics "
                           "WHERE run_id=? GROUP BY shots, steps, metric", (rid,))
        if not curve.empty:
            table = curve.pivot_table(index=["shots", "steps"], columns="metric", values="mean")
            lines.append("  metrics (mean over waves)")
            lines += ["    " + ln for ln in table.to_string(float_format="%.4g").splitlines()]
        return "\n".join(lines)
