"""The comparison report of a results store: reads the store's frames, builds the report.

Lives in the report layer (it reads the experiment layer's store), so ``experiment/`` never
imports ``report/``.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from simlab.errors import StoreError
from simlab.evaluation.metrics import SummaryOptions
from simlab.experiment.store import Store
from simlab.report.report import build_report, scenario_comparisons, scenario_verdict


def report_from_store(store: Store | str | Path, out_dir: str | Path,
                      scenario: str | Sequence[str] | None = None,
                      title: str | None = None, *, figures: bool = True) -> dict[str, Path]:
    """Build the comparison report of the store's latest comparison of each scenario (or of
    ``scenario``: one name or several) into ``out_dir``; returns the written files
    (``figures`` False: text and tables only)."""
    if isinstance(store, Store):
        frames = store.frames(scenario)
        prevalence = store.prevalence(frames["runs"]) if figures else None
    else:
        with Store(store, create=False) as db:
            frames = db.frames(scenario)
            prevalence = db.prevalence(frames["runs"]) if figures else None
    if frames["runs"].empty:
        where = store.path if isinstance(store, Store) else store
        raise StoreError(f"results store {where} has no runs; run `simlab run SCENARIO "
                         f"--db {where}` first")
    configs = {name: json.loads(text) for name, text in
               zip(frames["configs"]["scenario"], frames["configs"]["config"])}
    tolerances = {c.get("evaluation", {}).get("recovery_tolerance") for c in configs.values()}
    tol = tolerances.pop() if len(tolerances) == 1 else None
    options = SummaryOptions(rel_tol=tol) if isinstance(tol, (int, float)) else None
    names = list(dict.fromkeys(frames["runs"]["scenario"]))
    return build_report(frames["runs"], frames["metrics"], frames["shifts"], Path(out_dir),
                        title or f"simlab: {', '.join(names)}", configs, options=options,
                        figures=figures, summaries=frames["summaries"], prevalence=prevalence)


def _frames(store: Store | str | Path, scenario: str | Sequence[str] | None) -> dict:
    if isinstance(store, Store):
        return store.frames(scenario)
    with Store(store, create=False) as db:
        return db.frames(scenario)


def compare(store: Store | str | Path, scenario: str | Sequence[str] | None = None
            ) -> pd.DataFrame:
    """The report's paired verdicts as data, one row per comparison (for a notebook):
    scenario, metric (the comparison metric and ``prevalence_error``), test ("seed" or the
    survey's "survey"), learner, reference, mean difference with its 95% interval, p-values
    (raw and Holm-adjusted), seeds, outcome and the verdict sentence."""
    frames = _frames(store, scenario)
    configs = {name: json.loads(text) for name, text in
               zip(frames["configs"]["scenario"], frames["configs"]["config"])}
    rows = [c.as_dict() for name in dict.fromkeys(frames["runs"]["scenario"])
            for c in scenario_comparisons(name, frames["runs"], frames["metrics"], configs)]
    first = ["scenario", "metric", "test", "learner", "reference", "mean_diff", "ci_lo", "ci_hi",
             "p_value", "p_adjusted", "n_seeds", "outcome", "verdict"]
    frame = pd.DataFrame(rows)
    return frame[first + [c for c in frame.columns if c not in first]] if rows else \
        pd.DataFrame(columns=first)


def verdicts_from_store(store: Store | str | Path,
                        scenario: str | Sequence[str] | None = None) -> dict[str, str]:
    """Each scenario's verdict paragraph (its latest comparison), as the report words it."""
    frames = _frames(store, scenario)
    configs = {name: json.loads(text) for name, text in
               zip(frames["configs"]["scenario"], frames["configs"]["config"])}
    return {name: scenario_verdict(name, frames["runs"], frames["metrics"], configs)
            for name in dict.fromkeys(frames["runs"]["scenario"])}


__all__ = ["compare", "report_from_store", "verdicts_from_store"]
