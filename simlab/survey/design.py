"""What a wave is (``data.design``): one per survey time, a seeded random replicate of one
survey, or a set of groups never seen before; and each row's flags (why it is or is not used),
group label and wave.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from simlab.errors import DataError
from simlab.survey.checks import check_columns, check_weights
from simlab.survey.clean import apply_missing_codes, numeric_cells, plain_value, time_order
from simlab.survey.encode import encode_target
from simlab.survey.schema import SurveyData

#: a separate entropy word for the design's random draws, so cell draws stay those of ``seed``
DESIGN_STREAM = 0x5E5
#: what each design means for a reader of its results (the report prints it by the ledger)
DESIGN_NOTES = {
    "waves": "one wave per survey time",
    "replicates": "the survey's respondents split at random (seeded) into replicate waves: an "
                  "exchangeable stream, so there is no change over time to adapt to and "
                  "recovery after a shift is not measured",
    "new_groups": "each wave a set of groups never seen before (held-out groups): a learner "
                  "never meets the same group twice",
}


def prepared_rows(df: pd.DataFrame, spec: SurveyData, seed: int
                  ) -> tuple[pd.DataFrame, RowFlags, list[Any]]:
    """The checked table (missing codes applied, numeric text converted), each row's flags
    and design wave, and the waves' labels (survey times, or replicate / group-set names)."""
    check_columns(df, spec)
    df = numeric_cells(apply_missing_codes(df.reset_index(drop=True), spec), spec)
    check_weights(df, spec)
    order = time_order(df, spec)
    if spec.design == "waves" and len(order) < 2:
        raise DataError(single_wave_message(spec, order))
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
    #: [N] the design's wave (:func:`assign_waves`; empty until then), -1 = held out
    wave: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def row_flags(df: pd.DataFrame, spec: SurveyData, order: list[Any]) -> RowFlags:
    """Classify every row once (the first reason wins: other, target, features)."""
    other = df[[spec.time, *spec.groups]].isna().any(axis=1).to_numpy().copy()
    if spec.weights:
        other |= df[spec.weights].isna().to_numpy()
    target = df[spec.target].isna().to_numpy() & ~other
    feats = (df[spec.features].isna().any(axis=1).to_numpy() if spec.missing == "drop"
             else np.zeros(len(df), bool)) & ~other & ~target
    index = {str(plain_value(v)): i for i, v in enumerate(order)}
    time = np.array([-1 if pd.isna(v) else index.get(str(plain_value(v)), -1)
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


__all__ = ["DESIGN_NOTES", "DESIGN_STREAM", "RowFlags", "assign_waves", "group_labels",
           "prepared_rows", "respondents", "row_flags", "single_wave_message"]
