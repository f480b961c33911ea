"""A short account of a stream, for ``simlab stream`` (text, or ``--json`` facts)."""
from __future__ import annotations

from typing import Any

import numpy as np

from simlab.tasks.task import Task, TaskStream


def stream_summary(stream: TaskStream) -> str:
    """A short human-readable account of a stream, for ``simlab stream``."""
    m = stream.meta
    first = stream.waves[0][0]
    kinds = f"{first.target}" + (f" ({first.n_classes} classes)" if first.target == "multiclass"
                                 else "")
    sizes = sorted({len(w) for w in stream.waves})
    q_sizes = sorted({t.n_query for t in stream.tasks()})
    lines = [
        f"scenario {m.get('scenario', '?')}  seed {m.get('seed', '?')}  "
        f"family {m.get('family', '?')}  target {kinds}",
        f"{len(stream)} waves x {'/'.join(map(str, sizes))} tasks  "
        f"K={first.shots}  Q={'/'.join(map(str, q_sizes))}  D={first.n_features}"
        + (f"  ({m.get('n_agents')} agents in {m.get('n_groups')} groups)"
           if "n_agents" in m else ""),
        f"features: {', '.join(m.get('feature_names') or []) or '?'}",
        f"{_prevalence_label(first)} per wave: "
        + " ".join(_fmt_prevalence(w) for w in stream.waves),
    ]
    if all(t.ceiling_query is not None for t in stream.tasks()):
        se = [t.info.get("ceiling_se", float("nan")) for t in stream.tasks()]
        lines.append(f"observable ceiling E[y | features, group, wave] per query respondent "
                     f"(response {m.get('response', '?')}; estimation error, RMS over tasks: "
                     f"{float(np.sqrt(np.nanmean(np.square(se)))):.3f})")
    lines.append(_cells_line(stream.tasks()))
    if m.get("reporters"):
        lines.append(f"reporters ({len(m['reporters']['tick'])} ticks): "
                     + ", ".join(k for k in m["reporters"] if k != "tick"))
    if stream.shifts:
        lines.append("shifts:")
        lines += [f"  wave {s.wave:>3} (tick {s.tick}): {s.kind} {s.name!r} on {s.target}, "
                  f"size {s.size:+.3g}" for s in stream.shifts]
    else:
        lines.append("shifts: none")
    return "\n".join(lines)


def stream_facts(stream: TaskStream) -> dict[str, Any]:
    """The same account as plain data (``simlab stream --json``): sizes, features, the
    prevalence per wave, the ceiling's error, the poststratification cells and the shifts."""
    m, tasks = stream.meta, stream.tasks()
    first = tasks[0]
    ceiling = all(t.ceiling_query is not None for t in tasks)
    cells = [t.cells for t in tasks if t.cells is not None]
    return {
        "scenario": m.get("scenario"), "seed": m.get("seed"), "family": m.get("family"),
        "target": first.target, "n_classes": first.n_classes, "waves": len(stream),
        "tasks_per_wave": [len(w) for w in stream.waves], "shots": first.shots,
        "query_sizes": sorted({t.n_query for t in tasks}), "n_features": first.n_features,
        "n_agents": m.get("n_agents"), "n_groups": m.get("n_groups"),
        "features": list(m.get("feature_names") or []),
        "prevalence_label": _prevalence_label(first),
        "prevalence_per_wave": [_fmt_prevalence(w) for w in stream.waves],
        "ceiling_rms_error": (float(np.sqrt(np.nanmean(np.square(
            [t.info.get("ceiling_se", float("nan")) for t in tasks])))) if ceiling else None),
        "cells": {"tasks_with_cells": len(cells), "tasks": len(tasks),
                  "source": cells[0].source if cells else None,
                  "per_group": sorted({len(c.share) for c in cells})},
        "reporters": [k for k in (m.get("reporters") or {}) if k != "tick"],
        "shifts": [{"wave": s.wave, "tick": s.tick, "kind": s.kind, "name": s.name,
                    "target": s.target, "size": s.size} for s in stream.shifts],
    }


def _cells_line(tasks: list[Task]) -> str:
    """How group prevalence will be poststratified (MRP), from the tasks' cells."""
    cells = [t.cells for t in tasks if t.cells is not None]
    if not cells:
        return "prevalence: the sample's (no population cells or census margins)"
    n = sorted({len(c.share) for c in cells})
    span = f"{n[0]}" if len(n) == 1 else f"{n[0]}-{n[-1]}"
    return (f"prevalence: poststratified (MRP) to {span} {cells[0].source} cells per group"
            + (f" ({len(cells)} of {len(tasks)} tasks)" if len(cells) < len(tasks) else ""))


def _prevalence_label(task: Task) -> str:
    return {"binary": "prevalence P(y=1)", "multiclass": "modal class share",
            "regression": "mean y"}[task.target]


def _fmt_prevalence(wave: list[Task]) -> str:
    ys = np.concatenate([np.concatenate([t.y_support, t.y_query]) for t in wave])
    if wave[0].target == "multiclass":
        counts = np.bincount(ys.astype(np.int64), minlength=wave[0].n_classes)
        return f"{int(counts.argmax())}:{counts.max() / counts.sum():.2f}"
    return f"{float(ys.mean()):.2f}"


__all__ = ["stream_facts", "stream_summary"]
