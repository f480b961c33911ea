"""Calibration: generate the twin's stream, compare it with the survey, correct the levels,
the trends, the signal and the heterogeneity, for a few rounds (see the package docstring)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from simlab.errors import ScenarioError
from simlab.experiment.twin.fidelity import fidelity_rows, trend_flag, trend_rows
from simlab.experiment.twin.measure import achieved_levels, effect_spread, pooled_r2, twin_cells
from simlab.experiment.twin.scenario import OPINION_EFFECT, Levels, twin_config, twin_scenario
from simlab.experiment.twin.shape import SurveyShape, survey_shape
from simlab.experiment.twin.trends import GroupTrends, group_trends, link_functions, link_slopes

if TYPE_CHECKING:  # pragma: no cover
    from simlab.experiment.survey_scenario import SurveyScenario


@dataclass
class TwinFit:
    """A calibrated twin: its config, the survey's shape, and achieved vs observed levels."""

    config: dict[str, Any]
    shape: SurveyShape
    achieved_wave: np.ndarray          # expected prevalence per wave on the calibration seed
    achieved_group: np.ndarray
    signal: float                      # the twin's pooled R^2 on the calibration seed
    check_wave: np.ndarray             # per-wave prevalence on another seed (out of sample)
    seed: int
    history: list[float] = field(default_factory=list)   # max |wave gap| after each round
    spread: float = 0.0                # the twin's effect spread on the calibration seed
    trends: GroupTrends | None = None  # the twin's group x time trends (calibration seed)

    def fidelity(self) -> list[dict[str, Any]]:
        """Every matched quantity: survey vs twin (calibration seed), its tolerance, and
        whether it is met (see :func:`fidelity_rows` and :func:`trend_rows`)."""
        return fidelity_rows(self.shape, self.achieved_wave, self.achieved_group, self.signal,
                             self.spread, self.check_wave) + trend_rows(self.shape, self.trends)

    def trend_flag(self) -> str | None:
        """The warning when the survey's group trends diverge and this twin misses them."""
        return trend_flag(self.shape, self.fidelity())

    def misses(self) -> list[dict[str, Any]]:
        """The matched quantities outside their tolerance."""
        return [row for row in self.fidelity() if not row["ok"]]

    def table(self) -> list[tuple[str, float, float, float]]:
        """(label, observed, achieved on the calibration seed, on the check seed) rows."""
        rows = [(f"wave {w} ({t})", float(o), float(a), float(c)) for w, (t, o, a, c) in
                enumerate(zip(self.shape.times, self.shape.wave_level, self.achieved_wave,
                              self.check_wave))]
        rows += [(f"group {g}", float(o), float(a), math.nan) for g, o, a in
                 zip(self.shape.group_names, self.shape.group_level, self.achieved_group)]
        return rows

    def summary(self) -> str:
        """Plain-text account: shape, then observed vs achieved levels."""
        sh = self.shape
        n_bin = sh.kinds.count("binary")
        scale = self.config["dynamics"]["params"]["opinion_effect"] / OPINION_EFFECT
        het = self.config["population"]["heterogeneity"]
        lines = [(f"twin of {sh.name}: {sh.n_groups} groups x {sh.n_waves} waves (every "
                  f"{sh.every} ticks, design {sh.design}), K={sh.support}, Q={sh.query}, "
                  f"{sh.n_features} features ({n_bin} binary, {sh.n_features - n_bin} "
                  f"continuous), target {sh.target}"),
                 f"effects scaled by {scale:.3g}, heterogeneity {het:.3g}",
                 (f"matched quantity: survey | twin seed {self.seed} (calibrated) | tolerance | "
                  f"twin seed {self.seed + 1} (check)")]
        for row in self.fidelity():
            check = "-" if math.isnan(row["check"]) else f"{row['check']:.4f}"
            flag = "ok" if row["ok"] else "MISS"
            lines.append(f"  {row['quantity']:<48} {row['survey']:.4f} | {row['twin']:.4f} | "
                         f"+-{row['tolerance']:.4f} {flag:<4} | {check}")
        misses = self.misses()
        gaps = np.abs(self.achieved_wave - sh.wave_level)
        lines.append(f"largest per-wave gap {gaps.max():.4f} (calibration seed), "
                     f"{np.abs(self.check_wave - sh.wave_level).max():.4f} (check seed); "
                     + (f"{len(misses)} quantit{'y' if len(misses) == 1 else 'ies'} outside "
                        "tolerance: " + ", ".join(m["quantity"] for m in misses)
                        + " (more --rounds may help)" if misses else
                        "every matched quantity within tolerance"))
        if sh.wave_groups is not None:
            lines.append(f"the twin surveys the same groups in each wave as the survey "
                         f"({sum(map(len, sh.wave_groups))} cells of "
                         f"{sh.n_groups * sh.n_waves})")
        if sh.design == "replicates":
            lines.append("the survey's waves are random replicates (exchangeable): the twin "
                         "holds one level in every wave")
        if sh.trends is not None:
            follows = "per-group" if any(isinstance(k.get("delta"), list)
                                         for k in self.config["shocks"]) else "common"
            lines.append(f"group trends: the survey's differ with Cochran's Q = "
                         f"{sh.trends.q:.1f}, p = {sh.trends.p:.2g} ("
                         f"{'diverging' if sh.trends.diverging else 'parallel within noise'});"
                         f" the twin's 'wave_*' shocks carry {follows} deltas")
        caution = self.trend_flag()
        if caution:
            lines.append(caution)
        return "\n".join(lines)


def fit_twin(survey: SurveyScenario, seed: int = 0, rounds: int = 4,
             heterogeneity: float = 0.5, match_spread: bool = True,
             match_trends: bool = True) -> TwinFit:
    """Calibrate a twin of ``survey`` on the twin stream of ``seed`` (see the module docstring).

    ``heterogeneity``: the population's spread of communities (trait means and behaviour
    coefficients; 0 = every community the same task): the starting value, calibrated to the
    survey's effect spread unless ``match_spread`` is False (then kept as given).
    ``match_trends``: give each community its own trend, calibrated to the survey's group
    trends shrunk towards the common one (:func:`target_trends`); False moves every group
    alike each wave (the fidelity table still measures the trends and flags a miss).
    """
    from simlab.society.run import generate_stream

    if rounds < 1:
        raise ScenarioError(f"rounds={rounds} must be >= 1 (simlab twin --rounds)")
    if heterogeneity < 0:
        raise ScenarioError(f"heterogeneity={heterogeneity} must be >= 0 (0.5 is moderate; "
                            "simlab twin --heterogeneity)")
    shape = survey_shape(survey, seed)
    to_link, _ = link_functions(shape.target)
    target_w, target_g = to_link(shape.wave_level), to_link(shape.group_level)
    target_c = target_trends(shape) if match_trends else None
    levels = Levels(group=target_g - target_g.mean() + target_w[0],
                    wave=target_w - target_w[0], scale=1.0, heterogeneity=heterogeneity,
                    trend=target_c)
    history = []
    for r in range(rounds):
        stream = generate_stream(twin_scenario(survey, shape, levels), seed)
        ach_w, ach_g = achieved_levels(stream, shape.n_groups)
        trend = levels.trend
        if target_c is not None and trend is not None:
            got = link_slopes(*twin_cells(stream, shape.n_groups), shape.times, shape.target)[0]
            seen = np.isfinite(got)
            d_c = np.where(seen, target_c - np.where(seen, got, 0.0), 0.0)
            trend = trend + d_c - (d_c[seen].mean() * seen if seen.any() else 0.0)
        history.append(float(np.abs(ach_w - shape.wave_level).max()))
        d_w, d_g = target_w - to_link(ach_w), target_g - to_link(ach_g)
        # the last round keeps scale and spread, so its level correction is made at them
        last = r == rounds - 1
        scale = levels.scale if last else _rescale(levels.scale, shape.signal,
                                                   pooled_r2(stream))
        het = levels.heterogeneity if last or not match_spread else _respread(
            levels.heterogeneity, shape.spread, effect_spread(stream))
        levels = Levels(group=levels.group + d_g - d_g.mean() + d_w[0],
                        wave=levels.wave + d_w - d_w[0], scale=scale, heterogeneity=het,
                        trend=trend)
    twin = twin_scenario(survey, shape, levels)
    stream = generate_stream(twin, seed)
    ach_w, ach_g = achieved_levels(stream, shape.n_groups)
    history.append(float(np.abs(ach_w - shape.wave_level).max()))
    check_w, _ = achieved_levels(generate_stream(twin, seed + 1), shape.n_groups)
    return TwinFit(config=twin_config(survey, shape, levels), shape=shape, achieved_wave=ach_w,
                   achieved_group=ach_g, signal=pooled_r2(stream), check_wave=check_w,
                   seed=seed, history=history, spread=effect_spread(stream),
                   trends=group_trends(*twin_cells(stream, shape.n_groups), shape.times))


def target_trends(shape: SurveyShape) -> np.ndarray | None:
    """The group trends a twin is calibrated to (link scale per time unit, mean 0): each
    group's slope shrunk towards the precision-weighted common slope by tau^2 / (tau^2 +
    se_g^2), tau^2 the between-group slope variance net of sampling (method of moments; the
    empirical-Bayes estimate of a random-slopes model), so that parallel trends measured with
    noise give a twin without group trends rather than one that copies the noise. None when
    the survey has no group trends to match (fewer than two groups over two waves, or no
    between-group variance beyond sampling)."""
    if shape.trends is None or shape.cell_level is None or shape.cell_var is None:
        return None
    slope, se = link_slopes(shape.cell_level, shape.cell_var, shape.times, shape.target)
    has = np.isfinite(slope)
    if has.sum() < 2:
        return None
    s2 = np.maximum(se[has] ** 2, 1e-12)
    common = float(np.sum(slope[has] / s2) / np.sum(1 / s2))
    tau2 = max(0.0, float(slope[has].var(ddof=1) - s2.mean()))
    if tau2 == 0.0:                     # parallel within noise: every group moves alike
        return None
    shrunk = np.zeros(len(slope))
    shrunk[has] = tau2 / (tau2 + s2) * (slope[has] - common)
    return shrunk - shrunk[has].mean() * has


def _respread(het: float, wanted: float, got: float) -> float:
    """The heterogeneity update: the effect spread grows about linearly with it, so multiply
    by wanted / got, damped to a factor in [1/3, 3] per round (0 stays reachable: a survey
    without spread drives it towards 0)."""
    if got <= 1e-6:
        return max(het, 0.05) * 3.0 if wanted > 1e-6 else het
    return float(het * np.clip(wanted / got, 1 / 3, 3.0))


def _rescale(scale: float, wanted: float, got: float) -> float:
    """The effect-size update: R^2 grows about as s^2 for modest effects, so multiply s by
    sqrt(wanted / got), damped to a factor in [1/3, 3] per round."""
    if got <= 1e-6:
        return scale * 3.0
    return float(scale * np.clip(math.sqrt(max(wanted, 1e-6) / got), 1 / 3, 3.0))


def make_twin(survey: SurveyScenario, seed: int = 0, rounds: int = 4,
              heterogeneity: float = 0.5) -> dict[str, Any]:
    """A simulated scenario config (TOML-able dict) matched to ``survey``'s shape."""
    return fit_twin(survey, seed, rounds, heterogeneity).config


__all__ = ["TwinFit", "fit_twin", "make_twin", "target_trends"]
