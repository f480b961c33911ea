"""Comparison reports: one self-contained HTML file and a Markdown twin, from a results store.

Input frames (what the store returns):

* ``runs``: run_id, scenario, seed, learner, hyperparameters (JSON str), status, error, seconds
  (optional ``wave_times``: the JSON list of each wave's time value, e.g. survey years)
* ``metrics``: run_id + ``RECORD_COLUMNS`` (wave, shots, steps, metric, value)
* ``shifts``: scenario, seed + ``SHIFT_COLUMNS``

One section per scenario, in this order (the templates' ``SECTION`` comments mark each, so a
partial template of another area is one ``{% include %}`` line): the verdict paragraph (overall
and per shift, in words), facts, a compact leaderboard (the rest in a details table), the paired
tests, recovery per shift, figures, learners, shifts, failed runs. A context function in
:data:`CONTEXT_HOOKS` adds its own keys to every section. The HTML embeds its figures as base64
PNG; the Markdown links PNG files written to ``out_dir/figures``. Every number goes through one
formatter (:func:`simlab.evaluation.verdicts.fmt`).
"""
from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from simlab import __version__
from simlab.errors import StoreError
from simlab.evaluation.metrics import Cube, SummaryOptions, metric_unit, run_cubes
from simlab.evaluation.result import RECORD_COLUMNS, SHIFT_COLUMNS
from simlab.evaluation.comparisons import baseline_comparisons, compare_all, naive_comparisons
from simlab.evaluation.frames import (comparison_metric, label_names, labelled_runs, leaderboard,
                                      parse_hyperparameters, registry_names, roles_by_label,
                                      run_roles, run_summaries, wave_scores)
from simlab.evaluation.inference import MIN_SEEDS, survey_ratio
from simlab.evaluation.recovery import recovery_by_shift, recovery_overall, shift_effects
from simlab.evaluation.verdicts import (TEST_TEXT, Comparison, fmt, fmt_p, naive_flags,
                                        naive_sentence, overall_verdict)
from simlab.learners.roles import (BUILTIN_ROLES, ORACLE, REFERENCE, baseline_names,
                                   is_baseline, is_oracle)
from simlab.report.changepoints import changepoint_context
from simlab.report.figures import FIGURES, ScenarioData, assign_colors, slug, training_logs
from simlab.report.pretrain import add_pretrain_verdicts, pretrain_section
from simlab.report.tuning import tuning_section
from simlab.report.society_figures import society_section

RUN_COLUMNS = ["run_id", "scenario", "seed", "learner", "hyperparameters", "status", "error",
               "seconds"]
#: the details table's columns: (summary name, header); the compact leaderboard shows the
#: comparison metric, the difference from the reference, recovery and compute only
BOARD = (("mean_excess_loss", "excess loss"), ("mean_loss", "loss"), ("regret", "regret"),
         ("auc_steps", "AUC steps"), ("shots_to_target", "shots to target"),
         ("mean_accuracy", "accuracy"), ("mean_prevalence_error", "prevalence error"),
         ("adapt_seconds_total", "adapt s/run"), ("meta_fit_seconds_total", "meta-fit s/run"))
#: functions ``(inputs: SectionInputs) -> dict`` whose keys are added to every scenario
#: section (another area's partial template reads them); append, do not reorder
CONTEXT_HOOKS: list[Callable[[SectionInputs], dict[str, Any]]] = []


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


@dataclass
class SectionInputs:
    """What a context hook gets: one scenario's frames and the summaries computed from them."""

    name: str
    runs: pd.DataFrame
    metrics: pd.DataFrame
    shifts: pd.DataFrame
    summaries: pd.DataFrame
    config: dict | None
    options: SummaryOptions


def check_frame(frame: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise StoreError(f"build_report: the {name} frame lacks column(s) {missing}; it needs "
                         f"{list(columns)} (as returned by the results store)")


def _fmt(x: Any) -> str:
    """The report's one number format (see :func:`verdicts.fmt`)."""
    return fmt(x)


def with_ci(row: pd.Series, col: str) -> str:
    m, lo, hi = row.get(col), row.get(f"{col}_lo"), row.get(f"{col}_hi")
    if m is None or pd.isna(m):
        return "–"
    if lo is None or hi is None or pd.isna(lo):
        return fmt(float(m))
    return f"{fmt(float(m))} [{fmt(float(lo))}, {fmt(float(hi))}]"


def _runs_cell(r: pd.Series) -> str:
    bad = [f"{r[k]} {k}" for k in ("diverged", "failed") if r[k]]
    return f"{r['ok']}/{r['runs']}" + (f" ({', '.join(bad)})" if bad else "")


def leaderboard_table(board: pd.DataFrame) -> Table:
    """Every run-level summary with its interval (the details table)."""
    cols = [(c, h) for c, h in BOARD if c in board.columns and board[c].notna().any()]
    units = [metric_unit(c.removeprefix("mean_"), _classification(board), short=True)
             for c, _ in cols]
    header = ["learner", "runs ok"] + [f"{h} ({u})" if u else h for (_, h), u in zip(cols, units)]
    rows = [[r["label"], _runs_cell(r)] + [with_ci(r, c) for c, _ in cols]
            for _, r in board.iterrows()]
    return Table(header, rows)


def _classification(board: pd.DataFrame) -> bool:
    """Whether the board's target is classification (accuracy recorded): losses in nats."""
    return "mean_accuracy" in board and bool(board["mean_accuracy"].notna().any())


def _recovery_cell(r: pd.Series | None) -> str:
    """"k/n seeds, median m" with censoring stated ("not within N")."""
    if r is None or not r["seeds"]:
        return "–"
    med = (f"median not within {r['horizon']}" if r["median_censored"]
           else f"median {fmt(r['median'])}")
    return f"{r['recovered']}/{r['seeds']}, {med}"


def _compact_board(board: pd.DataFrame, comps: Sequence[Comparison], metric: str,
                   overall: pd.DataFrame, flags: dict[str, list[str]] | None = None) -> Table:
    """Few columns: the comparison metric, the difference from partial pooling (or the best
    baseline) with its outcome, recovery over the shifts that count, compute, and where the
    ``floor`` reference ran (a positive control), each learner's distance above it."""
    col = f"mean_{metric}"
    floor = (board.loc[board["learner"] == "floor", col] if "learner" in board
             else pd.Series(dtype=float))
    floor_mean = float(floor.iloc[0]) if len(floor) == 1 else None
    ref = next((c.reference for c in comps if c.reference_name == REFERENCE),
               comps[0].reference if comps else None)
    vs = {c.learner: c for c in comps if c.reference == ref}
    rec = {r["label"]: r for _, r in overall.iterrows()} if len(overall) else {}
    unit = metric_unit(metric, _classification(board), short=True)
    header = ["learner", f"{metric.replace('_', ' ')}{f' ({unit})' if unit else ''} [95% CI]",
              f"vs {ref} [95% CI]" if ref else "vs reference", "verdict"]
    if rec:
        header.append("recovered (waves)")
    if floor_mean is not None:
        header.append("above floor")
    header += ["s/run", "runs ok"]
    rows = []
    for _, r in board.iterrows():
        c = vs.get(r["label"])
        diff = ("–" if c is None or not math.isfinite(c.mean_diff) else
                fmt(c.mean_diff) + (f" [{fmt(c.ci_lo)}, {fmt(c.ci_hi)}]"
                                    if math.isfinite(c.ci_lo) else ""))
        outcome = "reference" if r["label"] == ref else (c.outcome if c else "–")
        if flags and flags.get(r["label"]):        # worse than a naive baseline
            outcome = "; ".join([outcome, *flags[r["label"]]]) if outcome != "–" else \
                "; ".join(flags[r["label"]])
        secs = sum(float(r.get(k) or 0.0) for k in ("adapt_seconds_total",
                                                    "meta_fit_seconds_total")
                   if pd.notna(r.get(k)))
        row = [r["label"], with_ci(r, col), diff, outcome]
        if rec:
            row.append(_recovery_cell(rec.get(r["label"])))
        if floor_mean is not None:
            row.append(fmt(float(r[col]) - floor_mean) if pd.notna(r[col]) else "–")
        rows.append(row + [fmt(secs), _runs_cell(r)])
    return Table(header, rows)


def _comparison_table(comps: Sequence[Comparison]) -> Table:
    header = ["learner", "reference", "difference", "95% CI", "detectable (80%)", "p (Holm)",
              "seeds", "outcome"]
    rows = [[c.learner, c.reference, fmt(c.mean_diff), f"[{fmt(c.ci_lo)}, {fmt(c.ci_hi)}]",
             fmt(c.mdd), f"{fmt_p(c.p_value)} ({fmt_p(c.p_adjusted)})", str(c.n_seeds),
             c.outcome] for c in comps]
    return Table(header, rows)


def wave_labels(runs: pd.DataFrame) -> dict[int, str]:
    """wave index -> its time value (survey year) from the runs' ``wave_times`` column (JSON
    list, recorded by the protocol from the stream's ``meta["times"]``); {} when absent."""
    if "wave_times" not in runs:
        return {}
    for text in runs["wave_times"].dropna():
        try:
            times = json.loads(text) if isinstance(text, str) else list(text)
        except (TypeError, ValueError):
            continue
        if times:
            return {i: str(t) for i, t in enumerate(times)}
    return {}


def _wave_name(w: int, labels: dict[int, str]) -> str:
    return f"{labels[w]} (wave {w})" if w in labels else f"wave {w}"


def _shift_table(shifts: pd.DataFrame, labels: dict[int, str] | None = None) -> Table:
    header = ["#", "wave", "tick", "kind", "name", "target", "size (mean over seeds)"]
    if shifts.empty:
        return Table(header, [])
    labels = labels or {}
    first = shifts[shifts["seed"] == shifts["seed"].min()].reset_index(drop=True)
    size = shifts.groupby(["wave", "name"], sort=False)["size"].mean()
    rows = [[str(i), _wave_name(int(r.wave), labels), str(r.tick), r.kind, r.name, r.target,
             fmt(float(size.get((r.wave, r.name), math.nan)))]
            for i, r in enumerate(first.itertuples(index=False))]
    return Table(header, rows)


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


#: what a run's ``log["prevalence"]`` (the protocol's poststratification source) means
PREVALENCE_TEXT = {
    "population": "poststratified (MRP) to each group's simulated population cells; error "
                  "against the group's true prevalence",
    "census": "poststratified (MRP) to the census margins in [data.census]; error against the "
              "query respondents' mean (the truth is unknown)",
    "sample": "the mean prediction over the query respondents (no population cells or census "
              "margins); error against their mean response"}


def _prevalence_fact(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """How group prevalence was estimated (the runs' ``prevalence`` log), naming the learners
    when they differ; the oracle, never poststratified, is set apart."""
    if "prevalence" not in runs or runs["prevalence"].isna().all():
        return []
    logged = runs.dropna(subset=["prevalence"])
    oracle = logged["learner"] == "oracle"
    kinds = logged[~oracle].groupby("prevalence")["learner"].unique()
    if kinds.empty:
        kinds = logged.groupby("prevalence")["learner"].unique()
    if len(kinds) == 1:
        text = PREVALENCE_TEXT.get(kinds.index[0], kinds.index[0])
    else:
        text = "; ".join(f"{', '.join(sorted(who))}: {PREVALENCE_TEXT.get(str(k), str(k))}"
                         for k, who in kinds.items())
    if oracle.any() and set(kinds.index) != {"sample"}:
        text += " (the oracle is not poststratified: it is scored on the query sample)"
    return [("prevalence", text)]


def _budget_fact(config: dict | None, scenario: str, all_names: set[str]
                 ) -> list[tuple[str, str]]:
    """The meta-fit budgets every learner got (warm-up and online), when the config is known."""
    ev = (_scenario_part(config, scenario, all_names) or {}).get("evaluation")
    if not isinstance(ev, dict) or not isinstance(ev.get("budget"), dict):
        return []

    def text(b: dict) -> str:
        cap = f", at most {b['seconds']:g} s" if b.get("seconds") else ""
        if b.get("mode") == "early_stop":
            return (f"early stopping on the last warm-up wave (evaluated every "
                    f"{b.get('eval_every')} iterations, patience {b.get('patience')}), at most "
                    f"{b['iterations']} iterations x {b['meta_batch']} tasks{cap}")
        if b.get("mode") == "seconds":
            return f"{b['seconds']:g} s x {b['meta_batch']} tasks"
        return f"{b['iterations']} iterations x {b['meta_batch']} tasks{cap}"

    online = (text(ev["budget"]) + " on every revealed task after each scored wave"
              if ev.get("online", True) else "off")
    return [("meta-fit budget", f"warm-up {text(ev.get('warmup_budget') or ev['budget'])}; "
                                f"online {online}")]


def _learner_settings(runs: pd.DataFrame) -> Table:
    seen = runs.assign(hp=runs["hyperparameters"].fillna("{}")).drop_duplicates(["learner", "hp"])
    rows = [[str(r.learner), ", ".join(f"{k}={v}" for k, v in
                                       parse_hyperparameters(str(r.hp)).items()) or "defaults"]
            for r in seen.itertuples(index=False)]
    return Table(["learner", "hyperparameters"], rows)


def _failed_learners(runs: pd.DataFrame) -> list[str]:
    """Labels and registry names of learners none of whose runs produced records."""
    lab = labelled_runs(runs)
    ok = lab.groupby("label")["status"].apply(lambda s: s.isin(["ok", "diverged"]).any())
    dead = set(ok.index[~ok])
    return sorted(dead | set(lab.loc[lab["label"].isin(dead), "learner_name"]))


# --------------------------------------------------------------------------- recovery per shift

def _shift_name(shifts: pd.DataFrame, i: int, labels: dict[int, str]) -> str:
    first = shifts[shifts["seed"] == shifts["seed"].min()].reset_index(drop=True)
    if i >= len(first):
        return f"shift #{i}"
    r = first.iloc[i]
    return f"shift #{i} ({r['name']}, {r['kind']}) at {_wave_name(int(r['wave']), labels)}"


def _shift_sentence(name: str, effect: pd.Series, rows: pd.DataFrame) -> str:
    """One shift's result in words: who recovered on how many seeds, who did not."""
    if not effect["scored"]:
        return f"{name} hit during the warm-up, before any wave was scored: no recovery to measure."
    if effect["negligible"]:
        return (f"{name} barely moved anything (ceiling loss changed by "
                f"{fmt(effect['ceiling_change'])}, median excess-loss jump "
                f"{fmt(effect['excess_jump'])}, both within the recovery line "
                f"{fmt(effect['line'])}): marked negligible and left out of the recovery "
                "summary.")
    rows = rows[rows["seeds"] > 0]
    allrec = rows[rows["censored"] == 0]
    some = rows[(rows["censored"] > 0) & (rows["recovered"] > 0)]
    none = rows[rows["recovered"] == 0]
    parts = []
    if len(allrec):
        fastest = allrec.sort_values("median", kind="stable")
        parts.append("recovered on every seed: " + ", ".join(
            f"{r.label} (median {fmt(r.median)} waves)" for r in fastest.itertuples()))
    if len(some):
        parts.append("recovered on some seeds: " + ", ".join(
            f"{r.label} ({r.recovered}/{r.seeds})" for r in some.itertuples()))
    if len(none):
        parts.append("did not recover within the horizon on any seed: " + ", ".join(
            f"{r.label} (not within {r.horizon} waves)" for r in none.itertuples()))
    jump = ("" if not math.isfinite(effect["excess_jump"]) else
            f" (median excess-loss jump {fmt(effect['excess_jump'])})")
    return f"After {name}{jump}: " + "; ".join(parts) + "." if parts else f"{name}: no data."


def _recovery_tables(by_shift: pd.DataFrame, shifts: pd.DataFrame, effects: pd.DataFrame,
                     labels: dict[int, str], has_oracle: bool) -> list[dict[str, Any]]:
    """One table per shift: recovered / censored counts, censored median, restricted mean."""
    out = []
    header = ["learner", "recovered", "not recovered (censored)", "median waves",
              "restricted mean (waves)"] + (["peak excess"] if has_oracle else [])
    e: Any          # rows of data frames: pandas-stubs types each field as any scalar
    r: Any
    for e in effects.itertuples(index=False):
        rows = by_shift[by_shift["shift"] == e.shift]
        body = []
        for r in rows[rows["seeds"] > 0].itertuples(index=False):
            med = (f"not within {r.horizon}" if r.median_censored else fmt(r.median))
            rmean = ("–" if not math.isfinite(r.restricted_mean) else
                     ("≥ " if r.restricted_censored else "") + fmt(r.restricted_mean))
            body.append([r.label, f"{r.recovered}/{r.seeds}",
                         f"{r.censored} (within {r.horizon} waves)" if r.censored else "0",
                         med, rmean] + ([fmt(r.peak_excess)] if has_oracle else []))
        tag = (" — negligible, not in the summary" if e.negligible else
               " — warm-up, not scored" if not e.scored else "")
        out.append({"title": _shift_name(shifts, int(e.shift), labels) + tag,
                    "table": Table(header, body)})
    return out


# --------------------------------------------------------------------------- one scenario

def _scenario_section(name: str, runs: pd.DataFrame, metrics: pd.DataFrame,
                      shifts: pd.DataFrame, out_dir: Path, config: dict | None,
                      all_names: set[str], options: SummaryOptions, draw: bool = True,
                      stored: pd.DataFrame | None = None,
                      prevalence: pd.DataFrame | None = None
                      ) -> tuple[dict[str, Any], dict[str, Path]]:
    """Everything one scenario's section shows, and the figure files it wrote."""
    mets = metrics[metrics["run_id"].isin(runs["run_id"])]
    summaries = run_summaries(runs, mets, shifts, options, stored)
    scored = summaries.dropna(axis=1, how="all")
    board = leaderboard(scored) if "mean_loss" in scored else pd.DataFrame()
    labels = wave_labels(runs)
    has_oracle = bool((mets["metric"] == "excess_loss").any())
    section: dict[str, Any] = {
        "name": name, "anchor": slug(name), "has_oracle": has_oracle,
        "facts": [("seeds", ", ".join(str(s) for s in sorted(runs["seed"].unique()))),
                  ("learners", ", ".join(sorted(runs["learner"].unique()))),
                  ("runs", f"{len(runs)} ({int((runs['status'] == 'ok').sum())} ok, "
                           f"{int((runs['status'] == 'diverged').sum())} diverged, "
                           f"{int((~runs['status'].isin(['ok', 'diverged'])).sum())} failed)"),
                  *_budget_fact(config, name, all_names), *_prevalence_fact(runs),
                  *code_fact(runs)],
        "config": _scenario_config(config, name, all_names),
        "settings": _learner_settings(runs), "shifts": _shift_table(shifts, labels),
        "failed": _failed_table(runs), "figures": [], "verdict": None, "shift_verdicts": [],
        "comparisons": None, "verdicts": [], "leaderboard": None, "details": None,
        "recovery": [], "metric": None, "tuning": tuning_section(runs), "prevalence": None,
        "pretrain": pretrain_section(runs),                  # templates/_pretrain.*.j2
        "society": society_section(name, runs, out_dir),     # templates/_society.*.j2
        "changepoints": changepoint_context(runs, mets, shifts)}
    inputs = SectionInputs(name, runs, mets, shifts, summaries, config, options)
    for hook in CONTEXT_HOOKS:
        section.update(hook(inputs))
    files: dict[str, Path] = {}
    if mets.empty or board.empty:
        section["verdict"] = ("No verdict: no run of this scenario produced records; see the "
                              "failed runs.")
        return section, files
    metric = comparison_metric(mets)
    section["metric"] = metric.replace("_", " ")
    ratio = _survey_ratio(config, name, all_names, has_oracle)
    if ratio is not None:            # a survey: intervals widened as its test widens them
        board = leaderboard(scored, ratio=ratio)
    waves = sorted(int(w) for w in mets.loc[mets["metric"] == "loss", "wave"].unique())
    classification = bool(mets["metric"].eq("accuracy").any())    # losses in nats
    section["facts"] += [("scored waves", f"{_wave_name(waves[0], labels)} to "
                                          f"{_wave_name(waves[-1], labels)}"),
                         ("shots grid", str(_grid(mets, "shots"))),
                         ("steps grid", str(_grid(mets, "steps"))),
                         ("compared on", metric.replace("_", " ") + " ("
                          + metric_unit(metric, classification) + "): "
                          "per-seed means, "
                                         + _test_fact(ratio))]
    # one scatter of the records into per-run cubes, shared by the paired tests and figures
    per_run = run_cubes(mets, ["loss", metric, "scored_steps"])
    v = _verdicts(runs, mets, metric, ratio, per_run)
    comps = v.comps
    effects = shift_effects(summaries)
    by_shift = recovery_by_shift(summaries)
    overall = recovery_overall(summaries, effects)
    section["verdict"] = v.verdict
    section["shift_verdicts"] = [
        _shift_sentence(_shift_name(shifts, int(e["shift"]), labels), e,
                        by_shift[by_shift["shift"] == e["shift"]])
        for _, e in effects.iterrows()]
    section["verdicts"] = v.sentences
    section["comparisons"] = _comparison_table(v.table)
    section["leaderboard"] = _compact_board(board, comps, metric, overall, v.flags)
    section["details"] = leaderboard_table(board)
    section["recovery"] = _recovery_tables(by_shift, shifts, effects, labels, has_oracle)
    section["prevalence"] = _prevalence_section(runs, mets, board, ratio)
    if draw and section["prevalence"] and prevalence is not None:
        files.update(_prevalence_figure(name, prevalence, board, labels, out_dir,
                                        section["prevalence"]))
    ref = next((c.reference for c in comps if c.reference_name == REFERENCE),
               comps[0].reference if comps else None)
    if draw:
        files.update(_figures(name, per_run, summaries, shifts, metric, out_dir, section,
                              labels, ref, effects, runs, classification))
    return section, files


@dataclass
class Verdicts:
    """The paired tests of one metric in one scenario: against partial pooling and the best
    baseline (``comps``), of the baselines against partial pooling (``among``), of everyone
    against the naive baselines (``naive``), and the verdict paragraph."""

    comps: list[Comparison]
    among: list[Comparison]
    naive: list[Comparison]
    verdict: str

    @property
    def flags(self) -> dict[str, list[str]]:
        return naive_flags(self.naive)

    @property
    def table(self) -> list[Comparison]:
        """Every comparison once (a naive baseline that is the best baseline is tested once)."""
        return _merged(self.comps, [*self.among, *self.naive])

    @property
    def sentences(self) -> list[str]:
        """The verdict sentences listed under the table: the reference comparisons and the
        learners worse than a naive baseline."""
        return [c.verdict for c in _merged(self.comps, self.naive)
                if c in self.comps or c.outcome == "worse"]


def _verdicts(runs: pd.DataFrame, mets: pd.DataFrame, metric: str, ratio: float | None,
              cubes: dict[Any, dict[str, Cube]] | None = None) -> Verdicts:
    """The paired verdicts on ``metric`` of one scenario's runs, each learner scored at its
    own step count; ``cubes``: :func:`run_cubes` of ``mets`` already holding ``metric`` and
    ``scored_steps`` (computed here when None)."""
    if cubes is None:
        cubes = run_cubes(mets, [metric, "scored_steps"])
    scores = wave_scores(runs, mets, metric, cubes)
    comps = compare_all(scores, metric, ratio=ratio)
    naive = naive_comparisons(scores, metric, ratio=ratio)
    among = baseline_comparisons(scores, metric, ratio=ratio)
    text = (overall_verdict(comps, scores, _failed_learners(runs), [*among, *naive])
            + naive_sentence(naive))
    return Verdicts(comps, among, naive, text)


def scenario_verdict(name: str, runs: pd.DataFrame, metrics: pd.DataFrame,
                     config: dict | None = None) -> str:
    """The verdict paragraph of scenario ``name`` as the report words it (paired tests on the
    comparison metric, the survey test on a real survey, the naive-baseline sentence), without
    drawing or writing anything: what ``simlab run`` / ``sweep`` / ``demo`` print at the end.
    ``config``: the stored configs keyed by scenario name (a survey's ledger is in it)."""
    found = _scenario_frames(name, runs, metrics, config)
    if found is None:
        return "No verdict: no run of this scenario produced records; see the failed runs."
    runs, mets, ratio = found
    return _verdicts(runs, mets, comparison_metric(mets), ratio).verdict


def scenario_comparisons(name: str, runs: pd.DataFrame, metrics: pd.DataFrame,
                         config: dict | None = None) -> list[Comparison]:
    """Every paired comparison the report makes for scenario ``name``: on the comparison
    metric and on group prevalence error (where recorded), against the references and the
    naive baselines, with the survey test on a real survey."""
    found = _scenario_frames(name, runs, metrics, config)
    if found is None:
        return []
    runs, mets, ratio = found
    return [c for metric in (comparison_metric(mets), "prevalence_error")
            if (mets["metric"] == metric).any()
            for c in _verdicts(runs, mets, metric, ratio).table]


def _scenario_frames(name: str, runs: pd.DataFrame, metrics: pd.DataFrame,
                     config: dict | None) -> tuple[pd.DataFrame, pd.DataFrame,
                                                   float | None] | None:
    """Scenario ``name``'s runs and records and its survey test ratio (None on a simulation);
    None when no run of it recorded a loss."""
    runs = runs[runs["scenario"] == name]
    mets = metrics[metrics["run_id"].isin(runs["run_id"])]
    if mets.empty or not (mets["metric"] == "loss").any():
        return None
    has_oracle = bool((mets["metric"] == "excess_loss").any())
    return runs, mets, _survey_ratio(config, name, set(config or {}) | {name}, has_oracle)


def _prevalence_section(runs: pd.DataFrame, mets: pd.DataFrame, board: pd.DataFrame,
                        ratio: float | None) -> dict[str, Any] | None:
    """Group prevalence error (the estimand of MRP) judged as the loss is: the same paired
    tests (against partial pooling, the best baseline and the naive baselines), the same
    board and the same overall sentence; None when no run recorded it."""
    metric = "prevalence_error"
    if not (mets["metric"] == metric).any() or f"mean_{metric}" not in board:
        return None
    v = _verdicts(runs, mets, metric, ratio)
    return {"verdict": "On group prevalence error: " + v.verdict,
            "note": "Absolute error of each learner's estimate of every group's prevalence "
                    "(P(y=1) or mean) at each scored wave, "
                    + PREVALENCE_TEXT.get(_prevalence_kind(runs), "as the facts above say")
                    + "; per-seed means, tested as the loss is (" + _test_fact(ratio) + ").",
            "board": _compact_board(board, v.comps, metric, pd.DataFrame(), v.flags),
            "table": _comparison_table(v.table), "verdicts": v.sentences, "figure": None}


def _prevalence_figure(name: str, prevalence: pd.DataFrame, board: pd.DataFrame,
                       labels: dict[int, str], out_dir: Path, part: dict[str, Any]
                       ) -> dict[str, Path]:
    """The group trajectories figure (``report/prevalence.py``) of the best baseline and the
    best meta-learner on prevalence error, as ``part["figure"]`` (None when not drawn)."""
    from simlab.report.prevalence import pick_learners, prevalence_figure
    drawn = prevalence_figure(prevalence[prevalence["scenario"] == name],
                              pick_learners(board), labels)
    if drawn is None:
        return {}
    png, caption = drawn
    rel = f"figures/{slug(name)}_prevalence_groups.png"
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    (out_dir / rel).write_bytes(png)
    part["figure"] = FigureOut("prevalence_groups", caption, rel, "data:image/png;base64,"
                               + base64.b64encode(png).decode("ascii"))
    return {f"{slug(name)}/prevalence_groups": out_dir / rel}


def _merged(comps: Sequence[Comparison], naive: Sequence[Comparison]) -> list[Comparison]:
    """The comparisons, then those against a naive baseline not already among them (a naive
    baseline that is the best baseline is tested once)."""
    seen = {(c.learner, c.reference) for c in comps}
    return [*comps, *(c for c in naive if (c.learner, c.reference) not in seen)]


def _prevalence_kind(runs: pd.DataFrame) -> str:
    """The non-oracle runs' prevalence source (population, census or sample)."""
    if "prevalence" not in runs:
        return ""
    kinds = runs.loc[~run_roles(runs).map(is_oracle), "prevalence"].dropna().unique()
    return str(kinds[0]) if len(kinds) == 1 else ""


def _survey_ratio(config: dict | None, name: str, all_names: set[str],
                  has_oracle: bool) -> float | None:
    """The test/train ratio of a real survey's re-splits (its stored ledger), which selects
    the corrected resampled t test; None for a simulation (it has an oracle)."""
    if has_oracle:
        return None
    return survey_ratio((_scenario_part(config, name, all_names) or {}).get("ledger"))


def _test_fact(ratio: float | None) -> str:
    """Which paired test the verdicts use, and why."""
    key = "seed" if ratio is None else "survey"
    extra = "" if ratio is None else (f" (n_query/n_support = {fmt(ratio)}; the leaderboard's "
                                      "intervals are widened the same way)")
    return f"{TEST_TEXT[key]}{extra}; verdicts from {MIN_SEEDS} seeds"


def _figures(name: str, per_run: dict[Any, dict[str, Any]], summaries: pd.DataFrame,
             shifts: pd.DataFrame, metric: str, out_dir: Path, section: dict[str, Any],
             labels: dict[int, str], reference: str | None, effects: pd.DataFrame,
             runs: pd.DataFrame | None = None, classification: bool = True
             ) -> dict[str, Path]:
    """``per_run``: :func:`metrics.run_cubes` of the section's records (loss and ``metric``);
    the figures draw means over seeds per learner label, so their cost grows with the labels,
    not with the runs."""
    who = dict(zip(summaries["run_id"], zip(summaries["label"].astype(str),
                                            summaries["seed"].astype(int))))
    by_label: dict[str, dict[int, dict[str, Any]]] = {}
    for rid, cs in per_run.items():
        label, seed = who[rid]
        by_label.setdefault(label, {})[seed] = cs
    first_seed = shifts["seed"].min() if len(shifts) else None
    data = ScenarioData(name, by_label, summaries,
                        (shifts[shifts["seed"] == first_seed] if first_seed is not None
                         else shifts).reset_index(drop=True), metric,
                        assign_colors(list(by_label)),
                        label_names(summaries), roles_by_label(summaries),
                        wave_labels=labels, reference=reference,
                        negligible=set(effects.loc[effects["negligible"], "shift"].astype(int)),
                        training=training_logs(runs if runs is not None else summaries,
                                               dict(zip(summaries["run_id"],
                                                        summaries["label"].astype(str)))),
                        classification=classification)
    files: dict[str, Path] = {}
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for stem, caption, draw in FIGURES:
        if stem == "shift_differences" and (data.shifts.empty or reference is None):
            why = "no shifts in this scenario" if data.shifts.empty else "no reference learner"
            text = caption.format(reference=reference or "the reference").rstrip(".")
            section["figures"].append(FigureOut(stem, f"{text}: not drawn, {why}.", "", ""))
            continue
        if stem == "training_curves" and not data.training:
            section["figures"].append(FigureOut(stem, f"{caption}: no learner trained with "
                                                "an early-stopping warm-up budget.", "", ""))
            continue
        png, note = draw(data)
        rel = f"figures/{slug(name)}_{stem}.png"
        (out_dir / rel).write_bytes(png)
        files[f"{slug(name)}/{stem}"] = out_dir / rel
        text = caption.format(reference=reference) + (f" {note}" if note else "")
        section["figures"].append(FigureOut(stem, text, rel, "data:image/png;base64,"
                                            + base64.b64encode(png).decode("ascii")))
    return files


def _survey_ledger(section: Any) -> Any:
    from simlab.report.ledger import ledger_context
    return ledger_context(section)


def _md_text(value: Any) -> str:
    """User text (scenario names, titles, labels) made inert in Markdown: no raw HTML (a
    viewer would run a ``<script>``), no link or image syntax (``[x](javascript:...)`` would be
    a live link), no line breaks that start a heading or a list."""
    text = " ".join(str(value).split())
    text = re.sub(r"([\\\[\]])", r"\\\1", text)    # \ [ ]: no [text](url) or ![alt](url)
    return text.replace("<", "&lt;").replace(">", "&gt;")


def template_environment() -> Environment:
    env = Environment(loader=PackageLoader("simlab.report", "templates"),
                      autoescape=select_autoescape(enabled_extensions=("html.j2",),
                                                   default_for_string=False),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["md"] = lambda s: _md_text(s).replace("|", "\\|")     # a table cell
    env.filters["mdtext"] = _md_text                                    # running text
    env.filters["survey_ledger"] = _survey_ledger   # the _ledger partial (survey scenarios)
    env.filters["num"] = fmt
    return env


def code_fact(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """A fact line when a scenario's runs were computed by different code (the store's
    ``version``, ``store.code_version``): a resumed store keeps the cells it has, so a report
    may compare runs of older code with new ones. None when all agree."""
    if "version" not in runs:
        return []
    counts = runs["version"].fillna("unknown").astype(str).value_counts()
    if len(counts) < 2:
        return []
    listed = ", ".join(f"{v} ({n} run{'s' if n != 1 else ''})" for v, n in counts.items())
    return [("code versions", f"{len(counts)}: {listed}. The store kept cells computed by "
             "other code; run into a fresh --db to compare one code version")]


def baselines_line(runs: pd.DataFrame) -> str:
    """The report's "Baselines:" line: the built-in baselines, then any other learner that ran
    as a baseline by its recorded role (a plug-in declaring ``role = "baseline"`` is compared
    as one, so the reader must see it named)."""
    text = ", ".join(baseline_names()) + " (and their cpd: wrappers)"
    names = registry_names(runs)
    plugins = [label for label, name, role in zip(runs["learner"].astype(str), names,
                                                  run_roles(runs))
               if is_baseline(role) and name.removeprefix("cpd:") not in BUILTIN_ROLES]
    plugins = list(dict.fromkeys(plugins))
    return text + (f"; plug-in baselines that ran: {', '.join(plugins)}" if plugins else "")


def build_report(runs: pd.DataFrame, metrics: pd.DataFrame, shifts: pd.DataFrame,
                 out_dir: Path, title: str, config: dict | None = None, *,
                 options: SummaryOptions | None = None, n_boot: int | None = None,
                 figures: bool = True, summaries: pd.DataFrame | None = None,
                 prevalence: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` (+ ``figures/*.png``) into
    ``out_dir``; returns their paths under "html" and "markdown" and each figure's path under
    "<scenario>/<figure>".

    ``config``: shown verbatim (JSON); a dict keyed by scenario names is split per section.
    ``options``: the summary knobs (recovery tolerance, sustain, target loss). ``n_boot``:
    unused (the paired test is exact; kept for older callers). ``figures`` False: text and
    tables only (fast; no PNGs). ``summaries``: the store's per-run summaries (run_id, name,
    value; ``Store.frames()["summaries"]``), used instead of recomputing them from the records
    for every run that has them (they must come from the same ``options``: the sweep's).
    ``prevalence``: the store's group x wave estimates (``Store.prevalence``), drawn against
    the observed shares in the prevalence section (none drawn when None).
    """
    check_frame(runs, "runs", RUN_COLUMNS)
    check_frame(metrics, "metrics", ["run_id"] + RECORD_COLUMNS)
    check_frame(shifts, "shifts", ["scenario", "seed"] + SHIFT_COLUMNS)
    if summaries is not None:
        check_frame(summaries, "summaries", ["run_id", "name", "value"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    opt = options or SummaryOptions()
    names = list(dict.fromkeys(runs["scenario"]))
    sections, paths = [], {}
    for name in names:
        sec, files = _scenario_section(name, runs[runs["scenario"] == name], metrics,
                                       shifts[shifts["scenario"] == name], out_dir, config,
                                       set(names), opt, figures, summaries, prevalence)
        sections.append(sec)
        paths.update(files)
    add_pretrain_verdicts(sections, runs, metrics, lambda name, oracle: _survey_ratio(
        config, name, set(names), oracle))         # a pre-trained scenario against its arm
    shared = config if config and not set(config) <= set(names) else None
    ctx = {"title": title, "version": __version__, "sections": sections,
           "config": json.dumps(shared, indent=2, default=str) if shared else None,
           "baselines": baselines_line(runs),
           "oracle": ORACLE, "reference": REFERENCE,
           "options": opt, "min_seeds": MIN_SEEDS,
           "any_oracle": any(s["has_oracle"] for s in sections),
           "all_oracle": all(s["has_oracle"] for s in sections)}
    env = template_environment()
    html = out_dir / "report.html"
    md = out_dir / "report.md"
    html.write_text(env.get_template("report.html.j2").render(ctx), encoding="utf-8")
    md.write_text(env.get_template("report.md.j2").render(ctx), encoding="utf-8")
    return {"html": html, "markdown": md, **paths}
