"""The table as read -> typed cells: the codes that mean "missing", numbers written as text,
and the order of the time column.

Each problem a user can cause is one :class:`~simlab.errors.DataError` naming the column and
the fix: a stray text cell in a numeric column (which would otherwise turn the column into
one-hot dummies), a time column with no order.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from simlab.errors import DataError
from simlab.survey.schema import SurveyData

#: a share of numeric cells at or above which a text column is read as "numbers with strays"
NUMERIC_SHARE = 0.5


# --- missing codes and numeric cells --------------------------------------------------------------
def apply_missing_codes(df: pd.DataFrame, spec: SurveyData) -> pd.DataFrame:
    """The listed ``missing_codes`` (compared as values, and as text for text columns) become
    missing in the features and the target."""
    if not spec.missing_codes:
        return df
    codes = list(spec.missing_codes)
    text = {str(c).strip() for c in codes}
    df = df.copy()
    for col in dict.fromkeys([*spec.features, spec.target]):
        s = df[col]
        hit = s.isin(codes)
        if s.dtype == object or isinstance(s.dtype, pd.StringDtype):
            hit |= s.map(lambda v: isinstance(v, str) and v.strip() in text).astype(bool)
        if hit.any():
            df[col] = s.where(~hit)
            if isinstance(df[col].dtype, pd.CategoricalDtype):
                df[col] = df[col].cat.remove_unused_categories()
    return df


def numeric_cells(df: pd.DataFrame, spec: SurveyData) -> pd.DataFrame:
    """Columns declared numeric (``data.numeric``), and text columns whose cells are mostly
    numbers, must be all numbers: else one error listing the offending values and rows. Text
    cells that are numbers ("42") are converted."""
    cols = [c for c in dict.fromkeys([*spec.features, *spec.numeric])
            if c not in spec.categorical and c not in spec.ordinal]
    if spec.target_kind != "multiclass":
        cols.append(spec.target)
    out = df
    for col in cols:
        s = df[col]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            continue
        present = s.dropna()
        parsed = pd.to_numeric(present.map(lambda v: v.strip() if isinstance(v, str) else v),
                               errors="coerce")
        share = float(parsed.notna().mean()) if len(present) else 0.0
        declared = col in spec.numeric
        if not declared and share < NUMERIC_SHARE:
            continue                       # a genuine text column (one-hot; a text target
                                           # gets encode_target's message)
        bad = present[parsed.isna()]
        if len(bad):
            raise DataError(_non_numeric_message(col, bad, spec, declared and share <
                                                 NUMERIC_SHARE))
        if out is df:
            out = df.copy()
        out[col] = pd.to_numeric(s.map(lambda v: v.strip() if isinstance(v, str) else v))
    return out


def _non_numeric_message(col: str, bad: pd.Series, spec: SurveyData, mostly_text: bool) -> str:
    role = "data.target" if col == spec.target else (
        "data.numeric" if col in spec.numeric else "data.features")
    groups = bad.groupby(bad.astype(str), sort=False).apply(lambda g: list(g.index))
    shown = [f"{value!r} (row{'s' if len(rows) > 1 else ''} "
             f"{', '.join(map(str, rows[:5]))}{', ...' if len(rows) > 5 else ''})"
             for value, rows in list(groups.items())[:6]]
    more = f" and {len(groups) - 6} more value(s)" if len(groups) > 6 else ""
    values = [str(v) for v in list(groups.index)[:3]]
    fix = (f"list the codes that mean 'missing' in data.missing_codes (e.g. missing_codes = "
           f"{values!r}), fix those cells in the data")
    if col != spec.target:
        fix += f", or declare the column text in data.categorical = [{col!r}]"
    elif spec.target_kind == "binary":
        fix += ", or use target_kind = 'multiclass'"
    kind = "holds mostly text" if mostly_text else "is numeric"
    return (f"{role}: column {col!r} {kind} but has {len(bad)} non-numeric cell(s): "
            f"{'; '.join(shown)}{more} (rows as read, counted from 0); {fix}")


# --- the time column ------------------------------------------------------------------------------
def time_order(df: pd.DataFrame, spec: SurveyData) -> list[Any]:
    """The distinct time values, earliest first: numbers and dates in their order, an ordered
    pandas Categorical or ``data.ordinal.<time>`` in the order given; text is an error."""
    s = df[spec.time]
    present = s.dropna()
    if spec.time in spec.ordinal:
        order = list(spec.ordinal[spec.time])
        by_text = {str(v): v for v in order}
        seen = set(present.astype(str))
        unknown = sorted(seen - set(by_text))
        if unknown:
            raise DataError(f"data.ordinal.{spec.time}: time value(s) {unknown[:5]} are not "
                            f"in the listed order {order!r}; add them")
        return [plain_value(v) for v in order if str(v) in seen]
    if isinstance(s.dtype, pd.CategoricalDtype):
        if s.cat.ordered:
            used = set(present)
            return [plain_value(v) for v in s.cat.categories if v in used]
        present = present.astype(s.cat.categories.dtype)
    if pd.api.types.is_numeric_dtype(present) or pd.api.types.is_datetime64_any_dtype(present):
        return [plain_value(v) for v in sorted(present.unique())]
    values = sorted(map(str, present.unique()))
    shown = ", ".join(map(repr, values[:4]))
    raise DataError(f"data.time: column {spec.time!r} holds text ({shown}"
                    f"{', ...' if len(values) > 4 else ''}), which has no order (sorting it "
                    f"alphabetically would scramble the waves); give the order as "
                    f"data.ordinal.{spec.time} = [earliest, ..., latest] in the [data.ordinal] "
                    "table, pass an ordered pandas Categorical, or recode it to numbers")


def plain_value(value: Any) -> Any:
    """A JSON-able time value: numpy scalars -> Python numbers, timestamps -> ISO text."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return str(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


__all__ = ["NUMERIC_SHARE", "apply_missing_codes", "numeric_cells", "plain_value", "time_order"]
