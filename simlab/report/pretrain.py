"""The report's pre-training section (``[evaluation.pretrain]``): which learners meta-fitted on
which simulated tasks, with what budget and time, before the warm-up, and why the others did not;
and, when the store also holds the same learners and seeds without pre-training (the scenario's
comparison arm, e.g. ``sweeps/pretrain_gss.toml``), each learner's paired verdict
pretrained-vs-not.

Reads the ``pretrain`` column of the store's runs frame (the run log's ``"pretrain"`` entry,
written by ``simlab.evaluation.pretrain.before_warmup``); runs without it had no pre-training.
The comparison arm of a pre-trained scenario is the store's scenario without any pre-training
that shares learners and seeds with it, the one whose name shares the longest prefix with its
name when several do (``gss_happiness_pretrained`` -> ``gss_happiness_plain``).
"""
from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from simlab.evaluation.comparisons import compare
from simlab.evaluation.frames import BOUNDS, comparison_metric, wave_scores
from simlab.evaluation.inference import holm, seed_interval
from simlab.evaluation.verdicts import fmt, fmt_p
from simlab.experiment.store import read_entry

#: the label suffix of a learner's pre-trained arm in the comparison
PRETRAINED = " (pretrained)"


def pretrain_section(runs: pd.DataFrame) -> dict[str, Any] | None:
    """Context for ``_pretrain.*.j2``: one row per learner (seeds pooled); None when no run
    carried a pre-training plan."""
    if "pretrain" not in runs.columns:
        return None
    by: dict[str, list[dict[str, Any]]] = {}
    for r in runs.itertuples(index=False):
        log = read_entry(r.pretrain)
        if log is not None:
            by.setdefault(str(r.learner), []).append(log)
    if not by:
        return None
    rows = []
    for learner, logs in sorted(by.items()):
        first = logs[0]
        src = first.get("source") or {}
        budget = first.get("budget") or {}
        applied = [x for x in logs if x.get("applied")]
        secs = [float(x.get("seconds", 0.0)) for x in applied]
        seeds = ", ".join(map(str, src.get("seeds", [])))
        rows.append([learner, "yes" if applied else "no",
                     f"{src.get('scenario', '?')} (seeds {seeds})",
                     str(first.get("tasks", "?")),
                     f"{budget.get('iterations', '?')} x {budget.get('meta_batch', '?')}",
                     f"{statistics.median(secs):.3g}" if secs else "–",
                     "" if applied else str(first.get("reason", ""))])
    return {"comparison": None,          # add_pretrain_verdicts: against the comparison arm
            "table": {"header": ["learner", "pre-trained", "simulated source", "tasks",
                                 "budget (iterations x meta-batch)", "seconds (median)",
                                 "why not"], "rows": rows}}


def _applied(runs: pd.DataFrame) -> set[str]:
    """The learners of ``runs`` whose pre-training was applied."""
    if "pretrain" not in runs.columns:
        return set()
    return {str(r.learner) for r in runs.itertuples(index=False)
            if (read_entry(r.pretrain) or {}).get("applied")}


def _has_plan(runs: pd.DataFrame) -> bool:
    return "pretrain" in runs.columns and any(read_entry(v) is not None
                                              for v in runs["pretrain"])


def comparison_arm(name: str, runs: pd.DataFrame) -> str | None:
    """The scenario of ``runs`` without pre-training that shares learners and seeds with the
    pre-trained scenario ``name`` (the longest common name prefix among several); None."""
    mine = runs[runs["scenario"] == name]
    cands = []
    for other, g in runs.groupby("scenario"):
        if other == name or _has_plan(g):
            continue
        if set(g["learner"]) & set(mine["learner"]) and set(g["seed"]) & set(mine["seed"]):
            cands.append(str(other))
    if not cands:
        return None
    return max(cands, key=lambda c: (len(os.path.commonprefix([c, name])), c))


def pretrain_verdicts(name: str, runs: pd.DataFrame, metrics: pd.DataFrame,
                      ratio: float | None = None) -> dict[str, Any] | None:
    """Per learner pre-trained in scenario ``name``: its mean score (loss, or excess loss where
    there is an oracle) with and without pre-training, each with its 95% interval over seeds,
    and the paired test of the difference over the seeds both arms ran (``statistics.compare``;
    ``ratio``: a survey's corrected resampled t test), Holm-adjusted over the learners.
    ``runs``: the whole store's (the arm is another scenario). None without an arm."""
    arm = comparison_arm(name, runs)
    applied = _applied(runs[runs["scenario"] == name])
    if arm is None or not applied:
        return None
    both = runs[runs["scenario"].isin([name, arm])]
    mets = metrics[metrics["run_id"].isin(both["run_id"])]
    if mets.empty:
        return None
    metric = comparison_metric(mets)
    scores = wave_scores(both, mets, metric)
    pre = scores["scenario"] == name
    scores = scores.assign(label=scores["label"].where(~pre, scores["label"] + PRETRAINED),
                           scenario=name)
    learners = sorted(lab for lab in applied if lab in set(scores["label"]))
    found = [compare(scores, lab + PRETRAINED, lab, metric, ratio=ratio) for lab in learners]
    p_holm = holm([c.p_value for c in found])
    bounds = BOUNDS.get(f"mean_{metric}", (-np.inf, np.inf))
    rows = []
    for c, lab, p_adj in zip(found, learners, p_holm):
        per_seed = {arm_label: scores[scores["label"] == arm_label].groupby("seed")["value"]
                    .mean() for arm_label in (lab, lab + PRETRAINED)}
        iv = {k: seed_interval(v, bounds=bounds, ratio=ratio) for k, v in per_seed.items()}
        rows.append([lab, _iv(iv[lab]), _iv(iv[lab + PRETRAINED]),
                     f"{fmt(c.mean_diff)} [{fmt(c.ci_lo)}, {fmt(c.ci_hi)}]",
                     fmt(c.mdd), fmt_p(c.p_value), fmt_p(float(p_adj)), str(c.n_seeds),
                     _word(c.outcome, float(p_adj))])
    metric_name = metric.replace("_", " ")
    return {"arm": arm, "metric": metric_name,
            "table": {"header": ["learner", f"mean {metric_name}, not pre-trained (95% CI)",
                                 f"mean {metric_name}, pre-trained (95% CI)",
                                 "pre-trained - not (95% CI)", "detectable (80%)", "p",
                                 "p (Holm)", "seeds", "verdict"], "rows": rows},
            "test": "corrected resampled t test over re-splits of one survey"
            if ratio is not None else "paired t test over seeds"}


def _iv(iv: Any) -> str:
    return f"{fmt(iv.mean)} [{fmt(iv.lo)}, {fmt(iv.hi)}]" if np.isfinite(iv.lo) else fmt(iv.mean)


def _word(outcome: str, p_holm: float) -> str:
    """The verdict in words, Holm-adjusted over the learners compared."""
    if outcome in ("no data", "too few seeds"):
        return outcome
    if p_holm < 0.05:
        return "helps" if outcome == "beats" else "hurts"
    return "no detectable difference"  # with these seeds: see the detectable difference


def add_pretrain_verdicts(sections: Sequence[dict[str, Any]], runs: pd.DataFrame,
                          metrics: pd.DataFrame, ratio_of: Callable[[str, bool], float | None]
                          ) -> None:
    """Give each pre-trained scenario's section (``section["pretrain"]``) its paired verdicts
    against its comparison arm; ``ratio_of(name, has_oracle)``: a survey's test/train ratio."""
    for sec in sections:
        if sec.get("pretrain"):
            sec["pretrain"]["comparison"] = pretrain_verdicts(
                sec["name"], runs, metrics, ratio_of(sec["name"], bool(sec["has_oracle"])))


__all__ = ["PRETRAINED", "add_pretrain_verdicts", "comparison_arm", "pretrain_section",
           "pretrain_verdicts"]
