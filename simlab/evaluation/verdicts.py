"""What a comparison concluded, in words: the one number format of reports and verdicts, the
outcome of a paired test (:class:`Comparison`) with its sentence, and the scenario's verdict
paragraph (:func:`overall_verdict`, :func:`naive_sentence`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from simlab.evaluation.frames import best_baseline, names_by_label
from simlab.learners.roles import REFERENCE, is_method, is_naive


def fmt(x: object, digits: int = 3) -> str:
    """The one number format of reports and verdicts: ``digits`` significant digits in
    positional notation (never an exponent, so 0.0000929 and 13.1 read alike), integers as
    integers, "–" for a missing value (None / NaN)."""
    if x is None or (isinstance(x, (float, np.floating)) and not math.isfinite(float(x))):
        return "–" if x is None or math.isnan(float(x)) else ("∞" if x > 0 else "-∞")
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}" if abs(int(x)) >= 10_000 else str(int(x))
    if isinstance(x, (float, np.floating)):
        v = float(x)
        if v == 0:
            return "0"
        if abs(v) >= 10 ** digits:
            return f"{v:,.0f}"
        return np.format_float_positional(v, precision=digits, unique=False, fractional=False,
                                          trim="-")
    return str(x)


def fmt_p(p: float) -> str:
    """A p-value: two significant digits, "< 0.001" below that, "–" when missing."""
    if not math.isfinite(p):
        return "–"
    return "< 0.001" if p < 0.001 else fmt(p, 2)



@dataclass(frozen=True)
class Comparison:
    """A learner against a reference on identical streams (see the module docstring)."""

    scenario: str
    learner: str
    reference: str
    learner_name: str     # registry names: who is a baseline, who is partial pooling
    reference_name: str
    metric: str
    n_pairs: int          # seed x wave cells both scored
    n_seeds: int          # seeds with at least one shared finite wave (the test's n)
    n_dropped: int        # cells left out (either learner diverged / missing)
    mean_learner: float
    mean_reference: float
    mean_diff: float      # mean over seeds of the per-seed mean difference
    ci_lo: float
    ci_hi: float
    p_value: float        # paired t test over seeds, unadjusted
    p_adjusted: float     # Holm-adjusted within the family of comparisons against reference
    n_family: int         # size of that family
    mdd: float            # minimum detectable difference (80% power, alpha)
    outcome: str          # "beats" | "worse" | "no difference" | "too few seeds" | "no data"
    reason: str           # why there is no verdict ("" when there is one)
    verdict: str
    test: str = "seed"    # "seed": paired t over seeds; "survey": corrected resampled t test
    unit: str = ""        # the metric's unit (metrics.metric_unit; "" for prevalence error)
    learner_role: str = "meta"     # roles (learners.roles): who is a baseline, a naive one
    reference_role: str = "meta"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _pct(diff: float, ref: float) -> str | None:
    return f"{abs(diff) / abs(ref):.0%}" if abs(ref) > 1e-12 and np.isfinite(ref) else None


def _verdict(c: dict[str, Any], name: str) -> str:
    """One sentence in words, with the numbers that back it."""
    lrn, ref, diff = c["learner"], c["reference"], float(c["mean_diff"])
    if c["outcome"] == "no data":
        return f"No verdict for {lrn} against {ref}: {c['reason']}."
    pct = _pct(diff, float(c["mean_reference"]))
    size = (f"{pct} {'lower' if diff < 0 else 'higher'}" if pct else
            f"{fmt(abs(diff))} {'lower' if diff < 0 else 'higher'}")
    seeds = f"{c['n_seeds']} seed{'s' if c['n_seeds'] != 1 else ''}"
    if c.get("test") == "survey":
        seeds += " (re-splits of one survey: corrected resampled t test)"
    if c["outcome"] == "too few seeds":
        return (f"No verdict for {lrn} against {ref}: {c['reason']} (observed difference "
                f"{fmt(diff)} over {seeds}).")
    p = fmt_p(float(c["p_adjusted"]))
    p = p if p.startswith("<") else f"= {p}"
    adj = (f"Holm-adjusted over {c['n_family']} comparisons p {p}" if int(c["n_family"]) > 1
           else f"p {p}")
    # the losses' unit: nats for a classification target, squared error for a regression
    # one (``Comparison.unit``); a prevalence error is a share, said without a unit
    unit = str(c.get("unit", ""))
    nums = (f"difference {fmt(diff)}{' ' + unit if unit else ''}, 95% CI "
            f"[{fmt(c['ci_lo'])}, {fmt(c['ci_hi'])}] over {seeds}, {adj}")
    head = f"{lrn}'s {name} is {size} than {ref}'s ({nums})"
    if c["outcome"] == "beats":
        return f"{head}; it beats {ref}."
    tail = f"; it does not beat {ref}"
    if c["reference_name"] == REFERENCE and is_method(str(c["learner_role"])):
        tail += ": it has not earned its place"
    if c["outcome"] == "worse":
        tail += " (it is significantly worse)"
    else:
        tail += (f" (this many seeds detect a difference of {fmt(c['mdd'])} or more with 80% "
                 "power)")
    return head + tail + "."


def decide(fields: dict[str, Any], p_adj: float, n_family: int, alpha: float,
            min_seeds: int) -> Comparison:
    """Outcome and verdict from the test's numbers and the family-adjusted p-value."""
    f = dict(fields, p_adjusted=float(p_adj), n_family=int(n_family))
    if f["outcome"] != "no data":
        if int(f["n_seeds"]) < min_seeds:
            f["outcome"] = "too few seeds"
            f["reason"] = (f"{f['n_seeds']} paired seed{'s' if f['n_seeds'] != 1 else ''}, "
                           f"and the paired test over seeds is calibrated from {min_seeds}; "
                           f"run at least {min_seeds} seeds")
        elif p_adj < alpha and float(f["mean_diff"]) < 0:
            f["outcome"], f["reason"] = "beats", ""
        elif p_adj < alpha and float(f["mean_diff"]) > 0:
            f["outcome"], f["reason"] = "worse", ""
        else:
            f["outcome"], f["reason"] = "no difference", ""
    return Comparison(**f, verdict=_verdict(f, str(f["metric"]).replace("_", " ")))


def overall_verdict(comparisons: Sequence[Comparison], scores: pd.DataFrame,
                    failed: Sequence[str] = (), baselines: Sequence[Comparison] = ()) -> str:
    """The scenario-level sentence: does any meta-learner beat partial pooling? ``failed``:
    labels or registry names of learners whose every run failed (stated, never a crash)."""
    names = names_by_label(scores)
    if REFERENCE not in set(names.values()):
        if REFERENCE in failed or any(f.startswith(REFERENCE) for f in failed):
            return ("No verdict: partial pooling, the reference every meta-learner must beat, "
                    "failed on every seed (see the failed runs), so nothing can be compared "
                    "with it.")
        return ("No verdict: partial pooling was not run in this scenario, so no meta-learner "
                "can be shown to have earned its place; add partial_pooling to the learners.")
    vs_pp = [c for c in comparisons if c.reference_name == REFERENCE]
    if not vs_pp:
        return "No meta-learner was run in this scenario; only baselines are compared."
    judged = [c for c in vs_pp if c.outcome in ("beats", "worse", "no difference")]
    if not judged:
        reasons = sorted({c.reason for c in vs_pp})
        return f"No verdict: {'; '.join(reasons)}."
    winners = [c.learner for c in judged if c.outcome == "beats"]
    worse = [c.learner for c in judged if c.outcome == "worse"]
    unjudged = [c.learner for c in vs_pp if c not in judged]
    best = best_baseline(scores)
    seeds = min(c.n_seeds for c in judged)
    tail = (f" No verdict for {', '.join(unjudged)} (too few shared seeds or no data)."
            if unjudged else "")
    best_txt = _best_baseline_sentence(comparisons, best, names, baselines)
    if not winners:
        worse_txt = (f"; {', '.join(worse)} {'is' if len(worse) == 1 else 'are'} significantly "
                     "worse" if worse else "")
        return (f"No meta-learner beats partial pooling ({len(judged)} compared over "
                f"{seeds}+ seeds, Holm-adjusted): none has earned its place on this "
                f"scenario{worse_txt}.{best_txt}{tail}")
    return (f"{', '.join(winners)} beat{'s' if len(winners) == 1 else ''} partial pooling "
            f"({len(winners)} of {len(judged)} meta-learners, over {seeds}+ seeds, "
            f"Holm-adjusted).{best_txt}{tail}")


def _best_baseline_sentence(comparisons: Sequence[Comparison], best: str | None,
                            names: dict[str, str], baselines: Sequence[Comparison] = ()) -> str:
    """Where the best baseline is not partial pooling, what the meta-learners did against it
    (it is then the stronger reference)."""
    if best is None or names.get(best) == REFERENCE:
        return ""
    best_lead = ""        # the baselines compared with each other (baseline_comparisons)
    for c in baselines:   # best vs partial pooling, or partial pooling vs best (sign flipped)
        flip = c.learner_name == REFERENCE and c.reference == best
        if c.outcome == "no data" or not (flip or (c.learner == best
                                                   and c.reference_name == REFERENCE)):
            continue
        outcome = {"beats": "worse", "worse": "beats"}.get(c.outcome, c.outcome) if flip \
            else c.outcome
        sure = {"beats": "a significant lead", "no difference": "a lead within the noise",
                "worse": "no lead"}.get(outcome, f"no verdict: {outcome}")
        best_lead = (f" (its difference from partial pooling: "
                     f"{fmt(-c.mean_diff if flip else c.mean_diff)}, p {fmt_p(c.p_adjusted)}: "
                     f"{sure})")
        break
    vs = [c for c in comparisons if c.reference == best
          and c.outcome in ("beats", "worse", "no difference")]
    if not vs:
        return f" The best baseline here is {best}{best_lead}."
    beat = [c.learner for c in vs if c.outcome == "beats"]
    worse = [c.learner for c in vs if c.outcome == "worse"]
    said = (f"{', '.join(beat)} beat{'s' if len(beat) == 1 else ''} it" if beat
            else "no meta-learner beats it")
    if worse:
        said += f"; {', '.join(worse)} {'is' if len(worse) == 1 else 'are'} significantly worse"
    return f" The best baseline here is {best}{best_lead}, the stronger reference: {said}."


#: what the report says about each test (which was used, and why)
TEST_TEXT = {
    "seed": "paired t test over seeds: each seed is an independently simulated society, so "
            "per-seed mean differences are independent replicates",
    "survey": "corrected resampled t test over seeds (Nadeau & Bengio 2003): on a real survey a "
              "seed only re-splits the same respondents into support and query sets, so seeds "
              "are not independent; the variance of the per-seed mean differences is "
              "inflated by (1/J + n_query/n_support) before the t test"}


def naive_flags(comparisons: Sequence[Comparison]) -> dict[str, list[str]]:
    """label -> ["worse than persistence", ...]: the naive baselines a learner is
    significantly worse than (Holm-adjusted paired test)."""
    flags: dict[str, list[str]] = {}
    for c in comparisons:
        if is_naive(c.reference_role) and c.outcome == "worse":
            flags.setdefault(c.learner, []).append(f"worse than {c.reference}")
    return flags


NAIVE_TEXT = {"persistence": "each group's share at its last revealed wave",
              "group_mean": "each group's mean over the revealed waves, updated by its K "
                            "support respondents"}


def naive_sentence(comparisons: Sequence[Comparison]) -> str:
    """One sentence naming the learners worse than a naive baseline ("" when none is, or
    none was run)."""
    by_ref: dict[str, list[str]] = {}
    refs: dict[str, str] = {}
    for c in comparisons:
        if is_naive(c.reference_role):
            refs[c.reference] = c.reference_name
            if c.outcome == "worse":
                by_ref.setdefault(c.reference, []).append(c.learner)
    if not refs:
        return ""
    if not by_ref:
        return (" No learner is significantly worse than the naive baseline"
                f"{'s' if len(refs) > 1 else ''} ({', '.join(refs)}).")
    parts = [f"{', '.join(who)} {'is' if len(who) == 1 else 'are'} significantly worse than "
             f"{ref} ({NAIVE_TEXT.get(refs[ref], 'a naive baseline')})"
             for ref, who in by_ref.items()]
    return " Naive baselines: " + "; ".join(parts) + "."


__all__ = ["NAIVE_TEXT", "TEST_TEXT", "Comparison", "decide", "fmt", "fmt_p", "naive_flags",
           "naive_sentence", "overall_verdict"]
