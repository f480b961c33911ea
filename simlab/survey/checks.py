"""Checks a real survey must pass before it becomes a stream, and the softer findings a user
should read before trusting a verdict.

Each problem a user can cause is one :class:`~simlab.errors.DataError` naming the column and
the fix: a named column that does not exist, a negative weight, an ID-like text feature, a
feature that is the target in disguise. Softer findings (a 0/1 target declared regression, a
support-set fit too good to be true, a constant target) are returned as warning texts that
the stream records in its metadata for the report, and raised as :class:`SurveyWarning` by the
scenario that loads the data.
"""
from __future__ import annotations

import difflib
import os
import warnings
from typing import Any

import numpy as np
import pandas as pd

from simlab.errors import DataError
from simlab.survey.schema import SurveyData
from simlab.tasks.task import TaskStream

#: |correlation| of a feature with the target above which it is called a copy of the target
LEAK_CORR = 0.95
#: a numeric feature this correlated with the target is suspicious (above LEAK_CORR: an error)
NEAR_LEAK_CORR = 0.9
#: held-out R^2 of a pooled linear fit on the support sets that is "suspiciously good"
SUSPICIOUS_R2 = 0.9
MIN_PER_SIDE = 5          # respondents per target value before a separation counts
#: one-hot columns one survey feature may become without --i-know (``experiment.limits``):
#: more is an ID-like text column (a distinct value per respondent), not a category
MAX_CATEGORIES = 200
OVERRIDE_ENV = "SIMLAB_I_KNOW"       # the same switch as experiment.limits (a leaf copy)


class SurveyWarning(UserWarning):
    """Something about the data a user should know before trusting a verdict (data lost, a
    suspiciously good fit, a 0/1 target declared regression)."""


# --- errors ---------------------------------------------------------------------------------------
def check_columns(df: pd.DataFrame, spec: SurveyData) -> None:
    """Every named column must exist; name the close matches of the ones that do not."""
    wanted = {"groups": spec.groups, "time": [spec.time], "target": [spec.target],
              "features": spec.features, "categorical": spec.categorical,
              "ordinal": [c for c in spec.ordinal if c != spec.time], "numeric": spec.numeric,
              "weights": [spec.weights] if spec.weights else []}
    for role, cols in wanted.items():
        for col in cols:
            if col not in df.columns:
                close = difflib.get_close_matches(col, [str(c) for c in df.columns], n=3)
                hint = f"; close matches: {', '.join(close)}" if close else ""
                raise DataError(f"data.{role}: column {col!r} does not exist in the survey"
                                f"{hint}. Columns: {', '.join(map(str, df.columns))}")


def check_weights(df: pd.DataFrame, spec: SurveyData) -> None:
    """Survey weights must be numbers >= 0 (an empty one is a missing weight, counted in the
    ledger): a negative or infinite weight would be charged to a learner as divergence."""
    if spec.weights is None:
        return
    col = df[spec.weights]
    if not pd.api.types.is_numeric_dtype(col):
        bad = col[pd.to_numeric(col, errors="coerce").isna() & col.notna()]
        raise DataError(f"data.weights: column {spec.weights!r} is not numeric (row "
                        f"{bad.index[0] + 1}: {bad.iloc[0]!r}); weights must be numbers >= 0")
    w = col.to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad_rows = np.flatnonzero(~np.isnan(w) & ~(np.isfinite(w) & (w >= 0)))
    if len(bad_rows):
        shown = ", ".join(f"{r + 1} ({w[r]:g})" for r in bad_rows[:5])
        more = f" and {len(bad_rows) - 5} more" if len(bad_rows) > 5 else ""
        raise DataError(f"data.weights: column {spec.weights!r} has {len(bad_rows)} negative "
                        f"or infinite weight(s), at data row(s) {shown}{more}; survey weights "
                        "must be finite numbers >= 0 (fix those rows or leave them empty)")



def check_categories(col: str, n: int, rows: int) -> None:
    """Refuse a categorical feature of more than ``MAX_CATEGORIES`` values before its one-hot
    block is allocated, unless the limits are lifted."""
    if n <= MAX_CATEGORIES or os.environ.get(OVERRIDE_ENV, "") not in ("", "0"):
        return
    raise DataError(f"data.features: column {col!r} has {n:,} distinct values in {rows:,} rows; "
                    f"as a category it would become {n:,} one-hot features (limit "
                    f"{MAX_CATEGORIES}). Drop it from data.features (an identifier?), recode it "
                    "into fewer categories, or pass --i-know (SIMLAB_I_KNOW=1) if you mean it")



# --- leakage ------------------------------------------------------------------------------------
def check_leakage(df: pd.DataFrame, spec: SurveyData, y: np.ndarray) -> None:
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


def _leak_reason(s: pd.Series, y: np.ndarray, spec: SurveyData, col: str) -> str | None:
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


def _as_number(s: pd.Series, spec: SurveyData, col: str) -> np.ndarray | None:
    if col in spec.ordinal:
        codes = {str(v): float(i) for i, v in enumerate(spec.ordinal[col])}
        return s.astype(str).map(codes).to_numpy(np.float64)
    if col in spec.categorical or not pd.api.types.is_numeric_dtype(s):
        return None
    return s.to_numpy(np.float64)



# --- warnings -------------------------------------------------------------------------------------
def target_warnings(y: np.ndarray, spec: SurveyData) -> list[str]:
    """A numeric target whose values are all 0/1 declared ``regression``."""
    if spec.target_kind == "regression" and len(y) and np.isin(y, (0.0, 1.0)).all():
        return [(f"data.target {spec.target!r} takes only the values 0 and 1 but is declared "
                 "target_kind = 'regression' (scored by squared error); set target_kind = "
                 "'binary' for a yes/no answer")]
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



def column_warnings(df: pd.DataFrame, spec: SurveyData, y: np.ndarray) -> list[str]:
    """Columns that pass the checks but make the comparison say little: a target with one
    value, a feature empty in every used row, a feature almost as good as the answer."""
    out = []
    if len(y) and np.unique(y).size == 1:
        out.append(f"data.target {spec.target!r} has the single value {float(y[0]):g} in every "
                   "used row: every learner predicts it exactly, so the comparison says nothing")
    for col in spec.features:
        s = df[col]
        if len(s) and s.isna().all():
            out.append(f"data.features: column {col!r} is empty in every used row; it carries "
                       "no information: remove it")
            continue
        if spec.target_kind == "multiclass" or col in spec.categorical or \
                not pd.api.types.is_numeric_dtype(s):
            continue
        keep = s.notna().to_numpy()
        x, t = s.to_numpy(np.float64)[keep], np.asarray(y, np.float64)[keep]
        if len(x) > 2 and x.std() > 0 and t.std() > 0:
            r = float(np.corrcoef(x, t)[0, 1])
            if abs(r) > NEAR_LEAK_CORR:
                out.append(f"data.features: column {col!r} correlates {r:+.2f} with the target "
                           f"{spec.target!r}: check that it is not known only once the answer "
                           f"is (a leak); above {LEAK_CORR} it is refused")
    return out



def warn_survey(meta: dict[str, Any], where: str) -> None:
    """Raise each of the stream's data warnings as a :class:`SurveyWarning`."""
    for text in meta.get("warnings", []):
        warnings.warn(f"{where}: {text}", SurveyWarning, stacklevel=3)


__all__ = ["LEAK_CORR", "MAX_CATEGORIES", "NEAR_LEAK_CORR", "OVERRIDE_ENV", "SurveyWarning",
           "check_categories", "check_columns", "check_leakage", "check_weights",
           "column_warnings", "support_fit_warning", "target_warnings", "warn_survey"]
