"""What the society did: its per-tick model reporters, drawn under the learners' scores.

The reporters (``TaskStream.meta["reporters"]``, a Mesa ``DataCollector`` table, see
:mod:`simlab.society.diagnostics.reporters`) come from the scenario's cached stream of the
first seed the runs used, so a reader sees whether adoption tipped, an outbreak started or the
parties split in the waves where a learner failed. Ticks are put on the wave axis of the other
figures (wave w is surveyed after tick ``burn_in + (w + 1) * every``).
"""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from simlab.report.figures import slug

DPI = 100
LABELS = {"mean_response": "mean true P(y=1) / E[y]", "mean_opinion": "mean opinion",
          "opinion_sd": "opinion sd", "share_favour": "share in favour",
          "adoption_share": "adoption share", "infected_share": "infected share",
          "recovered_share": "recovered share", "aware_share": "aware share",
          "n_parties": "parties (>= 1%)", "largest_party": "largest party share",
          "modularity": "modularity of parties"}


def society_figure(reporters: dict[str, list[float]], burn_in: int, every: int,
                   shift_waves: list[int], title: str = "") -> bytes:
    """One panel per reporter against the wave axis, shifts dashed; PNG bytes."""
    names = [k for k in reporters if k != "tick"]
    wave = (np.asarray(reporters["tick"], np.float64) - burn_in) / every - 1.0
    fig = Figure(figsize=(8, 1.6 * len(names) + 0.6), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, names):
        ax.plot(wave, reporters[name], color="#1f4e79", lw=1.4)
        for w in shift_waves:
            ax.axvline(w, color="#b22222", ls="--", lw=0.9)
        ax.set_ylabel(LABELS.get(name, name.replace("_", " ")), fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("wave (ticks between waves interpolated; < 0: burn-in end)")
    if title:
        axes[0].set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def society_section(name: str, runs: pd.DataFrame, out_dir: Path) -> dict[str, Any] | None:
    """The report's "what the society did" part for scenario ``name`` (None when its stream
    cannot be had, e.g. a real survey or a scenario file no longer found)."""
    from simlab.experiment.config import ScenarioError, load_scenario

    try:
        scenario = load_scenario(name)
        seed = int(runs["seed"].min())
        stream = scenario.stream(seed)
    except (ScenarioError, ValueError, OSError, KeyError):
        return None
    rep = stream.meta.get("reporters")
    if not rep or len(rep.get("tick", [])) < 2:
        return None
    png = society_figure(rep, int(stream.meta.get("burn_in", 0)),
                         int(stream.meta.get("every", 1)), [s.wave for s in stream.shifts],
                         f"{name}, seed {seed}")
    rel = f"figures/{slug(name)}_society.png"
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    (out_dir / rel).write_bytes(png)
    last = {k: v[-1] for k, v in rep.items() if k != "tick"}
    return {"caption": f"What the society did (per tick, seed {seed}); shifts dashed",
            "file": rel, "data_uri": "data:image/png;base64," + base64.b64encode(png).decode(),
            "response": str(stream.meta.get("response", "glm")),
            "final": ", ".join(f"{LABELS.get(k, k)} {v:.3g}" for k, v in last.items())}


__all__ = ["society_figure", "society_section"]
