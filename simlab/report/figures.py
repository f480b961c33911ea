"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot, no
global state, no display), returned as PNG bytes.

Every figure takes a :class:`ScenarioData` (one scenario's runs already reduced to numpy cubes)
and shows the mean over seeds; bands are 95% t intervals over seeds where drawn.
"""
from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from simlab.evaluation.metrics import Cube
from simlab.evaluation.statistics import BASELINES, ORACLE

DPI = 100


@dataclass
class ScenarioData:
    """One scenario: per learner label, the cubes of each of its runs (keyed by seed)."""

    name: str
    cubes: dict[str, dict[int, dict[str, Cube]]]       # label -> seed -> metric -> Cube
    summaries: pd.DataFrame                             # statistics.run_summaries rows
    shifts: pd.DataFrame                                # SHIFT_COLUMNS of one seed's stream
    metric: str                                         # "excess_loss" or "loss"
    colors: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # label -> registry name

    def base(self, label: str) -> str:
        return self.names.get(label, label)

    def labels(self) -> list[str]:
        """Meta-learners first, then baselines and the oracle; alphabetical within."""
        return sorted(self.cubes, key=lambda s: (self.base(s) in BASELINES + (ORACLE,), s))


def _style(data: ScenarioData, label: str) -> dict[str, object]:
    base = data.base(label)
    if base == ORACLE:
        return {"color": "black", "linestyle": ":", "label": label}
    return {"color": data.colors.get(label, "grey"),
            "linestyle": "--" if base in BASELINES else "-", "label": label}


def assign_colors(labels: list[str]) -> dict[str, str]:
    """A fixed colour per learner label (tab10 then tab20), the same in every figure."""
    from matplotlib import colormaps
    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {lab: _hex(cmap(i % cmap.N)) for i, lab in enumerate(sorted(labels))}


def _hex(rgba: tuple[float, ...]) -> str:
    return "#" + "".join(f"{int(round(c * 255)):02x}" for c in rgba[:3])


def _mean_band(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds (axis 0) and the half-width of the 95% t interval (0 for one seed)."""
    n = np.isfinite(rows).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # all-NaN columns: diverged seeds
        mean = np.nanmean(rows, 0) if rows.size else rows.sum(0)
        sd = np.nanstd(rows, 0, ddof=1) if rows.shape[0] > 1 else np.zeros(rows.shape[1:])
        half = np.where(n > 1, stats.t.ppf(0.975, np.maximum(n - 1, 1)) * sd /
                        np.sqrt(np.maximum(n, 1)), 0.0)
    return mean, half


def _stack(runs: dict[int, dict[str, Cube]], metric: str,
           take: Callable[[Cube], np.ndarray]) -> tuple[np.ndarray, Cube] | None:
    """Stack ``take(cube)`` over the seeds that recorded ``metric`` (equal shapes only)."""
    got = [(take(c[metric]), c[metric]) for c in runs.values() if metric in c]
    if not got:
        return None
    shape = got[0][0].shape
    return np.stack([a for a, _ in got if a.shape == shape]), got[0][1]


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


LEGEND_IN = 1.7       # inches kept right of the axes for the legend


def _new(width: float = 7.5, height: float = 3.6, ncols: int = 1, left_in: float = 0.7
         ) -> tuple[Figure, list[Axes]]:
    """A figure with fixed margins (cheaper to draw than constrained/tight layout), keeping
    ``LEGEND_IN`` inches on the right for the legend."""
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    fig.subplots_adjust(left=left_in / width, right=1 - LEGEND_IN / width, bottom=0.55 / height,
                        top=1 - 0.4 / height, wspace=0.25)
    return fig, list(axes)


def _legend(fig: Figure, ax: Axes) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", fontsize=8, frameon=False,
                   bbox_to_anchor=(1 - (LEGEND_IN - 0.1) / fig.get_figwidth(), 0.5))


def excess_over_waves(data: ScenarioData) -> bytes:
    """The comparison metric per wave (largest step count, mean over shots), shifts marked."""
    fig, (ax,) = _new()
    for lab in data.labels():
        got = _stack(data.cubes[lab], data.metric, lambda c: c.values[:, :, -1].mean(1))
        if got is None:
            continue
        rows, cube = got
        mean, half = _mean_band(rows)
        ax.plot(cube.waves, mean, **_style(data, lab))
        ax.fill_between(cube.waves, mean - half, mean + half, alpha=0.15,
                        color=_style(data, lab)["color"], linewidth=0)
    for r in data.shifts.drop_duplicates("wave").itertuples(index=False):
        ax.axvline(r.wave, color="crimson", linewidth=1, alpha=0.7)
        ax.annotate(f"{r.kind}: {r.name}", (r.wave, 1), xycoords=("data", "axes fraction"),
                    rotation=90, va="top", ha="right", fontsize=7, color="crimson")
    ax.set_xlabel("wave")
    ax.set_ylabel(data.metric.replace("_", " "))
    ax.set_title("Prequential score per wave (shifts in red)", fontsize=10)
    _legend(fig, ax)
    return _png(fig)


def adaptation_curves(data: ScenarioData, max_panels: int = 4) -> bytes:
    """Loss vs inner steps, one panel per shots K (at most ``max_panels``, spread evenly)."""
    shots = sorted({int(k) for runs in data.cubes.values() for c in runs.values()
                    if "loss" in c for k in c["loss"].shots})
    if len(shots) > max_panels:
        shots = [shots[i] for i in np.linspace(0, len(shots) - 1, max_panels).round().astype(int)]
    fig, axes = _new(width=3.0 * max(len(shots), 1) + 1.5, ncols=max(len(shots), 1))
    for ax, k in zip(axes, shots):
        for lab in data.labels():
            got = _stack(data.cubes[lab], "loss",
                         lambda c, k=k: c.values[:, c.shots == k, :].mean((0, 1)))
            if got is None:
                continue
            rows, cube = got
            mean, half = _mean_band(rows)
            ax.plot(cube.steps, mean, marker="o", markersize=3, **_style(data, lab))
            ax.fill_between(cube.steps, mean - half, mean + half, alpha=0.12, linewidth=0,
                            color=_style(data, lab)["color"])
        ax.set_title(f"K = {k}", fontsize=10)
        ax.set_xlabel("inner steps")
    axes[0].set_ylabel("loss (mean over waves)")
    _legend(fig, axes[0])
    return _png(fig)


def loss_vs_shots(data: ScenarioData) -> bytes:
    """Loss at the largest step count vs shots K (mean over waves and seeds)."""
    fig, (ax,) = _new()
    for lab in data.labels():
        got = _stack(data.cubes[lab], "loss", lambda c: c.values[:, :, -1].mean(0))
        if got is None:
            continue
        rows, cube = got
        mean, half = _mean_band(rows)
        ax.errorbar(cube.shots, mean, yerr=half, marker="o", markersize=4, capsize=2,
                    **_style(data, lab))
    ax.set_xlabel("shots K (support respondents per group)")
    ax.set_ylabel("loss at the largest step count")
    ax.set_title("Loss vs shots", fontsize=10)
    _legend(fig, ax)
    return _png(fig)


def recovery_per_shift(data: ScenarioData) -> bytes:
    """Waves to recover after each shift: bar = mean over the seeds that recovered, with its
    value on top; "xN" = not recovered on N seeds. A shift no learner has a pre-shift level
    for (inside the warm-up) is labelled so instead of counted as a failure."""
    cols = sorted((c for c in data.summaries.columns if c.startswith("recovery_waves[")),
                  key=lambda c: int(c[len("recovery_waves["):-1]))
    labels = data.labels()
    fig, (ax,) = _new(width=max(7.5, 0.25 * len(cols) * max(len(labels), 1) + 2.5),
                      height=4.0)
    width = 0.8 / max(len(labels), 1)
    x = np.arange(len(cols))
    undefined = data.summaries[cols].isna().all(axis=0).to_numpy() if cols else np.zeros(0, bool)
    top = 1.0
    for j, lab in enumerate(labels):
        vals = data.summaries.loc[data.summaries["label"] == lab, cols].to_numpy(np.float64)
        ok = np.isfinite(vals)
        mean = np.where(ok.any(0), np.where(ok, vals, 0).sum(0) / np.maximum(ok.sum(0), 1),
                        np.nan)
        style = _style(data, lab)
        pos = x - 0.4 + width * (j + 0.5)
        ax.bar(pos, np.nan_to_num(mean), width, color=style["color"], label=lab,
               hatch="//" if data.base(lab) in BASELINES else None, edgecolor="white")
        for p, m, miss, skip in zip(pos, mean, (~ok).sum(0), undefined):
            if skip:
                continue
            text = ("" if math.isnan(m) else f"{m:.1f}") + (f" x{miss}" if miss else "")
            ax.annotate(text.strip(), (p, 0.0 if math.isnan(m) else m), rotation=90,
                        textcoords="offset points", xytext=(0, 3), ha="center", va="bottom",
                        fontsize=7, color="crimson" if miss else "black")
        top = max(top, float(np.nanmax(np.append(mean, 0.0))))
    shifts = data.shifts.reset_index(drop=True)
    names = [(f"#{i} wave {shifts.loc[i, 'wave']}\n{shifts.loc[i, 'name']}" if i < len(shifts)
              else f"#{i}") + ("\n(no pre-shift level)" if undefined[i] else "")
             for i in range(len(cols))]
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylim(0, top * 1.4 + 0.5)
    ax.set_ylabel("waves to recover")
    ax.set_title("Recovery time per shift (xN: not recovered on N seeds)", fontsize=10)
    _legend(fig, ax)
    return _png(fig)


def compute_cost(data: ScenarioData) -> bytes:
    """Mean seconds per run: adaptation (all waves x shots) and meta-fitting, stacked."""
    labels = data.labels()
    g = data.summaries.groupby("label")
    adapt = np.array([g.get_group(lab)["adapt_seconds_total"].mean()
                      if "adapt_seconds_total" in data.summaries else np.nan for lab in labels])
    fit = np.array([g.get_group(lab)["meta_fit_seconds_total"].mean()
                    if "meta_fit_seconds_total" in data.summaries else np.nan for lab in labels])
    fig, (ax,) = _new(height=0.3 * len(labels) + 1.3,
                      left_in=0.25 + 0.07 * max((len(lab) for lab in labels), default=4))
    y = np.arange(len(labels))
    ax.barh(y, np.nan_to_num(adapt), color="#4c72b0", label="adapt + predict")
    ax.barh(y, np.nan_to_num(fit), left=np.nan_to_num(adapt), color="#dd8452", label="meta-fit")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds per run (mean over seeds)")
    ax.set_title("Compute cost", fontsize=10)
    _legend(fig, ax)
    return _png(fig)


#: (file stem, caption, drawing function) in the order the report shows them
FIGURES: tuple[tuple[str, str, Callable[[ScenarioData], bytes]], ...] = (
    ("excess_over_waves", "Score per wave with the shifts marked", excess_over_waves),
    ("adaptation_curves", "Adaptation curves: loss vs inner steps", adaptation_curves),
    ("loss_vs_shots", "Loss vs shots", loss_vs_shots),
    ("recovery", "Recovery time per shift", recovery_per_shift),
    ("compute_cost", "Compute cost", compute_cost),
)
