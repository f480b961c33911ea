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

The next wave has no respondents yet, so each group's forecast is the learner adapted on the
group's K most recent respondents (its last-wave support, K the largest of the shots grid) and
predicting the group's population: its census / population cells where the stream has them
(poststratified, MRP), else the features of all its last-wave respondents (the population as
last sampled). Pass ``next_wave`` (one Task per group: the new wave's first K respondents) to
adapt on new respondents instead. The interval is the protocol's
(:func:`~simlab.evaluation.poststrat.predictive_interval`): where the next wave's observed share
of that many respondents would fall if the learner's probabilities hold.
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
    if settings.online:      # the meta-fit the protocol makes after a wave, on its episodes
        budget = run_budgets(settings)[-1][0]           # "matched": the largest K's run
        model.meta_fit(revealed_tasks(online_tasks(model, stream, len(stream) - 1),
                                      model.uses_oracle), budget)
    k = max(settings.shots)
    tasks = _forecast_tasks(last if next_wave is None else list(next_wave), k)
    frame = _predict(model, tasks, scored_step(model, list(settings.steps)), device)
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


def _forecast_tasks(tasks: list[Task], k: int) -> list[Task]:
    """One task per group: support = K respondents to adapt on (the last wave's K support
    respondents, or the new wave's), query = where to predict (every respondent of the group
    in that wave; the cells, if any, are used instead by ``_predict``)."""
    if not tasks:
        raise ScenarioError("forecast: next_wave has no tasks; give one Task per group")
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


def _predict(model: Learner, tasks: list[Task], step: int, device: str) -> pd.DataFrame:
    """Adapt on each task's support at ``step`` and predict its query (or its cells)."""
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
    rows = poststrat.group_estimates(groups, int(tasks[0].info.get("wave", -1)), 0, pred,
                                     estimate, observed, weight, batch.target, None)
    frame = pd.DataFrame(rows).rename(columns={"observed": "last_observed"})
    return frame


__all__ = ["FORECAST_COLUMNS", "forecast", "tuned_params"]
