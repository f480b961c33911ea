"""The data ledger: where every respondent went, per wave with its survey time.

Rows read -> dropped for a missing target / feature / group, held out by the design, in cells
too small for a task or for a scored query set, drawn into tasks, left over. A large loss is a
warning (an error under ``data.strict``). :func:`ledger_table` is the one table both the text
(``simlab stream`` / ``simlab run``) and the report (``simlab.report.ledger``) show.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from simlab.survey.design import RowFlags
from simlab.survey.schema import SurveyData

#: the ledger's counts, in column order, and their heads in the tables
LEDGER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("read", "rows read"), ("missing_target", "missing target"),
    ("missing_features", "missing features"), ("missing_other", "missing group/weight"),
    ("held_out", "other waves (design)"), ("small_cells", "cells < K+1"),
    ("small_rows", "their rows"), ("few_query_cells", "cells, query < min"),
    ("few_query_rows", "their rows"), ("tasks", "tasks"), ("used", "respondents used"),
    ("surplus", "beyond K+Q"), ("lost", "lost"))


def build_ledger(rows: RowFlags, sizes: dict[tuple[int, str], int], labels: list[Any],
                 kept: list[int], spec: SurveyData) -> dict[str, Any]:
    """Rows read -> respondents used, per wave (by survey time): every row is in exactly one
    of missing target / features / other, held out by the design, in a cell too small for
    support + 1 or for support + min_query, drawn into a task, or beyond support + query.
    ``lost`` = dropped + in skipped cells (held-out and surplus rows are by design)."""
    n_waves = len(labels)
    # rows are counted in their design wave; held-out rows (new_groups) in their time's wave
    where = np.where(rows.wave >= 0, rows.wave, rows.time if spec.design != "replicates"
                     else -1)
    held = rows.kept & (rows.wave < 0) & (where >= 0)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(where[mask & (where >= 0)], minlength=n_waves)[:n_waves]

    read = count(np.ones(len(where), bool))
    per = {"read": read, "missing_target": count(rows.no_target),
           "missing_features": count(rows.no_features), "missing_other": count(rows.no_other),
           "held_out": count(held)}
    need, full = spec.support + spec.min_query, spec.support + spec.query
    for key in ("small_cells", "small_rows", "few_query_cells", "few_query_rows", "tasks",
                "used", "surplus"):
        per[key] = np.zeros(n_waves, dtype=np.int64)
    for (w, _), n in sizes.items():
        if n < spec.support + 1:
            per["small_cells"][w] += 1
            per["small_rows"][w] += n
        elif n < need:
            per["few_query_cells"][w] += 1
            per["few_query_rows"][w] += n
        else:
            per["tasks"][w] += 1
            per["used"][w] += min(n, full)
            per["surplus"][w] += max(0, n - full)
    per["lost"] = (per["missing_target"] + per["missing_features"] + per["missing_other"]
                   + per["small_rows"] + per["few_query_rows"])
    waves = [{"time": labels[w], "wave": kept.index(w) if w in kept else None,
              **{k: int(v[w]) for k, v in per.items()}} for w in range(n_waves)]
    unplaced = int((where < 0).sum())           # no time value (or unassigned replicate)
    total = {k: int(v.sum()) for k, v in per.items()}
    total["read"] += unplaced
    total["missing_other"] += int((rows.no_other & (where < 0)).sum())
    total["lost"] += int((rows.no_other & (where < 0)).sum())
    in_scope = total["read"] - total["held_out"]
    return {"design": spec.design, "support": spec.support, "query": spec.query,
            "min_query": spec.min_query, "max_lost": spec.max_lost, "waves": waves,
            "no_time": unplaced, "total": total,
            "lost_share": total["lost"] / in_scope if in_scope else 0.0,
            "lost_waves": [row["time"] for row in waves if row["wave"] is None]}


def loss_warnings(ledger: dict[str, Any], spec: SurveyData) -> list[str]:
    """Warnings for a loss above ``max_lost`` of the respondents, or any whole wave lost."""
    out, tot = [], ledger["total"]
    if ledger["lost_share"] > spec.max_lost:
        out.append(f"{ledger['lost_share']:.1%} of the respondents are lost ({tot['lost']} of "
                   f"{tot['read'] - tot['held_out']}: {tot['missing_target']} missing the "
                   f"target, {tot['missing_features']} a feature, {tot['missing_other']} a "
                   f"group/time/weight, {tot['small_rows'] + tot['few_query_rows']} in cells "
                   f"too small), above data.max_lost = {spec.max_lost:.0%}")
    if ledger["lost_waves"]:
        out.append(f"whole wave(s) lost: survey time(s) {', '.join(map(str, ledger['lost_waves']))}"
                   f" have no cell with support + min_query = {spec.support + spec.min_query} "
                   "usable respondents, so the stream skips them (lower data.support, or "
                   "check the target's missing values)")
    return out


def ledger_table(ledger: dict[str, Any], time_head: str = "time"
                 ) -> tuple[list[str], list[list[str]]]:
    """The ledger's header and rows as text: a row per wave (its survey time, its stream wave
    or "lost") and a total row; columns ``read``, ``tasks``, ``used``, ``lost`` and every
    other count that is not zero in total. What both the text and the report show."""
    keys = [k for k, _ in LEDGER_COLUMNS]
    shown = [k for k in keys if k in ("read", "tasks", "used", "lost")
             or ledger["total"].get(k, 0)]
    heads = [time_head, "wave"] + [dict(LEDGER_COLUMNS)[k] for k in shown]
    body = [[str(r["time"]), "lost" if r["wave"] is None else str(r["wave"])]
            + [str(r[k]) for k in shown] for r in ledger["waves"]]
    body.append(["total", ""] + [str(ledger["total"][k]) for k in shown])
    return heads, body


def ledger_text(ledger: dict[str, Any]) -> str:
    """The ledger as a plain-text table (``simlab stream`` / ``simlab run`` print it)."""
    heads, body = ledger_table(ledger)
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(heads)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    lines = [(f"data ledger (design {ledger['design']}, K={ledger['support']}, "
              f"Q<={ledger['query']}, min query {ledger['min_query']}): "
              f"{ledger['lost_share']:.1%} of respondents lost"),
             fmt.format(*heads), *(fmt.format(*row) for row in body)]
    if ledger.get("no_time"):
        lines.append(f"{ledger['no_time']} row(s) without a time value are in the total only")
    if ledger.get("zero_weight"):
        lines.append(f"{ledger['zero_weight']} respondent(s) have weight 0: kept, but they count "
                     "in no loss or prevalence")
    return "\n".join(lines)


def zero_weights(df: pd.DataFrame, spec: SurveyData) -> int:
    """How many of ``df``'s respondents have weight 0 (they count in no loss or share)."""
    return 0 if spec.weights is None else int((df[spec.weights] == 0).sum())


__all__ = ["LEDGER_COLUMNS", "build_ledger", "ledger_table", "ledger_text", "loss_warnings",
           "zero_weights"]
