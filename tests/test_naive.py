"""Naive baselines (persistence, group_mean) and the "worse than persistence" flag (issue 24,
item 3)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from simlab.evaluation.result import SHIFT_COLUMNS
from simlab.evaluation.statistics import (is_baseline, naive_comparisons, naive_flags,
                                          naive_sentence)
from simlab.learners.base import Budget, TaskSpec
from simlab.learners.conformance import check_learner
from simlab.learners.registry import learner_class, make_learner
from simlab.report import build_report
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task

from helpers.frames import fake_runs, fake_scores


def _task(group: int, wave: int, y_support, y_query) -> Task:
    ys, yq = np.asarray(y_support, np.float32), np.asarray(y_query, np.float32)
    return Task(np.zeros((len(ys), 2), np.float32), ys, np.zeros((len(yq), 2), np.float32), yq,
                "binary", info={"group": group, "group_id": group, "wave": wave})


def _fit(name: str) -> object:
    learner = make_learner(name, prior_strength=1.0)
    learner.setup(TaskSpec("binary", 2), seed=0)
    # group 0: 3/4 at wave 0, 1/4 at wave 1; group 1: 2/4 at wave 1
    learner.meta_fit([_task(0, 0, [1, 1], [1, 0])], Budget(1, 1))
    learner.meta_fit([_task(0, 1, [0, 0], [1, 0]), _task(1, 1, [1, 0], [1, 0])], Budget(1, 1))
    return learner


@pytest.mark.parametrize("name", ["persistence", "group_mean"])
def test_registered_and_conforming(name: str) -> None:
    assert set(check_learner(learner_class(name)).values()) == {"ok"}
    assert is_baseline(name)


def test_persistence_predicts_the_last_wave_share_smoothed() -> None:
    learner = _fit("persistence")
    batch = TaskBatch.from_tasks([_task(0, 2, [1, 1], [0, 0, 0]), _task(7, 2, [1, 1], [0])])
    pred = learner.adapt(batch, [0, 3]).predict(batch)
    pool = 3 / 8                                  # wave 1, both groups
    seen = (1 + pool) / (4 + 1)                   # group 0's wave-1 share, one pseudo-respondent
    unseen = (2 + pool) / (2 + 1)                 # never seen: its support, smoothed
    assert pred.shape == (2, 2, 3)
    np.testing.assert_allclose(pred[:, 0].numpy(), seen, rtol=1e-6)
    np.testing.assert_allclose(pred[:, 1, 0].numpy(), unseen, rtol=1e-6)


def test_group_mean_step0_is_the_history_and_later_steps_add_the_support() -> None:
    learner = _fit("group_mean")
    batch = TaskBatch.from_tasks([_task(0, 2, [1, 1], [0])])
    pred = learner.adapt(batch, [0, 1]).predict(batch)[:, 0, 0].numpy()
    history = 4 / 8                               # group 0, waves 0 and 1 pooled
    np.testing.assert_allclose(pred, [history, (2 + history) / 3], rtol=1e-6)


def test_a_learner_worse_than_persistence_is_flagged() -> None:
    scores = fake_scores({"persistence": 0.0, "finetune": 0.1, "maml": -0.05, "partial_pooling":
                      0.0})
    comps = naive_comparisons(scores, "loss")
    assert {c.learner for c in comps} == {"finetune", "maml", "partial_pooling"}
    assert naive_flags(comps) == {"finetune": ["worse than persistence"]}
    assert "finetune is significantly worse than persistence" in naive_sentence(comps)
    assert naive_sentence(naive_comparisons(fake_scores({"maml": 0.0}), "loss")) == ""


def test_references_are_never_tested_against_the_naive_baselines() -> None:
    scores = fake_scores({"persistence": 0.0, "maml": 0.05, "floor": 0.1, "oracle": -0.1})
    assert {c.learner for c in naive_comparisons(scores, "loss")} == {"maml"}


def test_the_report_flags_a_learner_worse_than_persistence(tmp_path) -> None:
    runs, mets, _ = fake_runs("plain", False, None)
    runs, mets = pd.DataFrame(runs, columns=["run_id", "scenario", "seed", "learner",
                                             "hyperparameters", "status", "error", "seconds"]), \
        pd.concat(mets, ignore_index=True)
    pp = runs[runs["learner"] == "partial_pooling"]
    naive = pp.assign(learner="persistence", run_id=pp["run_id"] + "-p")
    m = mets[mets["run_id"].isin(pp["run_id"])].copy()
    m["value"] = np.where(m["metric"] == "loss", m["value"] - 0.04, m["value"])
    m["run_id"] = m["run_id"] + "-p"
    paths = build_report(pd.concat([runs, naive]), pd.concat([mets, m]),
                         pd.DataFrame(columns=["scenario", "seed"] + SHIFT_COLUMNS), tmp_path,
                         "naive", figures=False)
    md = paths["markdown"].read_text()
    assert "significantly worse than persistence" in md
    assert "worse than persistence" in md.split("| scratch |")[1].splitlines()[0]


def test_the_best_baselines_lead_over_partial_pooling_is_tested() -> None:
    from simlab.evaluation.statistics import baseline_comparisons, compare_all, overall_verdict

    scores = fake_scores({"finetune": -0.05, "partial_pooling": 0.0, "scratch": 0.01,
                      "maml": 0.0})
    among = baseline_comparisons(scores, "loss")
    assert {(c.learner, c.reference) for c in among} == {("finetune", "partial_pooling"),
                                                         ("scratch", "partial_pooling")}
    text = overall_verdict(compare_all(scores, "loss"), scores, (), among)
    assert "The best baseline here is finetune (its difference from partial pooling: -0.0" \
        in text and "a significant lead" in text
    assert "its difference" not in overall_verdict(compare_all(scores, "loss"), scores)
