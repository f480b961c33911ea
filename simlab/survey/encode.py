"""A survey's rows -> float matrices: one-hot categoricals (category lists fixed over the whole
table), ordinal codes, missing-value indicators and the target's codes; then the stream's
one scaling.

The schema involves no labels, so it may be fixed over the whole file; imputation means and
standardisation come from revealed data only (:func:`revealed_scaling`: the respondents of the
stream's first wave, revealed before any wave is scored), one scale for the whole stream, so a
respondent's encoded value is the same whatever task or K it is in, and nothing of a scored
wave or a query set leaks into it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import pandas as pd

from simlab.errors import DataError
from simlab.survey.checks import check_categories
from simlab.survey.schema import SurveyData
from simlab.tasks.task import TargetKind


@dataclass(frozen=True)
class Encoded:
    """The survey as a float matrix (NaN where a numeric value is missing) plus its schema."""

    x: np.ndarray            # [N, D]
    numeric: np.ndarray      # [D] bool: standardise these columns
    names: list[str]
    y: np.ndarray
    w: np.ndarray | None
    n_classes: int


def encode_target(col: pd.Series, kind: TargetKind) -> tuple[np.ndarray, int]:
    """Numeric 0/1 for binary, category codes for multiclass, floats for regression."""
    name = col.name
    if kind == "multiclass":
        codes = pd.Categorical(col).codes
        return codes.astype(np.int64), int(codes.max()) + 1
    if not pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        raise DataError(f"data.target: column {name!r} is not numeric (e.g. {col.iloc[0]!r}); "
                        f"a {kind} target needs numbers: recode it or use target_kind = "
                        "'multiclass'")
    y = col.to_numpy(dtype=np.float32)
    if kind == "binary" and not np.isin(y, (0.0, 1.0)).all():
        raise DataError(f"data.target: binary column {name!r} has values other than 0/1 "
                        f"({sorted(set(np.unique(y)) - {0.0, 1.0})[:5]}); recode it")
    return y, 2 if kind == "binary" else 1


def encode_ordinal(col: pd.Series, order: list[Any]) -> np.ndarray:
    """Ordered categories -> 0, 1, ... (NaN stays NaN); a value not in ``order`` is an error."""
    codes = {str(v): float(i) for i, v in enumerate(order)}
    keys = col.map(lambda v: None if pd.isna(v) else str(v))
    unknown = sorted(set(keys.dropna()) - set(codes))
    if unknown:
        raise DataError(f"data.ordinal.{col.name}: value(s) {unknown[:5]} of column "
                        f"{col.name!r} are not in the listed order {order!r}; add them")
    return keys.map(codes).to_numpy(dtype=np.float64)


def encode(df: pd.DataFrame, spec: SurveyData) -> Encoded:
    """One-hot categoricals (fixed category lists), ordinal codes and missing-value
    indicators."""
    x, numeric, names = encode_features(df, spec)
    y, n_classes = encode_target(df[spec.target], spec.target_kind)
    w = None if spec.weights is None else df[spec.weights].to_numpy(dtype=np.float64)
    return Encoded(x, numeric, names, y, w, n_classes)


def encode_features(df: pd.DataFrame, spec: SurveyData) -> tuple[np.ndarray, np.ndarray,
                                                                 list[str]]:
    """The feature columns as floats ``[N, D]``, which are numeric ``[D]``, and their names."""
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
            check_categories(col, len(cats), len(s))
            blocks.append(s.to_numpy()[:, None] == np.array(cats, dtype=object)[None, :])
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
    return np.concatenate([b.astype(np.float64) for b in blocks], axis=1), np.array(numeric), \
        names


def feature_kinds(x: np.ndarray) -> list[str]:
    """"binary" for a column whose observed values are all 0/1 (indicators, one-hot codes,
    0/1 answers), else "continuous"; what a simulated twin matches."""
    finite = np.where(np.isnan(x), 0.0, x)
    binary = np.asarray(np.isin(finite, (0.0, 1.0)).all(axis=0))
    return ["binary" if b else "continuous" for b in binary]


Scaling = tuple[np.ndarray, np.ndarray]        # mean, sd of the numeric columns


def revealed_scaling(x: np.ndarray, numeric: np.ndarray) -> Scaling:
    """Mean and sd of the numeric columns over ``x``: the respondents of the stream's first
    wave, which every protocol reveals before it scores a wave (``evaluation.warmup`` >= 1).
    One scale for the whole stream, so a respondent's encoded value does not depend on the
    task it is in nor on K (a task's own support set at K = 5 would make the scale noise), and
    nothing of a scored wave enters it."""
    cols = x[:, numeric]
    if not cols.size:
        return np.zeros(int(np.sum(numeric)), np.float64), np.ones(int(np.sum(numeric)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # an all-missing column
        return np.nan_to_num(np.nanmean(cols, axis=0)), np.nan_to_num(np.nanstd(cols, axis=0))


@overload
def standardised(x: np.ndarray, numeric: np.ndarray, scaling: Scaling,
                 also: None = None) -> np.ndarray: ...
@overload
def standardised(x: np.ndarray, numeric: np.ndarray, scaling: Scaling,
                 also: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
def standardised(x: np.ndarray, numeric: np.ndarray, scaling: Scaling,
                 also: np.ndarray | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Impute (with the mean) and standardise the numeric columns with ``scaling``
    (:func:`revealed_scaling`); with ``also`` (census cells), those rows too, alike."""
    mean, std = scaling

    def scaled(rows: np.ndarray) -> np.ndarray:
        rows = rows.copy()
        cols = rows[:, numeric]
        cols = np.where(np.isnan(cols), mean, cols)
        rows[:, numeric] = (cols - mean) / np.where(std > 0, std, 1.0)
        return rows.astype(np.float32)

    return scaled(x) if also is None else (scaled(x), scaled(also))


__all__ = ["Encoded", "Scaling", "encode", "encode_features", "encode_ordinal", "encode_target",
           "feature_kinds", "revealed_scaling", "standardised"]
