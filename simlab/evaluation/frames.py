"""From a results store's frames to the tables the statistics read: one row per run
(:func:`run_summaries`), the leaderboard with intervals over seeds, the per-wave scores of the
paired tests (:func:`wave_scores`), and who each label is: its registry name and its role
(``learners.roles``), read from the run's log where recorded.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from simlab.evaluation.inference import seed_interval
from simlab.evaluation.metrics import (
    Cube,
    SummaryOptions,
    run_cubes,
    scored_step,
    summarize,
)
from simlab.learners.roles import is_baseline, recorded_role

#: run-level summaries shown with intervals on the leaderboard, in this order
LEADERBOARD_COLUMNS: tuple[str, ...] = (
    "mean_excess_loss", "mean_loss", "regret", "auc_steps", "shots_to_target",
    "mean_accuracy", "mean_prevalence_error", "adapt_seconds_total", "meta_fit_seconds_total")
#: the range of each summary (an interval is clipped to it: a loss or a time is never < 0)
BOUNDS: dict[str, tuple[float, float]] = {
    "mean_loss": (0.0, math.inf), "auc_steps": (0.0, math.inf), "mean_brier": (0.0, 2.0),
    "shots_to_target": (0.0, math.inf), "mean_accuracy": (0.0, 1.0), "mean_ece": (0.0, 1.0),
    "mean_prevalence_error": (0.0, 1.0), "mean_prevalence_error_oracle": (0.0, 1.0),
    "adapt_seconds_total": (0.0, math.inf), "meta_fit_seconds_total": (0.0, math.inf),
    "diverged": (0.0, 1.0), "unrecovered": (0.0, math.inf), "recovered": (0.0, math.inf)}


# --------------------------------------------------------------------------- who is who

def registry_names(frame: pd.DataFrame, label: str = "learner") -> pd.Series:
    """Each row's registry name (what ``make_learner`` resolves): the store's
    ``learner_name`` column where present, else its ``label`` column."""
    col = frame["learner_name"] if "learner_name" in frame else frame[label]
    return col.fillna(frame[label]).astype(str)


def label_names(frame: pd.DataFrame, label: str = "label") -> dict[str, str]:
    """``label`` column value -> registry name (see ``registry_names``)."""
    return dict(zip(frame[label].astype(str), registry_names(frame, label)))


def run_roles(frame: pd.DataFrame, label: str = "learner") -> pd.Series:
    """Each row's role (``learners.roles``): the ``role`` its run log recorded (the store's
    ``role`` column), else, for a log written before roles were, its registry name's."""
    names = (registry_names(frame, label) if label in frame
             else frame["learner_name"].astype(str))
    recorded = frame["role"] if "role" in frame else pd.Series(None, index=frame.index,
                                                              dtype=object)
    return pd.Series([recorded_role(r, n) for r, n in zip(recorded, names)], index=frame.index,
                     dtype=object)


def labelled_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Adds ``label``, ``learner_name`` and ``role`` to a runs frame.

    ``label``: the ``learner`` column (the store's label, e.g. ``maml[inner_lr=0.1]`` for a grid
    point), suffixed with a short hash of the hyperparameters when one label was run with
    several settings in a scenario (so they are not pooled by mistake). ``learner_name``: the
    registry name (the store's ``learner_name`` column where present, else ``learner``).
    ``role``: who is a baseline, a naive forecast or the oracle (:func:`run_roles`).
    """
    hp = runs["hyperparameters"].fillna("{}").astype(str)
    n_settings = hp.groupby([runs["scenario"], runs["learner"]]).transform("nunique")
    tag = hp.map(lambda s: hashlib.sha1(s.encode()).hexdigest()[:6])
    return runs.assign(label=runs["learner"].where(n_settings <= 1, runs["learner"] + "@" + tag),
                       learner_name=registry_names(runs), role=run_roles(runs))


IDENTITY = ["run_id", "scenario", "seed", "learner", "label", "learner_name", "role", "status"]


def run_summaries(runs: pd.DataFrame, metrics: pd.DataFrame, shifts: pd.DataFrame | None = None,
                  options: SummaryOptions | None = None, stored: pd.DataFrame | None = None
                  ) -> pd.DataFrame:
    """One row per run (in ``runs``' order): scenario, seed, learner, label, learner_name,
    role, status + :func:`metrics.summarize`.

    Runs without records (failed) get only their identity columns. ``stored``: the store's
    ``summaries`` frame (run_id, name, value), which ``evaluate`` wrote from the same
    ``summarize`` of the same records and shifts (so pass it only when ``options`` are the
    sweep's): a run with records and stored rows takes them as they are; only a run with
    records and none is summarised here (reading 10,000 stored runs costs one pivot,
    recomputing them a minute).
    """
    runs = labelled_runs(runs)
    ident = runs[IDENTITY].reset_index(drop=True)
    recorded = set(pd.unique(metrics["run_id"])) if len(metrics) else set()
    wide = pd.DataFrame(index=pd.Index([], name="run_id"))
    if stored is not None and len(stored):
        st = stored[stored["run_id"].isin(recorded)].drop_duplicates(["run_id", "name"],
                                                                     keep="last")
        wide = st.pivot(index="run_id", columns="name", values="value")
    todo = [rid for rid in ident["run_id"] if rid in recorded and rid not in wide.index]
    if todo:
        by_run = dict(tuple(metrics[metrics["run_id"].isin(todo)].groupby("run_id")))
        by_stream = (dict(tuple(shifts.groupby(["scenario", "seed"])))
                     if shifts is not None and len(shifts) else {})
        stream = ident.set_index("run_id")
        fresh = pd.DataFrame([summarize(by_run[rid], by_stream.get(
            (stream.at[rid, "scenario"], stream.at[rid, "seed"])), options) for rid in todo],
            index=pd.Index(todo, name="run_id"))
        wide = fresh if wide.empty else pd.concat([wide, fresh])
    if wide.empty and not len(wide.columns):
        return ident
    wide.columns.name = None
    return ident.join(wide, on="run_id")


def leaderboard(summaries: pd.DataFrame, columns: Sequence[str] = LEADERBOARD_COLUMNS,
                level: float = 0.95, ratio: float | None = None) -> pd.DataFrame:
    """Per scenario and learner: run counts and, for each summary, mean and t interval over seeds
    (columns ``c``, ``c_lo``, ``c_hi``; ``ratio``: a survey's, see :func:`seed_interval`).
    Sorted by the first available column (lower first)."""
    present = [c for c in columns if c in summaries.columns]
    rows = []
    for (scenario, label), g in summaries.groupby(["scenario", "label"], sort=False):
        row: dict[str, object] = {"scenario": scenario, "label": label,
                                  "learner": g["learner"].iloc[0], "runs": len(g),
                                  "ok": int((g["status"] == "ok").sum()),
                                  "diverged": int((g["status"] == "diverged").sum()),
                                  "failed": int((~g["status"].isin(["ok", "diverged"])).sum())}
        for c in present:
            iv = seed_interval(g[c], level, BOUNDS.get(c, (-math.inf, math.inf)), ratio)
            row.update({c: iv.mean, f"{c}_lo": iv.lo, f"{c}_hi": iv.hi})
        rows.append(row)
    board = pd.DataFrame(rows)
    key = next((c for c in present if board[c].notna().any()), None)
    if key is not None:
        board = board.sort_values(["scenario", key], na_position="last", kind="stable")
    return board.reset_index(drop=True)


def comparison_metric(metrics: pd.DataFrame) -> str:
    """``excess_loss`` when the records hold it (oracle known), else ``loss``."""
    return "excess_loss" if (metrics["metric"] == "excess_loss").any() else "loss"


def wave_scores(runs: pd.DataFrame, metrics: pd.DataFrame, metric: str,
                cubes: dict[object, dict[str, Cube]] | None = None) -> pd.DataFrame:
    """Per-wave scores for paired tests: scenario, seed, label, learner_name, role, wave, value,
    and ``classification`` (the run's target is binary or multiclass: it recorded accuracy; the
    losses are then in nats, else squared error) (one row per cell; runs by ascending id,
    waves ascending).

    Runs without records are skipped; a repeated (scenario, seed, label) keeps its last run.
    Each learner is scored at its own step count (``metrics.scored_step``). ``cubes``:
    :func:`metrics.run_cubes` of ``metrics`` holding ``metric`` and ``scored_steps`` (computed
    when None;
    pass it to share one pass over the records with the figures).
    """
    runs = labelled_runs(runs).drop_duplicates(["scenario", "seed", "label"], keep="last")
    cols = ["scenario", "seed", "label", "learner_name", "role", "wave", "value",
            "classification"]
    if cubes is None:
        cubes = run_cubes(metrics[metrics["run_id"].isin(runs["run_id"])],
                          [metric, "scored_steps"])
    meta = runs.set_index("run_id")
    ids, waves, values = [], [], []
    for rid in sorted(set(cubes) & set(meta.index)):  # type: ignore[type-var]
        cube = cubes[rid].get(metric)
        if cube is None:
            continue
        ids.append([rid] * cube.waves.size)
        waves.append(cube.waves)
        # each learner at its own scored step count (= metrics.wave_curve)
        values.append(cube.at_steps(scored_step(cubes[rid])).mean(axis=1))
    if not ids:
        return pd.DataFrame(columns=cols)
    rid = [r for part in ids for r in part]
    who = meta.loc[rid, cols[:5]].reset_index(drop=True)
    scored = set(metrics.loc[metrics["metric"].eq("accuracy"), "run_id"].unique())
    return who.assign(wave=np.concatenate(waves), value=np.concatenate(values),
                      classification=[r in scored for r in rid])[cols]


def names_by_label(scores: pd.DataFrame) -> dict[str, str]:
    """label -> registry name of a scores or summaries frame (labels are their own name in
    frames without the ``learner_name`` column)."""
    if "learner_name" not in scores:
        return {str(lab): str(lab) for lab in scores["label"].unique()}
    first = scores.groupby("label")["learner_name"].first().astype(str)
    return {str(lab): name for lab, name in first.items()}


def roles_by_label(scores: pd.DataFrame) -> dict[str, str]:
    """label -> role of a scores or summaries frame: its ``role`` column (what the runs'
    logs recorded), else (a frame without one, an older log) its registry name's."""
    names = names_by_label(scores)
    recorded = (scores.groupby("label")["role"].first().to_dict() if "role" in scores
                else {})
    return {lab: recorded_role(recorded.get(lab), n) for lab, n in names.items()}


def best_baseline(scores: pd.DataFrame, names: Sequence[str] | None = None) -> str | None:
    """The label with the lowest mean score among learners named in ``names`` (default: the
    baselines, by role), if any was run."""
    roles = roles_by_label(scores)
    mine = [lab for lab, n in names_by_label(scores).items()
            if (is_baseline(roles[lab]) if names is None else n in names)]
    means = scores[scores["label"].isin(mine)].groupby("label")["value"].mean().dropna()
    return str(means.idxmin()) if len(means) else None


def parse_hyperparameters(text: str | None) -> dict[str, object]:
    """The runs frame's JSON hyperparameters as a dict ({} when empty or not JSON)."""
    try:
        value = json.loads(text) if text else {}
    except (TypeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


__all__ = ["BOUNDS", "IDENTITY", "LEADERBOARD_COLUMNS", "best_baseline", "comparison_metric",
           "label_names", "labelled_runs", "leaderboard", "names_by_label",
           "parse_hyperparameters", "registry_names", "roles_by_label", "run_roles",
           "run_summaries", "wave_scores"]
