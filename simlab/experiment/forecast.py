"""Fit a learner on every revealed wave and predict each group's prevalence at the next one.

What a notebook (or ``simlab forecast SCENARIO --learner NAME``) asks once a comparison has
picked a winner: "what does it say about the wave after the last one?". The learner is built as
the sweep builds it (the scenario's hyperparameters, with the values tuning chose when a results
store holds a tuned run of it), trained exactly as the prequential protocol trains it
(:func:`~simlab.evaluation.protocol.iter_evaluate` over the whole stream: warm-up, then every
wave scored and revealed; its track record is returned too), then given the last wave as the
protocol would give the next meta-fit (unless the scenario is frozen, ``online = false``), on
the protocol's episodes (:func:`~simlab.evaluation.protocol.run_budgets`: K drawn from the
shots grid). With ``episodes.shots = "matched"`` the protocol trains one model per K, one after
the other on the same learner, so the learner it leaves is the largest K's, meta-trained on
K-shot episodes; that is the K the forecast adapts with, and its last meta-fit draws K-shot
episodes too (one learner cannot hold a model per K; refit with a smaller shots grid to
forecast at a smaller K).

An incremental learner (``Learner.incremental``: partial pooling, the dynamic model, the
changepoint wrappers) keeps its own state of the past and is shown each wave once, so it gets
no meta-fit on the last wave: the forecast adapts it on that wave's respondents instead, as the
protocol scored that wave (meta-fitting on the wave and then adapting on its respondents again
would count them twice: the dynamic model's group effect already holds them).

The next wave has no respondents yet, so each group's forecast is the learner adapted on the
group's K most recent respondents (its last-wave support, K the largest of the shots grid) and
predicting the group's population: its census / population cells where the stream has them
(poststratified, MRP), else the features of all its last-wave respondents (the population as
last sampled). Pass ``next_wave`` (one Task per group: the new wave's first K respondents) to
adapt on new respondents instead. The 90% interval is where the observed share of n new
respondents drawn from that population would fall if the learner's probabilities hold (n: the
group's respondents in the wave it adapted on): each is a draw with probability the estimate,
so the share is Binomial(n, estimate) / n (per class for a multiclass target; exact quantiles,
``poststrat.predictive_interval`` with equal probabilities). Like the protocol's, it leaves out
the learner's uncertainty about its own parameters.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from simlab.errors import ScenarioError, StoreError
from simlab.evaluation import poststrat
from simlab.evaluation.protocol import (iter_evaluate, online_tasks, revealed_tasks, run_budgets,
                                       scored_step, seal_query)
from simlab.evaluation.result import RunResult
from simlab.experiment.config import Scenario, load_scenario
from simlab.experiment.store import Store
from simlab.learners.base import Learner
from simlab.learners.registry import make_learner
from simlab.settings import ProtocolSettings
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task

if TYPE_CHECKING:  # pragma: no cover
    from simlab.experiment.survey_scenario import SurveyScenario

#: the forecast's columns (one row per group, per class for a multiclass target)
FORECAST_COLUMNS = ["group", "category", "estimate", "lo", "hi", "last_observed", "n",
                    "wave", "wave_time", "K"]


def tuned_params(store: Store | str | Path | None, scenario: str, learner: str
                 ) -> dict[str, Any]:
    """The hyperparameters tuning chose for ``learner`` (a label of the store's runs) in the
    latest comparison of ``scenario``; {} without a store, a run or a tuning result."""
    if store is None:
        return {}
    if not isinstance(store, Store):
        if not Path(store).exists():
            raise StoreError(f"no results store at {store}; pass the --db of the sweep that "
                             "tuned the learner, or none to use the scenario's settings")
        with Store(store, create=False) as db:
            return tuned_params(db, scenario, learner)
    runs = store.frames()["runs"]
    mine = runs[(runs["scenario"] == scenario) & (runs["learner"] == learner)
                & runs["status"].isin(["ok", "diverged"])]
    if mine.empty:
        return {}
    return dict(store.run_info(int(mine["run_id"].max()))["tuned"])


def forecast(scenario: Scenario | SurveyScenario | str | Path, learner: str | Learner, *,
             seed: int = 0,
             store: Store | str | Path | None = None, next_wave: Sequence[Task] | None = None,
             device: str = "cpu", **hyperparameters: Any) -> pd.DataFrame:
    """Each group's predicted prevalence at the wave after the stream's last, with its 90%
    interval (see the module docstring), as a frame (``FORECAST_COLUMNS``; ``attrs``: the
    hyperparameters used and where they came from, and the protocol's ``RunResult`` of the
    fit as ``attrs["run"]``).

    ``scenario``: a scenario (file, name or object); ``learner``: a registry name (or a built
    ``Learner``, used as it is); ``seed``: the stream and the learner's seed; ``store``: a
    results store whose tuned run of this learner on this scenario supplies the tuned values
    (none: the scenario's settings); ``hyperparameters``: overrides on top of both."""
    sc = load_scenario(scenario)
    if isinstance(learner, Learner):
        model, tuned = learner, {}
    else:
        tuned = tuned_params(store, sc.name, learner)
        model = make_learner(learner, **{**sc.hyperparameters(learner), **tuned,
                                         **hyperparameters})
    model.validate()
    stream = sc.stream(seed)
    settings = sc.protocol()
    run = _fit(model, stream, settings, seed, device)
    last = list(stream.waves[-1])
    if settings.online and not (model.incremental and next_wave is None):
        # the meta-fit the protocol makes after a wave, on its episodes ("matched": the largest
        # K's run); an incremental learner is adapted on the last wave instead (module doc)
        budget = run_budgets(settings)[-1][0]
        model.meta_fit(revealed_tasks(online_tasks(model, stream, len(stream) - 1),
                                      model.uses_oracle), budget)
    k = max(settings.shots)
    tasks = _forecast_tasks(last if next_wave is None else _check_next(list(next_wave), last),
                            k)
    frame = _predict(model, tasks, scored_step(model, list(settings.steps)), device,
                     len(stream))
    times = [str(t) for t in stream.meta.get("times", [])]
    frame["wave"] = len(stream)
    frame["wave_time"] = f"after {times[-1]}" if times else ""
    frame["K"] = k
    frame.attrs.update(hyperparameters=model.hyperparameters(), run=run,
                       source=f"tuned {sorted(tuned)} (store)" if tuned
                       else "the scenario's settings")
    return frame[FORECAST_COLUMNS]


def _fit(model: Learner, stream: Any, settings: ProtocolSettings, seed: int,
         device: str) -> RunResult:
    """Train ``model`` as the protocol does over the whole stream; its result."""
    waves = iter_evaluate(model, stream, settings, seed=seed, device=device)
    while True:
        try:
            next(waves)
        except StopIteration as done:
            return done.value


def _check_next(tasks: list[Task], last: Sequence[Task]) -> list[Task]:
    """``next_wave`` must be tasks like the stream's: one clear error naming what differs."""
    if not tasks:
        raise ScenarioError("forecast: next_wave has no tasks; give one Task per group")
    want = last[0]
    for i, t in enumerate(tasks):
        where = f"forecast: next_wave task {i} (group {t.info.get('group', i)!r})"
        if (t.target, t.n_features, t.n_classes) != (want.target, want.n_features,
                                                    want.n_classes):
            raise ScenarioError(
                f"{where} has target={t.target!r}, {t.n_features} features, {t.n_classes} "
                f"classes, but the stream's tasks have target={want.target!r}, "
                f"{want.n_features} features, {want.n_classes} classes; encode the new "
                "respondents as the stream's were")
        if t.shots < 1:
            raise ScenarioError(f"{where} has no support respondents; give each group at "
                                "least one new respondent to adapt on")
    return tasks


def _forecast_tasks(tasks: list[Task], k: int) -> list[Task]:
    """One task per group: support = K respondents to adapt on (the last wave's K support
    respondents, or the new wave's), query = where to predict (every respondent of the group
    in that wave; the cells, if any, are used instead by ``_predict``)."""
    out = []
    for t in tasks:
        cut = t.with_shots(min(k, t.shots))
        x = np.concatenate([t.x_support, t.x_query])
        y = np.concatenate([t.y_support, t.y_query])
        w = np.concatenate([np.ones(t.shots) if t.w_support is None else t.w_support,
                            np.ones(t.n_query) if t.w_query is None else t.w_query])
        out.append(dataclasses.replace(cut, x_query=x, y_query=y, w_query=w, oracle_query=None,
                                       ceiling_query=None))
    return out


def _predict(model: Learner, tasks: list[Task], step: int, device: str, wave: int
             ) -> pd.DataFrame:
    """Adapt on each task's support at ``step`` and predict its query (or its cells): each
    group's estimate, its 90% interval for n new respondents (module doc) and the share last
    observed. ``wave``: the forecast wave's index."""
    batch = TaskBatch.from_tasks(tasks)
    sealed = seal_query(batch.to(device), model.uses_oracle)
    adapted = model.adapt(sealed, [step])
    pred = adapted.predict(sealed).detach().to("cpu").double().numpy()[0]
    cells = poststrat.wave_cells(tasks)
    estimate = (None if cells is None else
                poststrat.predict_prevalence(adapted, sealed, cells)[0])
    weight = (batch.w_query * batch.q_mask).double().numpy()
    observed = batch.y_query.double().numpy()
    if batch.target == "multiclass":
        observed = np.eye(batch.n_classes)[observed.clip(0).astype(np.int64)]
    groups = [t.info.get("group", i) for i, t in enumerate(tasks)]
    rows = poststrat.group_estimates(groups, wave, 0, pred, estimate, observed, weight,
                                     batch.target, None)
    # n new respondents, each a draw with probability the estimate: Binomial(n, p) / n
    est = rows["estimate"].reshape(len(tasks), -1)
    real = (weight > 0).astype(np.float64)
    fresh = np.where(real[..., None] > 0, est[:, None, :], 0.0)
    lo, hi = poststrat.predictive_interval(
        fresh if batch.target == "multiclass" else fresh[..., 0], real, batch.target,
        np.random.default_rng([wave, 0]))
    rows["lo"], rows["hi"] = lo.ravel(), hi.ravel()
    return pd.DataFrame(rows).rename(columns={"observed": "last_observed"})


__all__ = ["FORECAST_COLUMNS", "forecast", "tuned_params"]
