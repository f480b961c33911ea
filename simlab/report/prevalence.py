"""The group prevalence trajectories figure: what an MRP analyst would plot.

For the best baseline and the best meta-learner on group prevalence error (lowest mean over
seeds), a few groups' estimates over the scored waves with their 90% band
(``evaluation.poststrat.predictive_interval``) against the observed shares (and the true
prevalence where the stream knows it), at the largest K of one seed (the lowest): one run's
actual numbers, not an average that no run produced. The groups are chosen at evenly spaced
ranks of their observed-share trend (slope over waves), so diverging trajectories show. The
caption states each learner's coverage: the share of all its group x wave x K x seed bands that
hold the observed share (0.90 or a little more for a learner calibrated at the group level).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from simlab.evaluation.poststrat import INTERVAL_LEVEL
from simlab.evaluation.frames import run_roles
from simlab.evaluation.verdicts import fmt
from simlab.learners.roles import is_baseline, is_method
from simlab.report.figures import png_bytes

#: groups drawn per learner
N_GROUPS = 4


def pick_learners(board: pd.DataFrame, metric: str = "prevalence_error") -> list[str]:
    """Labels of the best baseline and the best other (meta-)learner on ``mean_<metric>``
    (the leaderboard's per-seed mean); the references (oracle, floor) are neither."""
    col = f"mean_{metric}"
    if col not in board or board.empty:
        return []
    rows = board.dropna(subset=[col])
    roles = run_roles(rows, "learner" if "learner" in rows else "label")
    base = rows[roles.map(is_baseline)]
    meta = rows[roles.map(is_method)]
    return [str(part["label"].iloc[int(np.argmin(part[col].to_numpy()))])
            for part in (base, meta) if len(part)]


def pick_groups(frame: pd.DataFrame, n: int = N_GROUPS) -> list[str]:
    """``n`` groups at evenly spaced ranks of their observed-share slope over waves."""
    obs = frame.groupby(["group", "wave"])["observed"].mean().reset_index()
    slope = {str(g): (np.polyfit(d["wave"], d["observed"], 1)[0] if d["wave"].nunique() > 1
                 else 0.0) for g, d in obs.groupby("group")}
    ranked = sorted((str(g) for g in slope), key=lambda g: (slope[g], g))
    if len(ranked) <= n:
        return ranked
    return [ranked[i] for i in np.linspace(0, len(ranked) - 1, n).round().astype(int)]


def coverage(frame: pd.DataFrame) -> float:
    """Share of the rows whose band ``[lo, hi]`` holds the observed share (NaN: no band)."""
    ok = frame.dropna(subset=["lo", "hi", "observed"])
    if ok.empty:
        return float("nan")
    return float(((ok["lo"] <= ok["observed"] + 1e-12)
                  & (ok["observed"] <= ok["hi"] + 1e-12)).mean())


def prevalence_figure(prev: pd.DataFrame, learners: list[str],
                      wave_labels: dict[int, str] | None = None) -> tuple[bytes, str] | None:
    """PNG and caption of the trajectories figure for ``learners`` (labels of ``prev``'s
    ``learner`` column: ``Store.prevalence`` rows of one scenario); None when none of them has
    estimates. A multiclass stream shows its first class."""
    prev = prev[prev["learner"].isin(learners)]
    if prev.empty:
        return None
    prev = prev[prev["category"] == prev["category"].min()]
    learners = [lab for lab in learners if lab in set(prev["learner"])]
    seed, k = int(prev["seed"].min()), int(prev["K"].max())
    one = prev[(prev["seed"] == seed) & (prev["K"] == k)]
    groups = pick_groups(one)
    from matplotlib.figure import Figure
    fig = Figure(figsize=(2.4 * len(groups) + 0.6, 2.3 * len(learners) + 0.5))
    axes = fig.subplots(len(learners), len(groups), sharex=True, sharey=True, squeeze=False)
    labels = wave_labels or {}
    for i, lab in enumerate(learners):
        for j, g in enumerate(groups):
            ax = axes[i][j]
            d = one[(one["learner"] == lab) & (one["group"] == g)].sort_values("wave")
            w = d["wave"].to_numpy()
            ax.fill_between(w, d["lo"], d["hi"], color="tab:blue", alpha=0.25, linewidth=0,
                            label=f"{INTERVAL_LEVEL:.0%} band")
            ax.plot(w, d["estimate"], color="tab:blue", label="estimate")
            if "lo_model" in d and d["lo_model"].notna().any():     # a model's posterior
                ax.plot(w, d["lo_model"], "--", color="tab:blue", linewidth=0.8,
                        label="posterior 90% of the estimate")
                ax.plot(w, d["hi_model"], "--", color="tab:blue", linewidth=0.8)
            ax.plot(w, d["observed"], "o", color="black", markersize=3, label="observed share")
            if d["truth"].notna().any():
                ax.plot(w, d["truth"], ":", color="tab:red", label="true prevalence")
            ax.set_title(f"{lab} | group {g}", fontsize=8)
            ax.tick_params(labelsize=7)
            if len(w):
                ticks = w[:: max(1, len(w) // 4)]
                ax.set_xticks(ticks, [labels.get(int(t), str(t)) for t in ticks])
    axes[0][0].legend(fontsize=6, loc="best")
    fig.supylabel("group prevalence", fontsize=8)
    fig.tight_layout()
    cover = "; ".join(f"{lab} {fmt(coverage(prev[prev['learner'] == lab]))}" for lab in learners)
    caption = (f"Group prevalence over the scored waves: the estimate (line; poststratified "
               f"where the stream has population cells) with its {INTERVAL_LEVEL:.0%} band "
               "against each group's observed (weighted) query share (dots) and the true "
               f"prevalence where known (dotted), at K={k}, seed {seed}, for the best baseline "
               "and the best meta-learner on prevalence error; groups at evenly spaced ranks of "
               "their observed trend. The band is the distribution of the group's query share "
               "under the learner's predicted probabilities (exact with equal weights, a "
               "parametric bootstrap with survey weights): where the observed share would "
               "fall if the learner were right (it leaves out the uncertainty of the learner's "
               "own parameters); dashed, where the model states a posterior (partial "
               "pooling), the 90% posterior interval of the estimate itself. Share of bands "
               "holding the observed share over every group, "
               f"wave, K and seed ({INTERVAL_LEVEL:.2f} or a little more if the learner is "
               f"calibrated: the share of a few respondents is discrete): {cover}.")
    return png_bytes(fig), caption
