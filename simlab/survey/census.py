"""Census margins (``[data.census]``): each group's population cells and their shares, read
from a file or inline rows and encoded exactly like the survey's respondents, so every
learner's predictions can be poststratified to them (MRP: ``simlab.evaluation.poststrat``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from simlab.errors import DataError
from simlab.survey.design import group_labels
from simlab.survey.encode import Encoded, encode_features
from simlab.survey.read import read_survey
from simlab.survey.schema import SurveyData


def read_census(spec: SurveyData, base_dir: Path | str = ".") -> pd.DataFrame | None:
    """The ``[data.census]`` table (file or inline rows), or None when there is none."""
    if spec.census is None:
        return None
    if spec.census.file is None:       # then rows are given (CensusMargins: one of the two)
        return pd.DataFrame(spec.census.rows)
    try:
        return read_survey(spec.census.file, base_dir)
    except ValueError as err:     # a DataError, or pandas' ParserError on a malformed file
        raise DataError(f"data.census.file: {err}") from None


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
        raise DataError(f"data.census: column(s) {missing} are missing from the census "
                        f"margins; they need the group column(s), every data.features column "
                        f"and the share column {share!r} (have: "
                        f"{', '.join(map(str, census.columns))})")
    both = pd.concat([clean_df[spec.features], census[spec.features]], ignore_index=True)
    try:
        x, _, names = encode_features(both, spec)
    except ValueError as err:
        raise DataError(f"data.census: {err}") from None
    if names != enc.names:
        extra = [n for n in names if n not in enc.names] or names
        raise DataError(f"data.census: the margins have feature values the survey does not "
                        f"({', '.join(extra[:5])}): a category it never has, text in a "
                        "numeric column, or an empty value in a column the survey never "
                        "misses; use the survey's own values")
    shares = pd.to_numeric(census[share], errors="coerce").to_numpy(np.float64)
    if np.isnan(shares).any():
        row = int(np.flatnonzero(np.isnan(shares))[0])
        raise DataError(f"data.census.share: column {share!r} must hold a number in every "
                        f"row (row {row}: {census[share].iloc[row]!r})")
    labels = group_labels(census, spec)
    x = x[len(clean_df):]
    return {g: (x[labels == g], shares[labels == g]) for g in dict.fromkeys(labels)}


__all__ = ["encode_census", "read_census"]
