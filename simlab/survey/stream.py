"""A real survey into the same TaskStream as a simulated society: each (group, wave) cell
becomes one few-shot task, drawn reproducibly from the seed.

Real data has no oracle: ``oracle_query`` is None and oracle-based metrics are absent. Every
respondent is accounted for in ``meta["ledger"]`` (:mod:`simlab.survey.ledger`); the design
(:mod:`simlab.survey.design`) says what a wave is.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from simlab.errors import DataError
from simlab.survey.census import encode_census
from simlab.survey.checks import (
    check_leakage,
    column_warnings,
    support_fit_warning,
    target_warnings,
)
from simlab.survey.design import prepared_rows
from simlab.survey.encode import (
    Encoded,
    Scaling,
    encode,
    feature_kinds,
    revealed_scaling,
    standardised,
)
from simlab.survey.ledger import build_ledger, ledger_text, loss_warnings, zero_weights
from simlab.survey.schema import SurveyData
from simlab.tasks.task import Cells, Task, TaskStream


def survey_stream(df: pd.DataFrame, spec: SurveyData, seed: int, name: str = "survey",
                  census: pd.DataFrame | None = None) -> TaskStream:
    """Each (group, wave) cell -> a task with ``spec.support`` support and up to
    ``spec.query`` query respondents, drawn reproducibly from ``seed``; what a wave is follows
    ``spec.design``. Every respondent is counted in ``meta["ledger"]``; warnings (data lost,
    a 0/1 regression target, a suspiciously good fit) go to ``meta["warnings"]`` and are
    raised as :class:`SurveyWarning` by the scenario that loads the data. With ``census``
    margins (:func:`read_census`) every task carries its group's census cells (``Task.cells``),
    scaled like its respondents (:func:`revealed_scaling`: the first wave's statistics)."""
    df, rows, labels = prepared_rows(df, spec, seed)
    clean_df = df[rows.kept].reset_index(drop=True)
    enc = encode(clean_df, spec)
    check_leakage(clean_df, spec, enc.y)
    margins = {} if census is None else encode_census(census, clean_df, spec, enc)
    wave = rows.wave
    in_design = rows.kept & (wave >= 0)
    clean_pos = np.cumsum(rows.kept) - 1            # row of df -> row of clean_df / enc
    by_cell = pd.DataFrame({"wave": wave[in_design], "group": rows.group[in_design],
                            "row": clean_pos[in_design]}).groupby(["wave", "group"], sort=True)
    cells: dict[Any, np.ndarray] = {key: frame["row"].to_numpy() for key, frame in by_cell}
    seeds = np.random.SeedSequence(seed).spawn(len(cells))
    big = [key for key, idx in cells.items() if len(idx) >= spec.support + spec.min_query]
    first = min((w for w, _ in big), default=None)          # the stream's first wave
    scaling = revealed_scaling(np.concatenate(
        [enc.x[idx] for (w, _), idx in cells.items() if w == first]), enc.numeric
    ) if first is not None else None
    group_names = sorted(set(rows.group[rows.kept].tolist()))
    tasks: dict[int, list[Task]] = {w: [] for w in range(len(labels))}
    sizes: dict[tuple[int, str], int] = {}
    for child, ((w, group), idx) in zip(seeds, cells.items()):
        sizes[(w, group)] = len(idx)
        if len(idx) < spec.support + spec.min_query:
            continue
        tasks[w].append(cell_task(enc, spec, idx, np.random.default_rng(child),
                                  {"wave": w, "time": labels[w], "group": group,
                                   "group_id": group_names.index(group),
                                   "scenario": name, "seed": seed}, margins.get(group),
                                  scaling))
    kept = [w for w in range(len(labels)) if tasks[w]]
    if not kept:
        largest = max(sizes.values(), default=0)
        raise DataError(f"no (group, time) cell has support + min_query = "
                        f"{spec.support + spec.min_query} respondents (the largest has "
                        f"{largest}); lower data.support (or data.min_query)")
    for new, w in enumerate(kept):
        for task in tasks[w]:
            task.info["wave"] = new
    ledger = build_ledger(rows, sizes, labels, kept, spec)
    ledger["zero_weight"] = zero_weights(clean_df, spec)
    stream = TaskStream(waves=[tasks[w] for w in kept], shifts=[], meta={})
    loss = ledger["warnings"] = loss_warnings(ledger, spec)
    warns = loss + target_warnings(enc.y, spec) + column_warnings(clean_df, spec, enc.y)
    fit = support_fit_warning(stream)
    warns += [fit] if fit else []
    if spec.strict and loss:
        raise DataError("data.strict = true and the data lost too much:\n- "
                        + "\n- ".join(loss) + "\n" + ledger_text(ledger)
                        + "\nfix the data or the sizes, or run without strict")
    stream.meta.update({
        "scenario": name, "seed": seed, "family": "survey", "target": spec.target_kind,
        "n_classes": enc.n_classes, "feature_names": enc.names,
        "feature_kinds": feature_kinds(enc.x), "times": [labels[w] for w in kept],
        "wave_times": [labels[w] for w in kept], "design": spec.design,
        "groups": group_names, "wave_groups": [[t.info["group_id"] for t in tasks[w]]
                                               for w in kept],
        "skipped_cells": [f"{labels[w]}: {g} ({n})" for (w, g), n in sizes.items()
                          if n < spec.support + spec.min_query],
        "n_cells": len(cells), "rows": int(rows.kept.sum()), "ledger": ledger,
        "warnings": warns})
    return stream


def cell_task(enc: Encoded, spec: SurveyData, idx: np.ndarray, rng: np.random.Generator,
              info: dict, census: tuple[np.ndarray, np.ndarray] | None = None,
              scaling: Scaling | None = None) -> Task:
    """Shuffle one cell, split support/query, scale features with the stream's ``scaling``
    (:func:`revealed_scaling`; None: this cell's own rows, for a cell on its own) and the
    group's ``census`` cells ``(x, share)`` alike."""
    order = rng.permutation(idx)[: spec.support + spec.query]
    k = spec.support
    cells = None
    scaling = scaling or revealed_scaling(enc.x[order], enc.numeric)
    if census is None:
        x = standardised(enc.x[order], enc.numeric, scaling)
    else:
        x, cx = standardised(enc.x[order], enc.numeric, scaling, census[0])
        cells = Cells(cx, census[1], None, "census")
    y = enc.y[order]
    w = None
    if enc.w is not None:
        if not enc.w[order].sum() > 0:
            raise DataError(f"data.weights: every respondent drawn for group "
                            f"{info.get('group')!r} at time {info.get('time')!r} has weight 0; "
                            "such a task scores nothing: fix the weights or drop the group")
        w = (enc.w[order] / enc.w[order].mean()).astype(np.float32)
    return Task(x_support=x[:k], y_support=y[:k], x_query=x[k:], y_query=y[k:],
                target=spec.target_kind, n_classes=enc.n_classes,
                w_support=None if w is None else w[:k], w_query=None if w is None else w[k:],
                info=info, cells=cells)


__all__ = ["cell_task", "survey_stream"]
