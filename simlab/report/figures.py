"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot, no
global state, no display), returned as PNG bytes plus a note for the caption.

Every figure takes a :class:`ScenarioData` (one scenario's runs already reduced to numpy cubes)
and shows the mean over seeds; bands are 95% t intervals over seeds where drawn. The y-range is
robust (:func:`robust_limits`: a far-out curve is left out of it), so one poor learner does not
flatten the others; curves that leave the range are named in the caption. Waves are labelled by
their time value (survey year) where the stream has one.
"""
from __future__ import annotations

import io
import math
import re
import warnings
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from simlab.evaluation.metrics import Cube, metric_unit, scored_step
from simlab.evaluation.verdicts import fmt
from simlab.learners.roles import is_baseline, is_oracle, recorded_role

DPI = 100
#: Tukey's far-out fence (in IQRs of the curves' medians) beyond which a curve is left out of
#: the y-range, and the margin added around the range
FENCE = 3.0
MARGIN = 0.08


def slug(name: str) -> str:
    """A scenario name as a file-name and anchor part: every figure of one scenario (the
    learners' and the society's) is ``figures/<slug>_<figure>.png``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "scenario"


@dataclass
class ScenarioData:
    """One scenario: per learner label, the cubes of each of its runs (keyed by seed)."""

    name: str
    cubes: dict[str, dict[int, dict[str, Cube]]]       # label -> seed -> metric -> Cube
    summaries: pd.DataFrame                             # frames.run_summaries rows
    shifts: pd.DataFrame                                # SHIFT_COLUMNS of one seed's stream
    metric: str                                         # "excess_loss" or "loss"
    colors: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # label -> registry name
    roles: dict[str, str] = field(default_factory=dict)  # label -> role (learners.roles)
    wave_labels: dict[int, str] = field(default_factory=dict)   # wave -> time value
    reference: str | None = None                        # label the differences are taken from
    negligible: set[int] = field(default_factory=set)   # shift positions marked negligible
    #: label -> early-stopping warm-up logs (``training_logs``), one per run that has a curve
    training: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: the target is binary or multiclass (losses in nats), else regression (squared error)
    classification: bool = True

    def base(self, label: str) -> str:
        return self.names.get(label, label)

    def role(self, label: str) -> str:
        return recorded_role(self.roles.get(label), self.base(label))

    def labels(self) -> list[str]:
        """Meta-learners first, then baselines and the oracle; alphabetical within."""
        return sorted(self.cubes, key=lambda s: (is_baseline(self.role(s))
                                                 or is_oracle(self.role(s)), s))


def _style(data: ScenarioData, label: str) -> dict[str, Any]:
    role = data.role(label)
    if is_oracle(role):
        return {"color": "black", "linestyle": ":", "label": label}
    return {"color": data.colors.get(label, "grey"),
            "linestyle": "--" if is_baseline(role) else "-", "label": label}


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


def _at_scored(cs: dict[str, Cube], metric: str) -> Cube:
    """``metric``'s cube cut to the run's scored step count (one step: ``values[:, :, -1]``
    is then the prediction the learner makes)."""
    cube = cs[metric]
    at = scored_step(cs)
    i = cube.values.shape[2] - 1 if at == "max" else int(np.flatnonzero(cube.steps == at)[0])
    return Cube(cube.waves, cube.shots, cube.steps[i:i + 1], cube.values[:, :, i:i + 1])


def _stack(runs: dict[int, dict[str, Cube]], metric: str,
           take: Callable[[Cube], np.ndarray], scored: bool = False
           ) -> tuple[np.ndarray, Cube] | None:
    """Stack ``take(cube)`` over the seeds that recorded ``metric`` (equal shapes only);
    ``scored``: each run's cube at its scored step count (:func:`_at_scored`)."""
    got = [(take(cube), cube) for cube in (_at_scored(c, metric) if scored else c[metric]
                                           for c in runs.values() if metric in c)]
    if not got:
        return None
    shape = got[0][0].shape
    return np.stack([a for a, _ in got if a.shape == shape]), got[0][1]


def robust_limits(curves: dict[str, np.ndarray], floor: float | None = None
                  ) -> tuple[tuple[float, float] | None, list[str]]:
    """A y-range that one poor learner cannot set: a curve whose median lies beyond Tukey's
    far-out fence across the curves' medians (Q3 + 3 IQR, or below Q1 - 3 IQR; with at least
    4 curves) is left out of the range, which spans the other curves (plus ``MARGIN``), and is
    named with its largest value for the caption. ``floor``: the quantity's lower bound (0 for
    a loss). None when there is nothing finite."""
    finite = {k: np.asarray(v, np.float64)[np.isfinite(v)] for k, v in curves.items()}
    finite = {k: v for k, v in finite.items() if v.size}
    if not finite:
        return None, []
    med = np.array([np.median(v) for v in finite.values()])
    out: list[str] = []
    keep = list(finite)
    if len(finite) >= 4:
        q1, q3 = np.quantile(med, [0.25, 0.75])
        far = FENCE * max(q3 - q1, 1e-12)
        keep = [k for k, m in zip(finite, med) if q1 - far <= m <= q3 + far]
    vals = np.concatenate([finite[k] for k in keep])
    lo, hi = float(vals.min()), float(vals.max())
    pad = MARGIN * max(hi - lo, 1e-12)
    lo = max(lo - pad, floor) if floor is not None and lo >= floor else lo - pad
    hi += pad
    for k in (k for k in finite if k not in keep):    # plotted where it enters the range
        inside = bool(((finite[k] >= lo) & (finite[k] <= hi)).any())
        out.append(f"{k} ({'partly ' if inside else ''}outside: from "
                   f"{fmt(float(finite[k].min()))} to {fmt(float(finite[k].max()))})")
    return (lo, hi), out


def _apply_limits(ax: Axes, curves: dict[str, np.ndarray], floor: float | None = None) -> str:
    lim, out = robust_limits(curves, floor)
    if lim is not None:
        ax.set_ylim(*lim)
    return ("Far from the others, so left out of the y-range (drawn only where it enters "
            "it): " + ", ".join(out) + ".") if out else ""


def _wave_axis(ax: Axes, data: ScenarioData, waves: np.ndarray) -> None:
    """x ticks at the waves, labelled by their time value when the stream has one."""
    ax.set_xlabel("survey time" if data.wave_labels else "wave")
    if not data.wave_labels or not len(waves):
        return
    step = max(1, math.ceil(len(waves) / 10))
    ticks = waves[::step]
    ax.set_xticks(ticks, [data.wave_labels.get(int(w), str(w)) for w in ticks], fontsize=8)


def _metric_label(metric: str, classification: bool = True) -> str:
    """An axis label with the metric's unit (``metrics.metric_unit``), e.g. "excess loss
    (nats/respondent above the oracle)"."""
    unit = metric_unit(metric, classification, short=True)
    return metric.replace("_", " ") + (f"\n({unit})" if unit else "")


def png_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


LEGEND_IN = 1.7       # inches kept right of the axes for the legend


def _new(width: float = 7.5, height: float = 3.6, ncols: int = 1, left_in: float = 0.7,
         sharey: bool = False) -> tuple[Figure, list[Axes]]:
    """A figure with fixed margins (cheaper to draw than constrained/tight layout), keeping
    ``LEGEND_IN`` inches on the right for the legend."""
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(1, ncols, squeeze=False, sharey=sharey)[0]
    fig.subplots_adjust(left=left_in / width, right=1 - LEGEND_IN / width, bottom=0.55 / height,
                        top=1 - 0.4 / height, wspace=0.25)
    return fig, list(axes)


def _legend(fig: Figure, ax: Axes) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", fontsize=8, frameon=False,
                   bbox_to_anchor=(1 - (LEGEND_IN - 0.1) / fig.get_figwidth(), 0.5))


def _per_wave(cube: Cube) -> np.ndarray:
    return cube.values[:, :, -1].mean(1)


def excess_over_waves(data: ScenarioData) -> tuple[bytes, str]:
    """The comparison metric per wave (each learner at its scored step count, mean over
    shots), shifts marked and numbered as in the shift table."""
    fig, (ax,) = _new()
    drawn: dict[str, np.ndarray] = {}
    waves = np.zeros(0, np.int64)
    for lab in data.labels():
        got = _stack(data.cubes[lab], data.metric, _per_wave, scored=True)
        if got is None:
            continue
        rows, cube = got
        mean, half = _mean_band(rows)
        ax.plot(cube.waves, mean, **_style(data, lab))
        ax.fill_between(cube.waves, mean - half, mean + half, alpha=0.15,
                        color=_style(data, lab)["color"], linewidth=0)
        drawn[lab] = mean
        waves = cube.waves if cube.waves.size > waves.size else waves
    r: Any          # a row of data.shifts (pandas-stubs types each field as any scalar)
    for i, r in enumerate(data.shifts.itertuples(index=False)):
        ax.axvline(r.wave, color="crimson", linewidth=1, alpha=0.7,
                   linestyle=":" if i in data.negligible else "-")
        ax.annotate(f"#{i}", (r.wave, 0.98), xycoords=("data", "axes fraction"), va="top",
                    ha="left", fontsize=8, color="crimson", xytext=(2, 0),
                    textcoords="offset points")
    _wave_axis(ax, data, waves)
    ax.set_ylabel(_metric_label(data.metric, data.classification))
    ax.set_title("Score per wave (shifts in red, numbered; dotted: negligible)", fontsize=10)
    note = _apply_limits(ax, drawn, 0.0 if data.metric == "loss" else None)
    _legend(fig, ax)
    return png_bytes(fig), note


def shift_differences(data: ScenarioData, before: int = 3, after: int = 6
                      ) -> tuple[bytes, str]:
    """Each learner's difference from the reference around every shift: one panel per shift,
    x = waves since the shift, mean over seeds of (learner - reference) per wave with a 95% t
    band; below 0 the learner is better than the reference."""
    ref = data.reference
    shifts = data.shifts
    fig, axes = _new(width=max(7.5, 3.2 * len(shifts) + 2.0), ncols=max(len(shifts), 1),
                     left_in=0.9, sharey=True)
    ref_runs = data.cubes.get(ref or "", {})
    drawn: dict[str, np.ndarray] = {}
    sh: Any         # a row of shifts (pandas-stubs types each field as any scalar)
    for ax, (i, sh) in zip(axes, enumerate(shifts.itertuples(index=False))):
        for lab in data.labels():
            if lab == ref or is_oracle(data.role(lab)):
                continue
            rows = []
            for seed, cs in data.cubes[lab].items():
                if seed not in ref_runs or data.metric not in cs or data.metric not in \
                        ref_runs[seed]:
                    continue
                a, b = cs[data.metric], ref_runs[seed][data.metric]
                da = pd.Series(_per_wave(a), a.waves) - pd.Series(_per_wave(b), b.waves)
                rel = np.arange(-before, after + 1)
                rows.append(da.reindex(sh.wave + rel).to_numpy(np.float64))
            if not rows:
                continue
            mean, half = _mean_band(np.stack(rows))
            x = np.arange(-before, after + 1)
            ax.plot(x, mean, marker="o", markersize=3, **_style(data, lab))
            ax.fill_between(x, mean - half, mean + half, alpha=0.12, linewidth=0,
                            color=_style(data, lab)["color"])
            drawn[f"{lab} #{i}"] = mean
        ax.axhline(0, color="black", linewidth=0.8)
        ax.axvline(0, color="crimson", linewidth=1, alpha=0.7)
        for j, other in enumerate(shifts["wave"]):     # another shift inside this window
            rel_wave = int(other) - int(sh.wave)
            if j != i and -before <= rel_wave <= after:
                ax.axvline(rel_wave, color="crimson", linewidth=1, alpha=0.5, linestyle=":")
                ax.text(rel_wave, 1.0, f" #{j}", color="crimson", fontsize=7, va="top",
                        transform=ax.get_xaxis_transform())
        when = data.wave_labels.get(int(sh.wave), f"wave {sh.wave}")
        ax.set_title(f"#{i} {sh.name} at {when}" + (" (negligible)" if i in data.negligible
                                                     else ""), fontsize=9)
        ax.set_xlabel("waves since the shift")
    axes[0].set_ylabel(f"{_metric_label(data.metric, data.classification)} - {ref}")
    note = _apply_limits(axes[0], drawn)
    _legend(fig, axes[0])
    return png_bytes(fig), note


def adaptation_curves(data: ScenarioData, max_panels: int = 4) -> tuple[bytes, str]:
    """Loss vs inner steps, one panel per shots K (at most ``max_panels``, spread evenly)."""
    shots = sorted({int(k) for runs in data.cubes.values() for c in runs.values()
                    if "loss" in c for k in c["loss"].shots})
    if len(shots) > max_panels:
        shots = [shots[i] for i in np.linspace(0, len(shots) - 1, max_panels).round().astype(int)]
    fig, axes = _new(width=3.0 * max(len(shots), 1) + 1.5, ncols=max(len(shots), 1),
                     sharey=True)
    drawn: dict[str, np.ndarray] = {}
    for ax, k in zip(axes, shots):
        def at_k(c: Cube, k: int = k) -> np.ndarray:
            return c.values[:, c.shots == k, :].mean((0, 1))

        for lab in data.labels():
            got = _stack(data.cubes[lab], "loss", at_k)
            if got is None:
                continue
            rows, cube = got
            mean, half = _mean_band(rows)
            ax.plot(cube.steps, mean, marker="o", markersize=3, **_style(data, lab))
            ax.fill_between(cube.steps, mean - half, mean + half, alpha=0.12, linewidth=0,
                            color=_style(data, lab)["color"])
            drawn[f"{lab} (K={k})"] = mean
        ax.set_title(f"K = {k}", fontsize=10)
        ax.set_xlabel("inner steps")
    axes[0].set_ylabel("loss (mean over waves)")
    note = _apply_limits(axes[0], drawn, 0.0)
    _legend(fig, axes[0])
    return png_bytes(fig), note


def loss_vs_shots(data: ScenarioData) -> tuple[bytes, str]:
    """Loss at each learner's scored step count vs shots K (mean over waves and seeds)."""
    fig, (ax,) = _new()
    drawn: dict[str, np.ndarray] = {}
    for lab in data.labels():
        got = _stack(data.cubes[lab], "loss", lambda c: c.values[:, :, -1].mean(0), scored=True)
        if got is None:
            continue
        rows, cube = got
        mean, half = _mean_band(rows)
        ax.errorbar(cube.shots, mean, yerr=half, marker="o", markersize=4, capsize=2,
                    **_style(data, lab))
        drawn[lab] = mean
    ax.set_xlabel("shots K (support respondents per group)")
    ax.set_ylabel("loss at the learner's scored step count")
    ax.set_title("Loss vs shots", fontsize=10)
    note = _apply_limits(ax, drawn, 0.0)
    _legend(fig, ax)
    return png_bytes(fig), note


def compute_cost(data: ScenarioData) -> tuple[bytes, str]:
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
    return png_bytes(fig), ""


_CPU = ("meta_fit_cpu_seconds_total", "adapt_cpu_seconds_total")
_WALL = ("meta_fit_seconds_total", "adapt_seconds_total")


def loss_vs_compute(data: ScenarioData) -> tuple[bytes, str]:
    """Each learner's score against its CPU seconds per run (meta-fit + adapt, mean over seeds,
    log scale): what a point of excess loss costs. Wall seconds where CPU was not recorded."""
    g = data.summaries.groupby("label")
    col = f"mean_{data.metric}"
    fig, (ax,) = _new()
    drawn: dict[str, np.ndarray] = {}
    for lab in data.labels():
        if lab not in g.groups or col not in data.summaries or is_oracle(data.role(lab)):
            continue
        rows = g.get_group(lab)
        cols = [c for c in _CPU if c in rows] or [c for c in _WALL if c in rows]
        if not cols or not np.isfinite(rows[col]).any():
            continue
        x, y = float(np.nanmean(rows[cols].sum(axis=1))), rows[col].to_numpy(float)
        mean, half = _mean_band(y[:, None])
        ax.errorbar([max(x, 1e-3)], mean, yerr=half, marker="o", markersize=5, capsize=2,
                    **_style(data, lab))
        ax.annotate(lab, (max(x, 1e-3), float(mean[0])), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
        drawn[lab] = mean
    ax.set_xscale("log")
    ax.set_xlabel("CPU seconds per run (meta-fit + adapt, mean over seeds)")
    ax.set_ylabel(_metric_label(data.metric, data.classification) + ", mean over seeds")
    ax.set_title("Score vs compute", fontsize=10)
    note = _apply_limits(ax, drawn, 0.0)
    return png_bytes(fig), note


def training_logs(runs: pd.DataFrame, labels: dict[Any, str]) -> dict[str, list[dict[str, Any]]]:
    """label -> the warm-up ``meta_fit`` log entries that carry an early-stopping ``curve``,
    from the store's ``meta_fit`` column (the runs' ``log["meta_fit"]`` as JSON); ``labels``:
    run id -> label. Empty without the column."""
    out: dict[str, list[dict[str, Any]]] = {}
    if "meta_fit" not in runs:
        return out
    for rid, text in zip(runs["run_id"], runs["meta_fit"]):
        if rid not in labels or not isinstance(text, str):
            continue
        for entry in json.loads(text):
            if isinstance(entry, dict) and entry.get("curve"):
                out.setdefault(labels[rid], []).append(entry)
    return out


def training_curves(data: ScenarioData) -> tuple[bytes, str]:
    """Each learner's warm-up training curve under early stopping: held-out loss (the last
    warm-up wave) against meta-iterations and against CPU seconds, one line per seed, the
    restored best marked; the caption names learners stopped by a cap rather than by patience
    (they may not have converged) and those without a curve (they fit to convergence by their
    own rule)."""
    fig, axes = _new(width=10.5, ncols=2, sharey=True)
    drawn: dict[str, np.ndarray] = {}
    capped: list[str] = []
    for lab in data.labels():
        for i, entry in enumerate(data.training.get(lab, [])):
            pts = entry["curve"]
            it = np.array([p["iteration"] for p in pts], float)
            cpu = np.array([p["cpu_seconds"] for p in pts], float)
            score = np.array([np.nan if p["score"] is None else p["score"] for p in pts], float)
            style = {**_style(data, lab), "linewidth": 1, "alpha": 0.7}
            if i:
                style.pop("label")
            best = int(np.nanargmin(score)) if np.isfinite(score).any() else None
            for ax, x in zip(axes, (it, cpu)):
                ax.plot(x, score, **style)
                if best is not None:
                    ax.plot(x[best], score[best], marker="o", markersize=4,
                            color=style["color"])
            drawn[f"{lab}#{i}"] = score
            if entry.get("stopped") != "patience":
                capped.append(f"{lab} ({entry.get('stopped')})")
    axes[0].set_xlabel("meta-iterations")
    axes[1].set_xlabel("CPU seconds")
    axes[0].set_ylabel("held-out loss (last warm-up wave)")
    axes[0].set_title("Training curves (dot: the restored best)", fontsize=10)
    note = _apply_limits(axes[0], drawn, 0.0)
    _legend(fig, axes[0])
    missing = [lab for lab in data.labels() if lab not in data.training]
    if capped:
        note += (" Stopped by a cap, not by patience (may not have converged): "
                 + ", ".join(sorted(set(capped))) + ".")
    else:
        note += " Every curve stopped by patience: no learner was stopped by its budget."
    if missing:
        note += (" No curve (fit to convergence by their own rule or fixed budget): "
                 + ", ".join(missing) + ".")
    return png_bytes(fig), note.strip()


#: (file stem, caption, drawing function) in the order the report shows them; a caption may
#: name ``{reference}``
FIGURES: tuple[tuple[str, str, Callable[[ScenarioData], tuple[bytes, str]]], ...] = (
    ("excess_over_waves", "Score per wave with the shifts marked.", excess_over_waves),
    ("shift_differences", "Difference from {reference} around each shift (below 0: better "
                          "than {reference}; a dotted line marks another shift inside a "
                          "panel's window).", shift_differences),
    ("adaptation_curves", "Adaptation curves: loss vs inner steps.", adaptation_curves),
    ("loss_vs_shots", "Loss vs shots.", loss_vs_shots),
    ("compute_cost", "Compute cost.", compute_cost),
    ("loss_vs_compute", "Score vs compute: lower and further left is better.", loss_vs_compute),
    ("training_curves", "Warm-up training curves: held-out loss vs meta-iterations and CPU "
                        "seconds.", training_curves),
)
