"""The simulated twin of a real survey: a society shaped like the survey, where the truth is known.

A user who wants to know which few-shot method to trust on a real survey rehearses on a
simulated scenario of the same shape, runs both, and asks whether the ranking of methods on
the twin (where the oracle is known) carries over to the survey
(:mod:`simlab.report.twin`). :func:`make_twin` matches, from a
:class:`~simlab.experiment.survey_scenario.SurveyScenario`:

* **groups and waves**: one community per survey group (a planted-partition graph, Holland,
  Laskey & Leinhardt 1983), one survey wave per time value, ``every`` ticks apart (the median
  gap between time values, e.g. 2 for biennial GSS years);
* **respondents per cell**: the survey's support size K and its typical query size Q;
* **features**: the same number, and the same split into 0/1 and continuous columns: observed
  traits and ego-network answers first, then irrelevant distractors (``survey.distractors``,
  ``survey.binary_distractors`` with each P(1) taken from a survey indicator column);
* **target**: a binary survey target -> the opinion family (Hegselmann-Krause bounded
  confidence with Friedkin-Johnsen anchoring) with a logistic response; a numeric target ->
  its continuous (Gaussian) response;
* **prevalence per wave and per group**: on the link scale (logit for binary) the intercept of
  community g in wave w is ``a_g + b_w`` (plus its own trend, below); ``a_g`` is set at
  tick 1 by a regime shock that never switches (so it is the initial condition, not a
  shift), and each later wave gets an abrupt shock adding ``b_w - b_{w-1}``;
* **signal strength**: the behaviour coefficients and the opinion effect are scaled by one
  factor s so that a pooled (logistic) regression on the twin's tasks explains as much as on
  the survey's (McFadden's pseudo-R^2 for binary targets, McFadden 1974; R^2 for numeric).

* **effect heterogeneity**: how far the features' effects differ between groups
  (:func:`effect_spread`: per-group least-squares coefficients, their between-group variance
  less the sampling variance, as in a method-of-moments random-coefficients estimate, Swamy
  1970), matched by the population's ``heterogeneity``;
* **group x time trends**: each group's fitted change of prevalence over the survey's span
  (:func:`group_trends`: least squares on the cells, Cochran's Q that the groups' slopes are
  equal, their between-group spread net of sampling). Community g gets its own trend c_g on
  the link scale (the wave shocks then carry one delta per community), calibrated to the
  survey's slopes shrunk towards the common one (:func:`target_trends`), so parallel trends
  measured with noise give a twin whose groups move alike. When the survey's groups diverge
  and a twin misses them (``match_trends=False``, an old twin file), :func:`trend_flag` words
  the caution the side-by-side report puts first in its verdict;
* **design**: which groups each wave surveys (``survey.wave_groups``: held-out groups of a
  ``new_groups`` survey, cells the survey lacks); a ``replicates`` survey's waves are
  exchangeable, so the twin holds one level in every wave.

Calibration alternates: generate the twin's stream, compare the expected prevalence (mean of
the oracle over query respondents) per wave and per group, the groups' trends, the pooled R^2
and the effect spread with the survey's, correct ``b_w`` (level and time), ``a_g`` (deviations
between groups), c_g, s and the heterogeneity, for ``rounds`` rounds.
:meth:`TwinFit.fidelity` then lists every matched quantity, survey vs twin, with its
tolerance, and flags the misses; they are written in the twin's file and shown in the
side-by-side report.
"""
from simlab.experiment.twin.calibrate import TwinFit, fit_twin, make_twin, target_trends
from simlab.experiment.twin.fidelity import fidelity_rows, measure_twin, trend_flag, trend_rows
from simlab.experiment.twin.measure import effect_spread, pooled_r2
from simlab.experiment.twin.run import TwinRun, run_twin
from simlab.experiment.twin.scenario import twin_config, twin_features
from simlab.experiment.twin.shape import SurveyShape, survey_shape
from simlab.experiment.twin.trends import GroupTrends, group_trends, link_slopes
from simlab.experiment.twin.write import dumps_toml, load_survey, write_fit, write_twin

__all__ = ["GroupTrends", "SurveyShape", "TwinFit", "TwinRun", "dumps_toml", "effect_spread",
           "fidelity_rows", "fit_twin", "group_trends", "link_slopes", "load_survey", "make_twin",
           "measure_twin", "pooled_r2", "run_twin", "survey_shape", "target_trends", "trend_flag",
           "trend_rows", "twin_config", "twin_features", "write_fit", "write_twin"]
