"""The stream file format and the stream cache: a leaf of the package (tasks/ imports nothing
above it).

Streams are cached on disk as one ``.npz`` (arrays plus JSON metadata, no pickle), keyed by a
hash of the scenario's stream-relevant config, the seed, the format version and the digest of
the code that generates it (``StreamSource.code_digest``: for a simulated scenario,
``simlab.society.run.code_digest``), so a changed config or changed dynamics never reuse a stale
file. Who makes a stream is behind the :class:`StreamSource` protocol (a simulated ``Scenario``
runs its society, a ``SurveyScenario`` reads its data); this module never imports them.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from simlab.errors import DataError
from simlab.schema import check_seed
from simlab.tasks.task import Cells, ShiftEvent, Task, TaskStream


class StreamSource(Protocol):
    """What the stream cache needs of a scenario (simulated or real survey)."""

    @property
    def name(self) -> str:
        """The scenario's name (read only: a validated scenario is frozen)."""

    def fingerprint(self) -> str:
        """sha256 of the whole config (recorded in the stream's metadata)."""

    def stream_fingerprint(self) -> str:
        """sha256 of only what the stream depends on (part of the cache key)."""

    def code_digest(self) -> str:
        """Hash of every piece of code that shapes the stream (part of the cache key)."""

    def generate_stream(self, seed: int) -> TaskStream:
        """The stream for ``seed``, made afresh (the cache calls it on a miss)."""


STREAM_FORMAT_VERSION = 2
"""2: tasks may carry population cells (``Task.cells``: arrays ``cells_x``/``cells_share``,
per-task ``cells`` header entries). Format 1 files (no cells) are still read."""
READABLE_FORMATS: tuple[int, ...] = (1, 2)
_ARRAY_FIELDS: tuple[str, ...] = ("x_support", "y_support", "x_query", "y_query",
                                  "oracle_query", "w_support", "w_query", "ceiling_query")


# --- disk format ------------------------------------------------------------------------------
def save_stream(stream: TaskStream, path: str | Path) -> Path:
    """Write a stream to one ``.npz``: each array field concatenated over tasks, plus JSON.

    Written to a temporary file and renamed, so a crash never leaves a half-written cache.
    """
    path = Path(path)
    tasks = stream.tasks()
    arrays: dict[str, np.ndarray] = {}
    for name in _ARRAY_FIELDS:
        parts = [getattr(t, name) for t in tasks if getattr(t, name) is not None]
        if parts:
            arrays[name] = _concat(name, parts)
    with_cells = [t.cells for t in tasks if t.cells is not None]
    if with_cells:
        arrays["cells_x"] = _concat("cells.x", [np.asarray(c.x, np.float32) for c in with_cells])
        unequal = [np.asarray(c.share, np.float32) for c in with_cells if not _equal(c.share)]
        if unequal:            # float32, renormalised on reading; equal shares are not stored
            arrays["cells_share"] = np.concatenate(unequal)
    header = {
        "format": STREAM_FORMAT_VERSION,
        "wave_sizes": [len(w) for w in stream.waves],
        "tasks": [{"target": t.target, "n_classes": int(t.n_classes), "shots": t.shots,
                   "n_query": t.n_query, "info": t.info,
                   "has": [n for n in _ARRAY_FIELDS if getattr(t, n) is not None],
                   **_cells_header(t.cells)}
                  for t in tasks],
        "shifts": [vars(s) for s in stream.shifts],
        "meta": stream.meta,
    }
    arrays["header"] = np.frombuffer(json.dumps(header, default=_json_default).encode(),
                                     dtype=np.uint8)
    arrays["digest"] = np.frombuffer(content_digest(arrays).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            # numpy>=2.1 stubs: mypy matches **arrays against savez's allow_pickle: bool
            np.savez(fh, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:       # a full disk: no half-written .tmp left behind
        tmp.unlink(missing_ok=True)
        raise
    return path


def content_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of every array (name, dtype, shape, bytes) but the digest itself: stored in the
    file and checked on load, so a damaged or edited stream file is never used."""
    h = hashlib.sha256()
    for name in sorted(k for k in arrays if k != "digest"):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def load_stream(path: str | Path, *, require_digest: bool = False) -> TaskStream:
    """Read a stream written by ``save_stream``; a damaged file (or one whose content digest
    does not match, or, with ``require_digest``, one without a digest) raises ``ValueError``."""
    try:
        with np.load(Path(path), allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
        digest = data.pop("digest").tobytes().decode() if "digest" in data else None
        if digest is not None and digest != content_digest(data):
            raise ValueError("its content digest does not match (damaged or edited)")
        if digest is None and require_digest:
            raise ValueError("it has no content digest (written by another tool or version)")
        header = json.loads(data.pop("header").tobytes().decode())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable simlab stream file ({err})") from err
    if header.get("format") not in READABLE_FORMATS:
        raise DataError(f"{path}: stream format {header.get('format')!r}, this simlab reads "
                        f"formats {', '.join(map(str, READABLE_FORMATS))}; delete the file to "
                        "regenerate it")
    try:
        return _unpack(data, header)
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise DataError(f"{path}: inconsistent simlab stream file ({err})") from err


def _unpack(data: dict[str, np.ndarray], header: dict[str, Any]) -> TaskStream:
    offsets = dict.fromkeys(_ARRAY_FIELDS, 0)
    n_cells = (0, 0)
    tasks = []
    for rec in header["tasks"]:
        fields: dict[str, Any] = {}          # Task's array fields (None: absent)
        for name in _ARRAY_FIELDS:
            if name not in rec["has"]:
                fields[name] = None
                continue
            n = rec["shots"] if name.endswith("support") else rec["n_query"]
            start = offsets[name]
            fields[name] = part = data[name][start:start + n]
            if part.shape[0] != n:
                raise ValueError(f"field {name} is truncated")
            offsets[name] = start + n
        cells, n_cells = _unpack_cells(data, rec.get("cells"), n_cells)
        tasks.append(Task(target=rec["target"], n_classes=rec["n_classes"], info=rec["info"],
                          cells=cells, **fields))
    if any(name in data and offsets[name] != data[name].shape[0] for name in _ARRAY_FIELDS) \
            or n_cells != (len(data.get("cells_x", ())), len(data.get("cells_share", ()))):
        raise ValueError("arrays longer than the task records")
    waves, start = [], 0
    for size in header["wave_sizes"]:
        waves.append(tasks[start:start + size])
        start += size
    shifts = [ShiftEvent(**s) for s in header["shifts"]]
    return TaskStream(waves=waves, shifts=shifts, meta=header["meta"])


def _cells_header(cells: Cells | None) -> dict[str, Any]:
    """A task's cells in its header record: count, true prevalence (or null) and source."""
    if cells is None:
        return {}
    prev = cells.prevalence
    return {"cells": {"n": len(cells.share), "equal": _equal(cells.share),
                      "source": cells.source,
                      "prevalence": None if prev is None else np.asarray(prev).tolist()}}


def _equal(share: np.ndarray) -> bool:
    """All shares equal (a population of agents): the file stores only their count."""
    share = np.asarray(share)
    return bool(len(share) and np.all(share == share[0]))


def _unpack_cells(data: dict[str, np.ndarray], rec: dict[str, Any] | None,
                  start: tuple[int, int]) -> tuple[Cells | None, tuple[int, int]]:
    """The task's cells from the concatenated ``cells_*`` arrays, and the next offsets (rows
    of ``cells_x``, of ``cells_share``)."""
    if rec is None:
        return None, start
    n, (at_x, at_share) = int(rec["n"]), start
    x = data["cells_x"][at_x:at_x + n]
    if rec["equal"]:
        share = np.full(n, 1.0 / n)
    else:
        share = data["cells_share"][at_share:at_share + n].astype(np.float64)
        at_share += n
        share = share / share.sum()
    if len(x) != n or len(share) != n:
        raise ValueError("field cells is truncated")
    prev: Any = rec["prevalence"]
    prev = prev if prev is None or np.isscalar(prev) else np.asarray(prev, np.float64)
    return Cells(x, share, prev, rec["source"]), (at_x + n, at_share)


def _concat(name: str, parts: list[np.ndarray]) -> np.ndarray:
    kinds = {(p.dtype.str, p.shape[1:]) for p in parts}
    if len(kinds) > 1:
        raise ValueError(f"cannot save stream: tasks disagree on {name} dtype/shape: {kinds}")
    return np.concatenate(parts, axis=0)


def _json_default(obj: Any) -> Any:
    """numpy scalars and arrays in ``info``/``meta`` become plain JSON numbers and lists."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a stream file: {obj!r}")


# --- cache ------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$SIMLAB_CACHE/streams`` if set, else ``./.cache/simlab/streams``."""
    root = os.environ.get("SIMLAB_CACHE")
    return Path(root) / "streams" if root else Path.cwd() / ".cache" / "simlab" / "streams"


def cache_key(scenario: StreamSource, seed: int) -> str:
    """sha256 of (stream-relevant fingerprint, seed, format version, code digest)."""
    text = "|".join([scenario.stream_fingerprint(), str(check_seed(seed)),
                     str(STREAM_FORMAT_VERSION), scenario.code_digest()])
    return hashlib.sha256(text.encode()).hexdigest()


def cached_stream(scenario: StreamSource, seed: int,
                  cache_dir: str | Path | None = None) -> TaskStream:
    """The scenario's stream for ``seed``, from the disk cache when a valid entry exists.

    A missing, corrupt or mismatching file is (re)generated and written; the cache only saves
    time, it never changes what is returned. Simulated and survey scenarios share this cache.
    """
    key = cache_key(scenario, seed)
    name = f"{safe_name(scenario.name)}-seed{seed}-{key[:20]}.npz"
    path = Path(cache_dir or default_cache_dir()) / name
    if path.exists():
        try:
            stream = load_stream(path, require_digest=True)
            if stream.meta.get("cache_key") == key:
                stream.meta.update(scenario=scenario.name, fingerprint=scenario.fingerprint())
                return stream
        except ValueError:
            pass
    stream = scenario.generate_stream(seed)
    stream.meta["cache_key"] = key
    try:
        save_stream(stream, path)
    except OSError as err:       # the cache only saves time: an unwritable one costs only that
        warnings.warn(f"stream cache {path.parent} is not writable ({err.strerror}); the "
                      "stream is regenerated each time. Set SIMLAB_CACHE to a writable folder",
                      RuntimeWarning, stacklevel=2)
    return stream


def safe_name(name: str) -> str:
    """A scenario name as a file-name part: no path separators, no leading dots (a name such
    as ``../../escaped`` must not write outside the cache folder)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".")
    return cleaned[:80] or "scenario"


__all__ = ["STREAM_FORMAT_VERSION", "StreamSource", "cache_key", "cached_stream", "check_seed",
           "default_cache_dir", "load_stream", "safe_name", "save_stream"]
