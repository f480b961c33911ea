"""A survey's shape: what its twin matches, measured on its data and its seed-0 stream."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from simlab.errors import ScenarioError
from simlab.experiment.twin.measure import effect_spread, pooled_r2, survey_cells
from simlab.experiment.twin.trends import GroupTrends, group_trends

if TYPE_CHECKING:  # pragma: no cover
    from simlab.experiment.survey_scenario import SurveyScenario


@dataclass
class SurveyShape:
    """What a twin matches, measured on the survey (data and its seed-0 stream)."""

    name: str
    target: str
    group_names: list[str]
    times: list[Any]
    every: int
    support: int
    query: int
    kinds: list[str]                   # "binary" / "continuous" per feature column
    binary_means: list[float]          # P(1) of each binary feature column (data, raw)
    wave_level: np.ndarray             # [W] observed prevalence (binary) / mean (numeric)
    group_level: np.ndarray            # [G] the same per group, pooled over waves
    signal: float                      # pooled R^2 of the features on the stream
    target_sd: float                   # within-wave sd of a numeric target (1 for binary)
    skipped_cells: int
    spread: float = 0.0                # between-group spread of effects (effect_spread)
    design: str = "waves"
    wave_groups: list[list[int]] | None = None   # communities per wave, None = all in all
    cell_level: np.ndarray | None = None   # [G, W] observed prevalence per cell (nan: none)
    cell_var: np.ndarray | None = None     # [G, W] its sampling variance
    trends: GroupTrends | None = None      # group x time trends (group_trends)

    @property
    def n_groups(self) -> int:
        return len(self.group_names)

    @property
    def n_waves(self) -> int:
        return len(self.times)

    @property
    def n_features(self) -> int:
        return len(self.kinds)


def survey_shape(survey: SurveyScenario, seed: int = 0) -> SurveyShape:
    """Measure a survey scenario's shape (reads the data and builds its ``seed`` stream)."""
    from simlab.survey import encode, feature_kinds, prepared_rows, respondents

    spec = survey.data
    if spec.target_kind == "multiclass":
        raise ScenarioError(f"{survey.name}: data.target_kind = 'multiclass' has no twin yet: "
                            "the twin's opinion society answers a binary or numeric question; "
                            "recode the target to 0/1 (target_kind = 'binary') to rehearse on "
                            "a twin")
    stream = survey.stream(seed, cache=False)
    frame = survey.frame()
    resp = respondents(frame, spec, seed)
    times = list(stream.meta["times"])
    names = sorted({str(t.info["group"]) for t in stream.tasks()})
    y, w = resp["y"].to_numpy(np.float64), resp["w"].to_numpy(np.float64)
    time_col = resp["time"].astype(str).to_numpy()
    group = resp["group"].to_numpy()
    wave_level = np.array([_wmean(y, w, time_col == str(t)) for t in times])
    group_level = np.array([_wmean(y, w, group == g) for g in names])
    if spec.design == "replicates":            # exchangeable waves: one level throughout
        wave_level = np.full(len(times), _wmean(y, w, np.ones(len(y), bool)))
    df, rows, _ = prepared_rows(frame, spec, seed)
    raw = encode(df[rows.kept].reset_index(drop=True), spec).x   # unscaled: 0/1 stay 0/1
    kinds = feature_kinds(raw)
    binary_means = [float(np.nanmean(raw[:, j])) for j, k in enumerate(kinds) if k == "binary"]
    within_sd = float(np.sqrt(np.mean([np.var(y[time_col == str(t)]) for t in times])))
    surveyed = [[names.index(str(t.info["group"])) for t in wave] for wave in stream.waves]
    full = all(len(g) == len(names) for g in surveyed)
    cell_level, cell_var = survey_cells(resp, names, times, spec.target_kind == "binary")
    trends = None if spec.design == "replicates" else group_trends(cell_level, cell_var, times)
    return SurveyShape(
        name=survey.name, target=spec.target_kind, group_names=names, times=times,
        every=_every(times), support=spec.support,
        query=round(float(np.median([t.n_query for t in stream.tasks()]))),
        kinds=kinds, binary_means=binary_means, wave_level=wave_level,
        group_level=group_level, signal=pooled_r2(stream),
        target_sd=within_sd if spec.target_kind == "regression" else 1.0,
        skipped_cells=len(stream.meta.get("skipped_cells", [])),
        spread=effect_spread(stream), design=spec.design,
        wave_groups=None if full else surveyed, cell_level=cell_level, cell_var=cell_var,
        trends=trends)


def _wmean(y: np.ndarray, w: np.ndarray, mask: np.ndarray) -> float:
    return float(np.sum(y[mask] * w[mask]) / np.sum(w[mask]))


def _every(times: Sequence[Any]) -> int:
    """Ticks between waves: the median gap of numeric time values (1 otherwise), in 1..10."""
    try:
        gaps = np.diff(np.asarray(times, dtype=np.float64))
    except (TypeError, ValueError):
        return 1
    if len(gaps) == 0 or not np.all(np.isfinite(gaps)) or np.median(gaps) <= 0:
        return 1
    return int(np.clip(round(float(np.median(gaps))), 1, 10))


__all__ = ["SurveyShape", "survey_shape"]
