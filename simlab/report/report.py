"""Comparison reports: one self-contained HTML file and a Markdown twin, from a results store.

Input frames (what the store returns):

* ``runs``: run_id, scenario, seed, learner, hyperparameters (JSON str), status, error, seconds
* ``metrics``: run_id + ``RECORD_COLUMNS`` (wave, shots, steps, metric, value)
* ``shifts``: scenario, seed + ``SHIFT_COLUMNS``

One section per scenario: summary and config, a leaderboard with 95% t intervals over seeds,
paired tests against the best baseline and against partial pooling with a verdict in words,
five figures, and the failed/diverged runs with their error. The HTML embeds its figures as
base64 PNG; the Markdown links PNG files written to ``out_dir/figures``.
"""
from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from simlab import __version__
from simlab.evaluation.metrics import SummaryOptions, cubes
from simlab.evaluation.result import RECORD_COLUMNS, SHIFT_COLUMNS
from simlab.evaluation.statistics import (BASELINES, ORACLE, REFERENCE, Comparison,
                                          compare_all, comparison_metric, leaderboard,
                                          overall_verdict, parse_hyperparameters, run_summaries,
                                          wave_scores)
from simlab.report.changepoints import changepoint_context
from simlab.report.figures import FIGURES, ScenarioData, assign_colors

RUN_COLUMNS = ["run_id", "scenario", "seed", "learner", "hyperparameters", "status", "error",
               "seconds"]
#: leaderboard columns shown: (summary name, header)
BOARD = (("mean_excess_loss", "excess loss"), ("mean_loss", "loss"), ("regret", "regret"),
         ("auc_steps", "AUC steps"), ("shots_to_target", "shots to target"),
         ("mean_recovery_waves", "recovery (waves)"), ("mean_accuracy", "accuracy"),
         ("mean_prevalence_error", "prevalence error"), ("adapt_seconds_total", "adapt s/run"),
         ("meta_fit_seconds_total", "meta-fit s/run"))


@dataclass
class Table:
    """A rendered table: header and rows of strings (the templates only lay them out)."""

    header: list[str]
    rows: list[list[str]]


@dataclass
class FigureOut:
    key: str
    caption: str
    file: str          # relative to out_dir (Markdown)
    data_uri: str      # base64 PNG (HTML)


def _check_frame(frame: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"build_report: the {name} frame lacks column(s) {missing}; it needs "
                         f"{list(columns)} (as returned by the results store)")


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, (float, np.floating)):
        return f"{x:.3g}"
    return str(x)


def _with_ci(row: pd.Series, col: str) -> str:
    m, lo, hi = row.get(col), row.get(f"{col}_lo"), row.get(f"{col}_hi")
    if m is None or pd.isna(m):
        return "–"
    if lo is None or pd.isna(lo):
        return _fmt(float(m))
    return f"{float(m):.3g} [{float(lo):.3g}, {float(hi):.3g}]"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "scenario"


def _leaderboard_table(board: pd.DataFrame) -> Table:
    cols = [(c, h) for c, h in BOARD if c in board.columns and board[c].notna().any()]
    header = ["learner", "runs (ok/diverged/failed)"] + [h for _, h in cols]
    rows = [[r["label"], f"{r['runs']} ({r['ok']}/{r['diverged']}/{r['failed']})"]
            + [_with_ci(r, c) for c, _ in cols] for _, r in board.iterrows()]
    return Table(header, rows)


def _comparison_table(comps: Sequence[Comparison]) -> Table:
    header = ["learner", "reference", "mean (learner)", "mean (reference)", "difference",
              "95% CI", "Wilcoxon p", "pairs (seeds)", "dropped", "outcome"]
    rows = [[c.learner, c.reference, _fmt(c.mean_learner), _fmt(c.mean_reference),
             _fmt(c.mean_diff), f"[{_fmt(c.ci_lo)}, {_fmt(c.ci_hi)}]", _fmt(c.p_value),
             f"{c.n_pairs} ({c.n_seeds})", str(c.n_dropped), c.outcome] for c in comps]
    return Table(header, rows)


def _shift_table(shifts: pd.DataFrame) -> Table:
    if shifts.empty:
        return Table(["wave", "tick", "kind", "name", "target", "size (mean over seeds)"], [])
    g = shifts.groupby(["wave", "tick", "kind", "name", "target"], sort=True)["size"].mean()
    return Table(["wave", "tick", "kind", "name", "target", "size (mean over seeds)"],
                 [[str(w), str(t), k, n, tg, _fmt(float(s))] for (w, t, k, n, tg), s in g.items()])


def _failed_table(runs: pd.DataFrame) -> Table:
    bad = runs[runs["status"] != "ok"]
    rows = [[str(r.run_id), str(r.seed), str(r.learner), str(r.status),
             " ".join(str(r.error if isinstance(r.error, str) else "").split())[:600] or "–"]
            for r in bad.itertuples(index=False)]
    return Table(["run", "seed", "learner", "status", "error"], rows)


def _grid(metrics: pd.DataFrame, column: str) -> list[int]:
    scored = metrics[metrics["metric"] == "loss"]
    return sorted(int(v) for v in scored[column].unique())


def _scenario_part(config: dict | None, scenario: str, all_names: set[str]) -> dict | None:
    """This scenario's config, when ``config`` is keyed by scenario names."""
    return config.get(scenario) if config and set(config) <= all_names else None


def _scenario_config(config: dict | None, scenario: str, all_names: set[str]) -> str | None:
    part = _scenario_part(config, scenario, all_names)
    return None if part is None else json.dumps(part, indent=2, default=str)


def _budget_fact(config: dict | None, scenario: str, all_names: set[str]
                 ) -> list[tuple[str, str]]:
    """The meta-fit budgets every learner got (warm-up and online), when the config is known."""
    ev = (_scenario_part(config, scenario, all_names) or {}).get("evaluation")
    if not isinstance(ev, dict) or not isinstance(ev.get("budget"), dict):
        return []

    def text(b: dict) -> str:
        cap = f", at most {b['seconds']:g} s" if b.get("seconds") else ""
        return f"{b['iterations']} iterations x {b['meta_batch']} tasks{cap}"

    online = text(ev["budget"]) + " after each scored wave" if ev.get("online", True) else "off"
    return [("meta-fit budget", f"warm-up {text(ev.get('warmup_budget') or ev['budget'])}; "
                                f"online {online}")]


def _learner_settings(runs: pd.DataFrame) -> Table:
    seen = runs.assign(hp=runs["hyperparameters"].fillna("{}")).drop_duplicates(["learner", "hp"])
    rows = [[str(r.learner), ", ".join(f"{k}={v}" for k, v in
                                       parse_hyperparameters(r.hp).items()) or "defaults"]
            for r in seen.itertuples(index=False)]
    return Table(["learner", "hyperparameters"], rows)


def _scenario_section(name: str, runs: pd.DataFrame, metrics: pd.DataFrame,
                      shifts: pd.DataFrame, out_dir: Path, config: dict | None,
                      all_names: set[str], options: SummaryOptions, n_boot: int
                      ) -> tuple[dict[str, Any], dict[str, Path]]:
    """Everything one scenario's section shows, and the figure files it wrote."""
    mets = metrics[metrics["run_id"].isin(runs["run_id"])]
    summaries = run_summaries(runs, mets, shifts, options)
    scored = summaries.dropna(axis=1, how="all")
    board = leaderboard(scored) if "mean_loss" in scored else pd.DataFrame()
    section: dict[str, Any] = {
        "name": name, "anchor": _slug(name),
        "facts": [("seeds", ", ".join(str(s) for s in sorted(runs["seed"].unique()))),
                  ("learners", ", ".join(sorted(runs["learner"].unique()))),
                  ("runs", f"{len(runs)} ({int((runs['status'] == 'ok').sum())} ok, "
                           f"{int((runs['status'] == 'diverged').sum())} diverged, "
                           f"{int((~runs['status'].isin(['ok', 'diverged'])).sum())} failed)"),
                  *_budget_fact(config, name, all_names)],
        "config": _scenario_config(config, name, all_names),
        "settings": _learner_settings(runs), "shifts": _shift_table(shifts),
        "failed": _failed_table(runs), "figures": [], "verdict": None,
        "comparisons": None, "verdicts": [], "leaderboard": None, "metric": None,
        "changepoints": changepoint_context(runs, mets, shifts)}
    files: dict[str, Path] = {}
    if mets.empty or board.empty:
        section["verdict"] = "No run of this scenario produced records; see the failed runs."
        return section, files
    metric = comparison_metric(mets)
    section["metric"] = metric.replace("_", " ")
    section["facts"] += [("scored waves", f"{int(mets['wave'][mets['metric'] == 'loss'].min())}"
                                          f"-{int(mets['wave'].max())}"),
                         ("shots grid", str(_grid(mets, "shots"))),
                         ("steps grid", str(_grid(mets, "steps"))),
                         ("compared on", metric.replace("_", " ") + " per seed x wave")]
    section["leaderboard"] = _leaderboard_table(board)
    scores = wave_scores(runs, mets, metric)
    comps = compare_all(scores, metric, n_boot=n_boot)
    section["verdict"] = overall_verdict(comps, scores)
    section["verdicts"] = [c.verdict for c in comps]
    section["comparisons"] = _comparison_table(comps)
    files.update(_figures(name, runs, mets, summaries, shifts, metric, out_dir, section))
    return section, files


def _figures(name: str, runs: pd.DataFrame, mets: pd.DataFrame, summaries: pd.DataFrame,
             shifts: pd.DataFrame, metric: str, out_dir: Path, section: dict[str, Any]
             ) -> dict[str, Path]:
    per_run = {rid: cubes(g) for rid, g in mets.groupby("run_id")}
    labelled = summaries.set_index("run_id")
    by_label: dict[str, dict[int, dict[str, Any]]] = {}
    for rid, cs in per_run.items():
        r = labelled.loc[rid]
        by_label.setdefault(str(r["label"]), {})[int(r["seed"])] = cs
    first_seed = shifts["seed"].min() if len(shifts) else None
    data = ScenarioData(name, by_label, summaries,
                        shifts[shifts["seed"] == first_seed] if first_seed is not None
                        else shifts, metric, assign_colors(list(by_label)),
                        dict(zip(summaries["label"], summaries["learner_name"])))
    files: dict[str, Path] = {}
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for stem, caption, draw in FIGURES:
        if stem == "recovery" and data.shifts.empty:
            section["figures"].append(FigureOut(stem, caption + ": no shifts in this scenario.",
                                                "", ""))
            continue
        png = draw(data)
        rel = f"figures/{_slug(name)}_{stem}.png"
        (out_dir / rel).write_bytes(png)
        files[f"{_slug(name)}/{stem}"] = out_dir / rel
        section["figures"].append(FigureOut(stem, caption, rel, "data:image/png;base64,"
                                            + base64.b64encode(png).decode("ascii")))
    return files


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("simlab.report", "templates"),
                      autoescape=select_autoescape(enabled_extensions=("html.j2",),
                                                   default_for_string=False),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["md"] = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    return env


def build_report(runs: pd.DataFrame, metrics: pd.DataFrame, shifts: pd.DataFrame,
                 out_dir: Path, title: str, config: dict | None = None, *,
                 options: SummaryOptions | None = None, n_boot: int = 2000) -> dict[str, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` (+ ``figures/*.png``) into
    ``out_dir``; returns their paths under "html" and "markdown" and each figure's path under
    "<scenario>/<figure>".

    ``config``: shown verbatim (JSON); a dict keyed by scenario names is split per section.
    ``options``: the summary knobs (recovery tolerance, target loss); ``n_boot``: bootstrap
    replicates of the paired tests.
    """
    _check_frame(runs, "runs", RUN_COLUMNS)
    _check_frame(metrics, "metrics", ["run_id"] + RECORD_COLUMNS)
    _check_frame(shifts, "shifts", ["scenario", "seed"] + SHIFT_COLUMNS)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    opt = options or SummaryOptions()
    names = list(dict.fromkeys(runs["scenario"]))
    sections, paths = [], {}
    for name in names:
        sec, files = _scenario_section(name, runs[runs["scenario"] == name], metrics,
                                       shifts[shifts["scenario"] == name], out_dir, config,
                                       set(names), opt, n_boot)
        sections.append(sec)
        paths.update(files)
    shared = config if config and not set(config) <= set(names) else None
    ctx = {"title": title, "version": __version__, "sections": sections,
           "config": json.dumps(shared, indent=2, default=str) if shared else None,
           "baselines": ", ".join(BASELINES), "oracle": ORACLE, "reference": REFERENCE,
           "options": opt}
    env = _environment()
    html = out_dir / "report.html"
    md = out_dir / "report.md"
    html.write_text(env.get_template("report.html.j2").render(ctx), encoding="utf-8")
    md.write_text(env.get_template("report.md.j2").render(ctx), encoding="utf-8")
    return {"html": html, "markdown": md, **paths}
