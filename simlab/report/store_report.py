"""The comparison report of a results store: reads the store's frames, builds the report.

Lives in the report layer (it reads the experiment layer's store), so ``experiment/`` never
imports ``report/``.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from simlab.errors import StoreError
from simlab.evaluation.metrics import SummaryOptions
from simlab.experiment.store import Store
from simlab.report.report import build_report, scenario_verdict


def report_from_store(store: Store | str | Path, out_dir: str | Path,
                      scenario: str | Sequence[str] | None = None,
                      title: str | None = None, *, figures: bool = True) -> dict[str, Path]:
    """Build the comparison report of the store's latest comparison of each scenario (or of
    ``scenario``: one name or several) into ``out_dir``; returns the written files
    (``figures`` False: text and tables only)."""
    if isinstance(store, Store):
        frames = store.frames(scenario)
    else:
        with Store(store, create=False) as db:
            frames = db.frames(scenario)
    if frames["runs"].empty:
        where = store.path if isinstance(store, Store) else store
        raise StoreError(f"results store {where} has no runs; run `simlab run SCENARIO "
                         f"--db {where}` first")
    configs = {row.scenario: json.loads(row.config) for row in frames["configs"].itertuples()}
    tolerances = {c.get("evaluation", {}).get("recovery_tolerance") for c in configs.values()}
    tol = tolerances.pop() if len(tolerances) == 1 else None
    options = SummaryOptions(rel_tol=tol) if isinstance(tol, (int, float)) else None
    names = list(dict.fromkeys(frames["runs"]["scenario"]))
    return build_report(frames["runs"], frames["metrics"], frames["shifts"], Path(out_dir),
                        title or f"simlab: {', '.join(names)}", configs, options=options,
                        figures=figures, summaries=frames["summaries"])


def verdicts_from_store(store: Store | str | Path,
                        scenario: str | Sequence[str] | None = None) -> dict[str, str]:
    """Each scenario's verdict paragraph (its latest comparison), as the report words it."""
    if isinstance(store, Store):
        frames = store.frames(scenario)
    else:
        with Store(store, create=False) as db:
            frames = db.frames(scenario)
    configs = {row.scenario: json.loads(row.config) for row in frames["configs"].itertuples()}
    return {name: scenario_verdict(name, frames["runs"], frames["metrics"], configs)
            for name in dict.fromkeys(frames["runs"]["scenario"])}


__all__ = ["report_from_store", "verdicts_from_store"]
