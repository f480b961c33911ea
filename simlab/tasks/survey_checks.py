"""Checks a real survey must pass before it becomes a stream: cells, time order, leakage.

Each problem a user can cause is one ``ValueError`` naming the column and the fix: a stray text
cell in a numeric column (which would otherwise turn the column into one-hot dummies), a time
column with no order, a feature that is the target in disguise. Softer findings (a 0/1 target
declared regression, a support-set fit too good to be true) are returned as warning texts that
the adapter records in the stream's metadata for the report.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from simlab.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from simlab.tasks.task import TaskStream

class SurveyColumns(Protocol):
    """What the checks read of a ``SurveyData`` spec (typed by shape, so this module needs
    nothing of the adapter that calls it)."""

    target: str
    target_kind: str
    time: str
    features: list[str]
    categorical: list[str]
    numeric: list[str]
    ordinal: dict[str, list[Any]]
    missing_codes: list[Any]


#: |correlation| of a feature with the target above which it is called a copy of the target
LEAK_CORR = 0.95
#: a share of numeric cells at or above which a text column is read as "numbers with strays"
NUMERIC_SHARE = 0.5
#: held-out R^2 of a pooled linear fit on the support sets that is "suspiciously good"
SUSPICIOUS_R2 = 0.9
MIN_PER_SIDE = 5          # respondents per target value before a separation counts


# --- missing codes and numeric cells --------------------------------------------------------------
def apply_missing_codes(df: pd.DataFrame, spec: SurveyColumns) -> pd.DataFrame:
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


def numeric_cells(df: pd.DataFrame, spec: SurveyColumns) -> pd.DataFrame:
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


def _non_numeric_message(col: str, bad: pd.Series, spec: SurveyColumns, mostly_text: bool) -> str:
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
def time_order(df: pd.DataFrame, spec: SurveyColumns) -> list[Any]:
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
        return [_plain(v) for v in order if str(v) in seen]
    if isinstance(s.dtype, pd.CategoricalDtype):
        if s.cat.ordered:
            used = set(present)
            return [_plain(v) for v in s.cat.categories if v in used]
        present = present.astype(s.cat.categories.dtype)
    if pd.api.types.is_numeric_dtype(present) or pd.api.types.is_datetime64_any_dtype(present):
        return [_plain(v) for v in sorted(present.unique())]
    values = sorted(map(str, present.unique()))
    shown = ", ".join(map(repr, values[:4]))
    raise DataError(f"data.time: column {spec.time!r} holds text ({shown}"
                    f"{', ...' if len(values) > 4 else ''}), which has no order (sorting it "
                    f"alphabetically would scramble the waves); give the order as "
                    f"data.ordinal.{spec.time} = [earliest, ..., latest] in the [data.ordinal] "
                    "table, pass an ordered pandas Categorical, or recode it to numbers")


def _plain(value: Any) -> Any:
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


# --- leakage ------------------------------------------------------------------------------------
def check_leakage(df: pd.DataFrame, spec: SurveyColumns, y: np.ndarray) -> None:
    """A feature that is the target in disguise is an error naming it: identical after a
    one-to-one recoding, |correlation| > ``LEAK_CORR``, or (binary target) separating the two
    answers perfectly. ``df`` and ``y`` are the cleaned rows."""
    for col in spec.features:
        s = df[col]
        keep = s.notna().to_numpy()
        if keep.sum() < 2 * MIN_PER_SIDE:
            continue
        why = _leak_reason(s[keep], y[keep], spec, col)
        if why:
            raise DataError(f"data.features: column {col!r} leaks the target "
                            f"{spec.target!r} ({why}): it is known only once the answer is; "
                            f"remove it from data.features")


def _leak_reason(s: pd.Series, y: np.ndarray, spec: SurveyColumns, col: str) -> str | None:
    key = s.astype(str).to_numpy() if not pd.api.types.is_numeric_dtype(s) else s.to_numpy()
    pairs = pd.DataFrame({"f": key, "y": y})
    n_f, n_y = pairs["f"].nunique(), pairs["y"].nunique()
    if 1 < n_y <= len(pairs) // 2 and n_f == n_y and len(pairs.drop_duplicates()) == n_f:
        return "identical to it after recoding"
    numeric = _as_number(s, spec, col)
    if numeric is not None and n_y > 1 and np.std(numeric) > 0 and np.std(y) > 0 and \
            spec.target_kind != "multiclass":
        r = float(np.corrcoef(numeric, y)[0, 1])
        if abs(r) > LEAK_CORR:
            return f"correlation {r:+.3f}"
    if spec.target_kind == "binary" and n_y == 2:
        counts = np.bincount(y.astype(np.int64), minlength=2)
        if counts.min() >= MIN_PER_SIDE:
            if numeric is not None:
                lo0, hi0 = numeric[y == 0].min(), numeric[y == 0].max()
                lo1, hi1 = numeric[y == 1].min(), numeric[y == 1].max()
                if hi0 < lo1 or hi1 < lo0:
                    return "it separates the two answers perfectly"
            if n_f <= max(2, len(pairs) // 10) and \
                    (pairs.groupby("f")["y"].nunique() == 1).all():
                return "each of its values goes with one answer only"
    return None


def _as_number(s: pd.Series, spec: SurveyColumns, col: str) -> np.ndarray | None:
    if col in spec.ordinal:
        codes = {str(v): float(i) for i, v in enumerate(spec.ordinal[col])}
        return s.astype(str).map(codes).to_numpy(np.float64)
    if col in spec.categorical or not pd.api.types.is_numeric_dtype(s):
        return None
    return s.to_numpy(np.float64)


def target_warnings(y: np.ndarray, spec: SurveyColumns) -> list[str]:
    """A numeric target whose values are all 0/1 declared ``regression``."""
    if spec.target_kind == "regression" and len(y) and np.isin(y, (0.0, 1.0)).all():
        return [f"data.target {spec.target!r} takes only the values 0 and 1 but is declared "
                "target_kind = 'regression' (scored by squared error); set target_kind = "
                "'binary' for a yes/no answer"]
    return []


def support_fit_warning(stream: TaskStream, ridge: float = 0.1) -> str | None:
    """Ridge linear fits on each task's support set (what a learner adapts on) that predict
    its query set almost perfectly (pooled held-out R^2 >= ``SUSPICIOUS_R2``, against each
    support mean) suggest a leaking feature. One batched solve over the tasks."""
    tasks = stream.tasks()
    if not tasks or tasks[0].target == "multiclass":
        return None
    xs = np.stack([t.x_support for t in tasks]).astype(np.float64)          # [T, K, D]
    xs = np.concatenate([np.ones(xs.shape[:2] + (1,)), xs], axis=2)
    ys = np.stack([t.y_support for t in tasks]).astype(np.float64)          # [T, K]
    penalty = ridge * np.eye(xs.shape[2])
    penalty[0, 0] = 0.0
    gram = np.einsum("tkd,tke->tde", xs, xs) + penalty
    beta = np.linalg.solve(gram, np.einsum("tkd,tk->td", xs, ys)[..., None])[..., 0]
    sse = sst = 0.0
    for t, b, base in zip(tasks, beta, ys.mean(axis=1)):
        pred = b[0] + t.x_query.astype(np.float64) @ b[1:]
        sse += float(np.sum((t.y_query - pred) ** 2))
        sst += float(np.sum((t.y_query - base) ** 2))
    if sst <= 0:
        return None
    r2 = 1.0 - sse / sst
    if r2 < SUSPICIOUS_R2:
        return None
    return (f"suspiciously good fit: linear fits on the support sets explain {r2:.1%} of the "
            f"query sets' variance (held-out R^2 {r2:.3f}); real survey answers are rarely "
            "this predictable, so check the features for a copy of the target")


__all__ = ["LEAK_CORR", "apply_missing_codes", "check_leakage", "numeric_cells",
           "support_fit_warning", "target_warnings", "time_order"]
