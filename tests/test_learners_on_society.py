"""Every learner adapts usefully on a simulated scenario's tasks (issue: learners, correctness).

Learners meta-fit on the first waves of the default opinion scenario and adapt to a later wave.
Gradient-based learners and baselines must beat their own 0-step prediction after one inner step
on the full support set; the metric learners (relation, prototypical networks) have no inner
steps, so they must beat the support set's base rate instead; MAML must beat from-scratch at K=5.
"""
from __future__ import annotations

import pytest
import torch

import simlab
from simlab.learners import Budget, TaskSpec
from simlab.learners.losses import task_loss
from simlab.tasks.batch import TaskBatch

GRADIENT = ["scratch", "finetune", "partial_pooling", "maml", "fomaml", "metasgd", "anil",
            "reptile", "meta_lstm"]
METRIC = ["relation", "protonet"]


@pytest.fixture(scope="module")
def waves():
    torch.set_num_threads(1)
    stream = simlab.load_scenario("scenarios/opinion_shift.toml").stream(seed=0, cache=False)
    return stream.tasks(0, 8), stream.waves[8]


def query_loss(name: str, waves, shots: int, steps: list[int], iterations: int = 60
               ) -> torch.Tensor:
    """Mean query log loss per requested step count after meta-fitting on the past waves."""
    train, test = waves
    batch = TaskBatch.from_tasks([t.with_shots(shots) for t in test])
    learner = simlab.make_learner(name)
    learner.setup(TaskSpec.of(train[0]), seed=0)
    learner.meta_fit(train, Budget(iterations=iterations, meta_batch=16))
    p = learner.adapt(batch, steps).predict(batch)
    logits = torch.logit(p.clamp(1e-6, 1 - 1e-6)).unsqueeze(-1)
    return torch.stack([task_loss(lg, batch.y_query, "binary").mean() for lg in logits])


@pytest.mark.parametrize("name", GRADIENT)
def test_adapting_beats_the_zero_step_prediction(name, waves):
    before, after = query_loss(name, waves, shots=20, steps=[0, 1])
    assert after < before - 1e-4, f"{name}: {after:.4f} after 1 step vs {before:.4f} at 0 steps"


@pytest.mark.parametrize("name", METRIC)
def test_metric_learners_beat_the_support_base_rate(name, waves):
    loss = query_loss(name, waves, shots=20, steps=[0], iterations=200)[0]
    batch = TaskBatch.from_tasks(waves[1])
    rate = batch.y_support.mean(1, keepdim=True).clamp(0.05, 0.95).expand_as(batch.y_query)
    base = task_loss(torch.logit(rate).unsqueeze(-1), batch.y_query, "binary").mean()
    assert loss < base, f"{name}: {loss:.4f} vs base rate {base:.4f}"


def test_maml_beats_scratch_at_five_shots(waves):
    maml = query_loss("maml", waves, shots=5, steps=[1])[0]
    scratch = query_loss("scratch", waves, shots=5, steps=[5])[0]
    assert maml < scratch - 0.02, f"MAML {maml:.4f} vs scratch {scratch:.4f}"
