"""The statistics of a comparison, by job (this module only re-exports them for old imports):

* :mod:`simlab.evaluation.inference`: seeds as the unit of inference; t intervals, the paired
  t test with its detectable difference, Holm's adjustment, the corrected resampled t test of
  a real survey;
* :mod:`simlab.evaluation.frames`: store frames to per-run summaries, the leaderboard and the
  per-wave scores, and each label's registry name and role;
* :mod:`simlab.evaluation.comparisons`: who is compared with whom, in Holm families;
* :mod:`simlab.evaluation.verdicts`: the number format, outcomes and their sentences;
* :mod:`simlab.evaluation.recovery`: recovery after shifts, censored seeds kept;
* :mod:`simlab.learners.roles`: each learner's declared role (meta, baseline, naive, oracle,
  reference), which decides who is compared with whom.

New code imports from those modules; the names here keep old imports (notebooks, scripts)
working.
"""
from __future__ import annotations

from simlab.evaluation.comparisons import (
    baseline_comparisons,
    compare,
    compare_all,
    naive_comparisons,
)
from simlab.evaluation.frames import (
    BOUNDS,
    LEADERBOARD_COLUMNS,
    best_baseline,
    comparison_metric,
    label_names,
    leaderboard,
    parse_hyperparameters,
    run_summaries,
    wave_scores,
)
from simlab.evaluation.inference import (
    ALPHA,
    MIN_SEEDS,
    POWER,
    Interval,
    corrected_t_test,
    holm,
    seed_interval,
    seed_means,
    seed_t_test,
    survey_ratio,
)
from simlab.evaluation.recovery import (
    RECOVERY_COLUMNS,
    censored_median,
    recovery_by_shift,
    recovery_overall,
    shift_effects,
)
from simlab.evaluation.verdicts import (
    TEST_TEXT,
    Comparison,
    fmt,
    fmt_p,
    naive_flags,
    naive_sentence,
    overall_verdict,
)
from simlab.learners.roles import ORACLE, REFERENCE

__all__ = ["ALPHA", "BOUNDS", "LEADERBOARD_COLUMNS", "MIN_SEEDS", "ORACLE",
           "POWER", "RECOVERY_COLUMNS", "REFERENCE", "TEST_TEXT", "Comparison",
           "Interval", "baseline_comparisons",
           "best_baseline", "censored_median", "compare", "compare_all", "comparison_metric",
           "corrected_t_test", "fmt", "fmt_p", "holm", "label_names", "leaderboard",
           "naive_comparisons", "naive_flags", "naive_sentence", "overall_verdict",
           "parse_hyperparameters", "recovery_by_shift", "recovery_overall", "run_summaries",
           "seed_interval", "seed_means", "seed_t_test", "shift_effects", "survey_ratio",
           "wave_scores"]
