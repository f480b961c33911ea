"""Paired comparisons of learners on identical streams, in families, from per-wave scores.

Every learner of a scenario sees the identical stream for a given seed, so scores are paired.
Per seed, the difference (learner - reference) of the per-wave score is averaged over the waves
both scored (the per-wave score is the metric at the learner's own scored step count -- the one
it predicts with, ``metrics.scored_step`` -- averaged over the shots grid:
``metrics.wave_curve``); the per-seed mean differences get the paired t test of
``inference.seed_t_test`` (on a real survey the corrected resampled t test), Holm-adjusted
within each family of comparisons against one reference.

Who is compared with whom reads each learner's declared role (``learners.roles``): every method
against the **best baseline** (the baseline run with the lowest mean comparison metric) and
against partial pooling (:data:`REFERENCE`); the baselines against partial pooling; every
learner but the naive ones and the references against each **naive** baseline (flagged when
worse). The references (the oracle, the ``floor``) are shown, never compared.

The comparison metric is the excess loss over the oracle where the stream has one, else the
loss (lower is better for both; on the same responses their paired differences are equal).
Cells where either learner diverged (NaN) are left out of the seed's mean and counted
(``n_dropped``); a seed with no shared finite wave is left out.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from simlab.evaluation.frames import best_baseline, names_by_label, roles_by_label
from simlab.evaluation.inference import (
    ALPHA,
    MIN_SEEDS,
    corrected_t_test,
    holm,
    seed_means,
    seed_t_test,
)
from simlab.evaluation.metrics import metric_unit
from simlab.evaluation.verdicts import Comparison, decide
from simlab.learners.roles import (
    REFERENCE,
    is_baseline,
    is_method,
    is_naive,
    is_reference,
)


def _test(scores: pd.DataFrame, learner: str, reference: str, metric: str,
          alpha: float, ratio: float | None = None) -> dict[str, Any]:
    """The paired t test's numbers (outcome "no data" with a reason when there are none);
    ``ratio`` (a survey's test/train ratio): the corrected resampled t test instead."""
    scenario = str(scores["scenario"].iloc[0]) if len(scores) else ""
    names, roles = names_by_label(scores), roles_by_label(scores)
    classification = bool(scores["classification"].all()) if "classification" in scores \
        else True
    base: dict[str, Any] = {
        "scenario": scenario, "learner": learner, "reference": reference,
        "learner_name": names.get(learner, learner),
        "reference_name": names.get(reference, reference),
        "learner_role": roles.get(learner, "meta"),
        "reference_role": roles.get(reference, "meta"),
        "metric": metric, "n_pairs": 0, "n_seeds": 0, "n_dropped": 0, "mean_learner": math.nan,
        "mean_reference": math.nan, "mean_diff": math.nan, "ci_lo": math.nan, "ci_hi": math.nan,
        "p_value": math.nan, "mdd": math.nan, "outcome": "no data", "reason": "",
        "test": "seed" if ratio is None else "survey",
        "unit": "" if metric == "prevalence_error" else metric_unit(metric, classification,
                                                                   short=True)}
    mine = scores[scores["label"].isin([learner, reference])]
    have = {lab: set(g["seed"][g["value"].notna()]) for lab, g in mine.groupby("label")}
    for lab in (learner, reference):
        if not have.get(lab):
            base["reason"] = f"{lab} has no scored wave (its runs failed or were not run)"
            return base
    if not have[learner] & have[reference]:
        base["reason"] = (f"the two share no seed ({learner}: seeds "
                          f"{sorted(have[learner])}, {reference}: {sorted(have[reference])})")
        return base
    wide = mine.pivot_table(index=["seed", "wave"], columns="label", values="value",
                            aggfunc="mean", dropna=False)
    both = wide[learner].notna() & wide[reference].notna()
    if not both.any():
        base["reason"] = "the two share no scored wave on any common seed"
        return base
    diff = (wide[learner] - wide[reference]).unstack("wave")          # [seeds, waves]
    d = diff.to_numpy(np.float64)
    per_seed = seed_means(d)
    res = (seed_t_test(per_seed, alpha) if ratio is None
           else corrected_t_test(per_seed, ratio, alpha))
    keep = np.isfinite(per_seed)
    lrn_seed = seed_means(wide[learner].where(both).unstack("wave").to_numpy(np.float64))
    ref_seed = seed_means(wide[reference].where(both).unstack("wave").to_numpy(np.float64))
    return dict(base, n_pairs=int(both.sum()), n_seeds=int(keep.sum()),
                n_dropped=int((~both).sum()), mean_learner=float(np.nanmean(lrn_seed)),
                mean_reference=float(np.nanmean(ref_seed)), mean_diff=float(res["mean"]),
                ci_lo=float(res["lo"]), ci_hi=float(res["hi"]), p_value=float(res["p"]),
                mdd=float(res["mdd"]), outcome="tested")


def compare(scores: pd.DataFrame, learner: str, reference: str, metric: str = "excess_loss",
            *, alpha: float = ALPHA, min_seeds: int = MIN_SEEDS, n_boot: int | None = None,
            seed: int | None = None, ratio: float | None = None) -> Comparison:
    """Paired comparison of ``learner`` against ``reference`` on the seeds both scored (a
    family of one: no adjustment; :func:`compare_all` adjusts across a scenario).

    ``scores``: one scenario's :func:`wave_scores`. Outcome "beats" needs at least
    ``min_seeds`` paired seeds and p < ``alpha`` with a negative mean difference (lower is
    better). ``n_boot`` and ``seed`` are accepted for older callers and unused (the test is
    exact; nothing is resampled). ``ratio``: a real survey's test/train ratio
    (:func:`survey_ratio`), which selects the corrected resampled t test.
    """
    fields = _test(scores, learner, reference, metric, alpha, ratio)
    return decide(fields, float(fields["p_value"]), 1, alpha, min_seeds)


def compare_all(scores: pd.DataFrame, metric: str = "excess_loss", *, alpha: float = ALPHA,
                min_seeds: int = MIN_SEEDS, n_boot: int | None = None,
                seed: int | None = None, ratio: float | None = None) -> list[Comparison]:
    """Every non-baseline, non-oracle learner of every scenario against the best baseline and
    against partial pooling (its best setting when several were run; once when they are the
    same). The comparisons against one reference in one scenario are a family: their p-values
    are Holm-adjusted together. ``n_boot``/``seed``: unused, kept for older callers.
    ``ratio``: a real survey's test/train ratio (the corrected resampled t test)."""
    out: list[Comparison] = []
    for _, sc in scores.groupby("scenario", sort=False):
        refs = [r for r in dict.fromkeys([best_baseline(sc), best_baseline(sc, (REFERENCE,))])
                if r is not None]
        learners = [lab for lab, role in roles_by_label(sc).items() if is_method(role)]
        order = {lab: i for i, lab in enumerate(sorted(
            learners, key=list(sc["label"].unique()).index))}
        # one family per reference (:func:`_families`), listed learner by learner
        out += sorted(_families(sc, learners, refs, metric, alpha, min_seeds, ratio),
                      key=lambda c: order[c.learner])
    return out


def naive_comparisons(scores: pd.DataFrame, metric: str = "excess_loss", *,
                      alpha: float = ALPHA, min_seeds: int = MIN_SEEDS,
                      ratio: float | None = None) -> list[Comparison]:
    """Every learner but the naive ones and the references (the oracle, the floor: never
    compared) against each naive baseline run (role "naive"), baselines included (a broken
    pooled fine-tune must show), by the same paired test as :func:`compare_all`;
    Holm-adjusted within each naive reference's family."""
    out: list[Comparison] = []
    for _, sc in scores.groupby("scenario", sort=False):
        roles = roles_by_label(sc)
        refs = [lab for lab, role in roles.items() if is_naive(role)]
        others = [lab for lab, role in roles.items()
                  if not is_naive(role) and not is_reference(role)]
        out += _families(sc, others, refs, metric, alpha, min_seeds, ratio)
    return out


def baseline_comparisons(scores: pd.DataFrame, metric: str = "excess_loss", *,
                         alpha: float = ALPHA, min_seeds: int = MIN_SEEDS,
                         ratio: float | None = None) -> list[Comparison]:
    """The baselines against partial pooling (the reference): is a baseline's lead over it,
    or the reference's over a baseline, more than noise? Holm-adjusted as one family."""
    out: list[Comparison] = []
    for _, sc in scores.groupby("scenario", sort=False):
        roles = roles_by_label(sc)
        ref = best_baseline(sc, (REFERENCE,))
        if ref is None:
            continue
        others = [lab for lab, role in roles.items() if is_baseline(role)
                  and not is_naive(role) and lab != ref]
        out += _families(sc, others, [ref], metric, alpha, min_seeds, ratio)
    return out


def _families(sc: pd.DataFrame, learners: list[str], refs: Sequence[str], metric: str,
              alpha: float, min_seeds: int, ratio: float | None) -> list[Comparison]:
    """``learners`` against each of ``refs`` (one family per reference, Holm-adjusted)."""
    learners = sorted(learners, key=list(sc["label"].unique()).index)
    out = []
    for ref in refs:
        tests = [_test(sc, lab, ref, metric, alpha, ratio) for lab in learners]
        p = [float(t["p_value"]) if t["outcome"] != "no data"
             and int(t["n_seeds"]) >= min_seeds else math.nan for t in tests]
        adj, family = holm(p), max(int(np.isfinite(p).sum()), 1)
        for t, pa in zip(tests, adj):
            out.append(decide(t, float(pa) if math.isfinite(pa) else float(t["p_value"]),
                               family, alpha, min_seeds))
    return out


__all__ = ["baseline_comparisons", "compare", "compare_all", "naive_comparisons"]
