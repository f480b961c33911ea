"""The twin's scenario: a simulated society (the opinion family on a planted-partition graph)
with the survey's groups, waves, sizes and feature kinds, at given calibrated levels."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from simlab.experiment.twin.shape import SurveyShape
from simlab.experiment.twin.trends import trend_positions
from simlab.tasks.stream import safe_name

if TYPE_CHECKING:  # pragma: no cover
    from simlab.experiment.config import Scenario
    from simlab.experiment.survey_scenario import SurveyScenario

#: observed traits and ego answers a twin uses, in the order they are taken
CONTINUOUS_TRAITS: tuple[str, ...] = ("education", "income", "age", "religiosity")
CONTINUOUS_EGO: tuple[str, ...] = ("share_friends_support", "n_friends")
BINARY_TRAITS: tuple[str, ...] = ("female", "urban")
BINARY_TRAIT_SHARE: dict[str, float] = {"female": 0.5, "urban": 0.6}
OPINION_EFFECT = 2.0          # the opinion family's default logit effect of opinion (scale 1)
BURN_IN = 50
GROUP_SIZE_FACTOR = 4         # agents per community = this x (K + Q), at least MIN_GROUP_SIZE
MIN_GROUP_SIZE = 200


@dataclass
class TwinFeatures:
    """Which columns the twin asks, and its distractors."""

    traits: list[str]
    features: list[str]
    distractors: int
    binary_distractors: list[float]


def twin_features(shape: SurveyShape) -> TwinFeatures:
    """The same number of 0/1 and continuous columns as the survey: informative traits and ego
    answers first, distractors for the rest. The binary traits stand in for the survey's
    indicator columns closest to their share; the others' shares set the distractors'."""
    n_cont = shape.kinds.count("continuous")
    n_bin = shape.kinds.count("binary")
    cont = list(CONTINUOUS_TRAITS + CONTINUOUS_EGO)[:n_cont]
    binary = list(BINARY_TRAITS)[:n_bin]
    means = list(shape.binary_means)
    for trait in binary:                       # drop the survey column each trait stands for
        share = BINARY_TRAIT_SHARE[trait]
        means.pop(int(np.argmin([abs(m - share) for m in means])))
    traits = [t for t in cont if t in CONTINUOUS_TRAITS] + binary
    ego = [t for t in cont if t in CONTINUOUS_EGO]
    return TwinFeatures(traits=traits, features=traits + ego, distractors=n_cont - len(cont),
                        binary_distractors=[round(float(m), 4) for m in means])


@dataclass
class Levels:
    """The calibrated quantities: group intercepts a_g, wave offsets b_w (b_0 = 0), signal s,
    and each group's own trend c_g (link scale per time unit, mean 0 over groups: the common
    trend is in b_w), so community g's intercept in wave w is a_g + b_w + c_g (x_w - mean x)."""

    group: np.ndarray
    wave: np.ndarray
    scale: float
    heterogeneity: float = 0.5
    trend: np.ndarray | None = None

    def trend_terms(self, times: Sequence[Any]) -> np.ndarray:
        """[G, W] the group-trend part c_g (x_w - mean x) of each cell's intercept."""
        x = trend_positions(times)
        if self.trend is None:
            return np.zeros((len(self.group), len(x)))
        return np.outer(self.trend, x - x.mean())


def twin_config(survey: SurveyScenario, shape: SurveyShape, levels: Levels) -> dict[str, Any]:
    """The simulated scenario (a TOML-able dict) for the given calibrated levels."""
    from simlab.society.population import DEFAULT_COEF

    feats = twin_features(shape)
    s = levels.scale
    n_ticks = BURN_IN + shape.n_waves * shape.every
    terms = levels.trend_terms(shape.times)
    start = _rounded(levels.group + terms[:, 0])
    shocks: list[dict[str, Any]] = [{
        "kind": "regime", "name": "group_levels", "target": "intercept", "start": 1,
        "period": n_ticks, "values": [start, start]}]
    for w in range(1, shape.n_waves):
        step = levels.wave[w] - levels.wave[w - 1] + terms[:, w] - terms[:, w - 1]
        deltas = _rounded(step)
        # every group moves alike: one number
        delta: float | list[float] = deltas[0] if np.ptp(deltas) == 0 else deltas
        if delta != 0.0:
            shocks.append({"kind": "abrupt", "name": f"wave_{w}_{_label(shape.times[w])}",
                           "target": "intercept", "at": BURN_IN + w * shape.every + 1,
                           "delta": delta})
    evaluation = survey.evaluation.model_dump(mode="json")
    evaluation["learners"] = [*evaluation["learners"], "oracle"]
    params: dict[str, Any] = {"opinion_effect": round(OPINION_EFFECT * s, 4),
                              "response": "binary" if shape.target == "binary" else "continuous"}
    if shape.target == "regression":
        params["response_sd"] = round(shape.target_sd * math.sqrt(max(1 - shape.signal, 0.05)),
                                      4)
    survey_table: dict[str, Any] = {"every": shape.every, "waves": shape.n_waves,
                                    "support": shape.support, "query": shape.query,
                                    "features": feats.features}
    if feats.distractors:
        survey_table["distractors"] = feats.distractors
    if feats.binary_distractors:
        survey_table["binary_distractors"] = feats.binary_distractors
    if shape.wave_groups is not None:
        survey_table["wave_groups"] = shape.wave_groups
    return {
        "name": f"{safe_name(shape.name)}_twin",    # also its file name: no ../
        "description": f"Simulated twin of {shape.name}: {shape.n_groups} groups x "
                       f"{shape.n_waves} waves ({shape.design}), K={shape.support}, "
                       f"Q={shape.query}, {shape.n_features} features, matched prevalence",
        "burn_in": BURN_IN,
        "dynamics": {"family": "opinion", "params": params},
        "graph": {"kind": "planted_partition", "n_groups": shape.n_groups,
                  "group_size": max(MIN_GROUP_SIZE,
                                    GROUP_SIZE_FACTOR * (shape.support + shape.query)),
                  "mean_degree": 10.0, "homophily": 0.8},
        "population": {"heterogeneity": round(float(levels.heterogeneity), 4),
                       "traits": feats.traits,
                       "coef": {t: round(DEFAULT_COEF[t] * s, 4) for t in feats.traits},
                       "intercept": round(float(np.mean(start)), 4)},
        "survey": survey_table,
        "shocks": shocks,
        "evaluation": evaluation,
        "learners": {k: dict(v) for k, v in survey.learners.items()},
    }


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in values]


def _label(value: Any) -> str:
    return "".join(c if c.isalnum() else "_" for c in str(value))


def twin_scenario(survey: SurveyScenario, shape: SurveyShape, levels: Levels) -> Scenario:
    from simlab.experiment.config import Scenario

    return Scenario.from_dict(twin_config(survey, shape, levels), f"twin of {survey.name}")


__all__ = ["BURN_IN", "OPINION_EFFECT", "Levels", "TwinFeatures", "twin_config",
           "twin_features", "twin_scenario"]
