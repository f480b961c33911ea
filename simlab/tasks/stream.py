"""Generate, cache and summarise the task stream of a scenario.

A stream is a pure function of (validated scenario config, seed): every random draw comes from
one ``np.random.SeedSequence(seed)`` spawned into named children (graph, population, society,
survey), so the same pair gives byte-identical arrays on the same machine, whoever runs it.
Streams are cached on disk as one ``.npz`` (arrays plus JSON metadata, no pickle), keyed by a
hash of the scenario's stream-relevant config, the seed, the format version and the source of
the code that generates it, so a changed config or changed dynamics never reuse a stale file.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import warnings
import zipfile
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from simlab.tasks.task import ShiftEvent, Task, TaskStream

if TYPE_CHECKING:  # pragma: no cover
    from simlab.experiment.config import Scenario


class StreamSource(Protocol):
    """What the stream cache needs of a scenario (simulated or real survey)."""

    name: str

    def fingerprint(self) -> str: ...

    def stream_fingerprint(self) -> str: ...

    def code_digest(self) -> str: ...

    def generate_stream(self, seed: int) -> TaskStream: ...

STREAM_FORMAT_VERSION = 1
SEED_STREAMS: tuple[str, ...] = ("graph", "population", "society", "survey", "response",
                                  "ceiling")
"""Appended names keep the earlier children's draws (``spawn`` numbers children in order)."""
_ARRAY_FIELDS: tuple[str, ...] = ("x_support", "y_support", "x_query", "y_query",
                                  "oracle_query", "w_support", "w_query", "ceiling_query")


# --- seeds ------------------------------------------------------------------------------------
def check_seed(seed: Any) -> int:
    """A stream seed must be a non-negative int (what ``SeedSequence`` accepts)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} is invalid; give a non-negative integer such as 0")
    return int(seed)


def seed_streams(seed: int) -> dict[str, np.random.SeedSequence]:
    """Independent child seeds, one per consumer of randomness, from one root seed.

    Spawning (rather than ``seed + 1`` etc.) gives statistically independent streams and
    keeps each consumer's draws unchanged when another consumer draws more or fewer numbers.
    """
    children = np.random.SeedSequence(check_seed(seed)).spawn(len(SEED_STREAMS))
    return dict(zip(SEED_STREAMS, children))


# --- generation -------------------------------------------------------------------------------
def generate_stream(scenario: Scenario, seed: int) -> TaskStream:
    """Run the scenario's society and survey it: burn-in, then one wave every ``every`` ticks.

    Each fired shock becomes a ``ShiftEvent`` whose ``wave`` is the first wave surveyed at or
    after the tick it fired (wave w is surveyed after tick ``burn_in + (w + 1) * every``; a
    shock fires at the start of its tick, so that tick's wave already sees it).
    """
    from simlab.society.ceiling import CeilingEstimator
    from simlab.society.reporters import Reporters
    from simlab.society.survey import feature_names, sample_wave

    seeds = seed_streams(seed)
    society = scenario.build_society(seeds)
    design = scenario.survey
    survey_rng = np.random.default_rng(seeds["survey"])
    ceiling = CeilingEstimator() if design.ceiling else None
    ceiling_rng = np.random.default_rng(seeds["ceiling"])
    reporters = Reporters(society)
    for _ in range(scenario.burn_in):
        society.step()
    reporters.collect()
    waves: list[list[Task]] = []
    for w in range(design.waves):
        for _ in range(design.every):
            society.step()
            reporters.collect()
        tasks = list(sample_wave(society, design, w, survey_rng, ceiling, ceiling_rng))
        if design.wave_groups is not None:      # a survey design that skips some groups
            tasks = [t for t in tasks if t.info["group"] in set(design.wave_groups[w])]
        waves.append(tasks)
    shifts = shift_events(society.events, scenario.burn_in, design.every, design.waves)
    shifted = {s.wave for s in shifts}
    for wave in waves:
        for task in wave:
            task.info.update(scenario=scenario.name, seed=int(seed),
                             shift=task.info.get("wave") in shifted)
    meta = {"scenario": scenario.name, "seed": int(seed), "family": society.family,
            "target": society.target, "n_classes": int(society.n_classes),
            "feature_names": feature_names(society, design), "fingerprint": scenario.fingerprint(),
            "n_agents": int(society.n_agents), "n_groups": int(society.social.n_groups),
            "burn_in": int(scenario.burn_in), "every": int(design.every),
            "response": society.response_spec.kind, "reporters": reporters.table()}
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
    header = {
        "format": STREAM_FORMAT_VERSION,
        "wave_sizes": [len(w) for w in stream.waves],
        "tasks": [{"target": t.target, "n_classes": int(t.n_classes), "shots": t.shots,
                   "n_query": t.n_query, "info": t.info,
                   "has": [n for n in _ARRAY_FIELDS if getattr(t, n) is not None]}
                  for t in tasks],
        "shifts": [vars(s) for s in stream.shifts],
        "meta": stream.meta,
    }
    arrays["header"] = np.frombuffer(json.dumps(header, default=_json_default).encode(),
                                     dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)
    return path


def load_stream(path: str | Path) -> TaskStream:
    """Read a stream written by ``save_stream``; a damaged file raises ``ValueError``."""
    try:
        with np.load(Path(path), allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
        header = json.loads(data.pop("header").tobytes().decode())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable simlab stream file ({err})") from err
    if header.get("format") != STREAM_FORMAT_VERSION:
        raise ValueError(f"{path}: stream format {header.get('format')!r}, this simlab reads "
                         f"{STREAM_FORMAT_VERSION}; delete the file to regenerate it")
    try:
        return _unpack(data, header)
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: inconsistent simlab stream file ({err})") from err


def _unpack(data: dict[str, np.ndarray], header: dict[str, Any]) -> TaskStream:
    offsets = dict.fromkeys(_ARRAY_FIELDS, 0)
    tasks = []
    for rec in header["tasks"]:
        fields: dict[str, np.ndarray | None] = {}
        for name in _ARRAY_FIELDS:
            if name not in rec["has"]:
                fields[name] = None
                continue
            n = rec["shots"] if name.endswith("support") else rec["n_query"]
            start = offsets[name]
            fields[name] = data[name][start:start + n]
            if fields[name].shape[0] != n:
                raise ValueError(f"field {name} is truncated")
            offsets[name] = start + n
        tasks.append(Task(target=rec["target"], n_classes=rec["n_classes"], info=rec["info"],
                          **fields))
    if any(name in data and offsets[name] != data[name].shape[0] for name in _ARRAY_FIELDS):
        raise ValueError("arrays longer than the task records")
    waves, start = [], 0
    for size in header["wave_sizes"]:
        waves.append(tasks[start:start + size])
        start += size
    shifts = [ShiftEvent(**s) for s in header["shifts"]]
    return TaskStream(waves=waves, shifts=shifts, meta=header["meta"])


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


@lru_cache(maxsize=16)
def code_digest(extra: tuple[str, ...] = ()) -> str:
    """Hash of the source that turns a config into a stream: the society package, the task
    and stream modules, and ``extra`` files (a user's own dynamics family).

    Part of the cache key, so editing a dynamics model never serves streams made by the old one.
    """
    import simlab.society as society_pkg

    here = Path(__file__)
    files = sorted(Path(society_pkg.__file__).parent.glob("*.py"))
    files += [here, here.with_name("task.py")] + [Path(f) for f in extra]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def family_code_digest(family: str) -> str:
    """``code_digest`` for a dynamics family: a user's own class adds its source file."""
    import simlab.society as society_pkg

    source = inspect.getsourcefile(society_pkg.society_class(family))
    own = Path(society_pkg.__file__).parent
    return code_digest((source,) if source and Path(source).parent != own else ())


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
            stream = load_stream(path)
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


# --- summary ----------------------------------------------------------------------------------
def stream_summary(stream: TaskStream) -> str:
    """A short human-readable account of a stream, for ``simlab stream``."""
    m = stream.meta
    first = stream.waves[0][0]
    kinds = f"{first.target}" + (f" ({first.n_classes} classes)" if first.target == "multiclass"
                                 else "")
    sizes = sorted({len(w) for w in stream.waves})
    q_sizes = sorted({t.n_query for t in stream.tasks()})
    lines = [
        f"scenario {m.get('scenario', '?')}  seed {m.get('seed', '?')}  "
        f"family {m.get('family', '?')}  target {kinds}",
        f"{len(stream)} waves x {'/'.join(map(str, sizes))} tasks  "
        f"K={first.shots}  Q={'/'.join(map(str, q_sizes))}  D={first.n_features}"
        + (f"  ({m.get('n_agents')} agents in {m.get('n_groups')} groups)"
           if "n_agents" in m else ""),
        f"features: {', '.join(m.get('feature_names') or []) or '?'}",
        f"{_prevalence_label(first)} per wave: "
        + " ".join(_fmt_prevalence(w) for w in stream.waves),
    ]
    if all(t.ceiling_query is not None for t in stream.tasks()):
        se = [t.info.get("ceiling_se", float("nan")) for t in stream.tasks()]
        lines.append(f"observable ceiling E[y | features, group, wave] per query respondent "
                     f"(response {m.get('response', '?')}; estimation error, RMS over tasks: "
                     f"{float(np.sqrt(np.nanmean(np.square(se)))):.3f})")
    if m.get("reporters"):
        lines.append(f"reporters ({len(m['reporters']['tick'])} ticks): "
                     + ", ".join(k for k in m["reporters"] if k != "tick"))
    if stream.shifts:
        lines.append("shifts:")
        lines += [f"  wave {s.wave:>3} (tick {s.tick}): {s.kind} {s.name!r} on {s.target}, "
                  f"size {s.size:+.3g}" for s in stream.shifts]
    else:
        lines.append("shifts: none")
    return "\n".join(lines)


def _prevalence_label(task: Task) -> str:
    return {"binary": "prevalence P(y=1)", "multiclass": "modal class share",
            "regression": "mean y"}[task.target]


def _fmt_prevalence(wave: list[Task]) -> str:
    ys = np.concatenate([np.concatenate([t.y_support, t.y_query]) for t in wave])
    if wave[0].target == "multiclass":
        counts = np.bincount(ys.astype(np.int64), minlength=wave[0].n_classes)
        return f"{int(counts.argmax())}:{counts.max() / counts.sum():.2f}"
    return f"{float(ys.mean()):.2f}"


__all__ = ["SEED_STREAMS", "STREAM_FORMAT_VERSION", "StreamSource", "cache_key", "cached_stream",
           "check_seed", "code_digest", "default_cache_dir", "family_code_digest",
           "generate_stream", "load_stream", "save_stream", "seed_streams", "shift_events",
           "stream_summary"]
