"""Relation Network (Sung et al. 2018) and Prototypical Network (Snell et al. 2017)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simlab.learners import make_learner
from simlab.learners.base import Budget, TaskSpec
from simlab.learners.relation import EPS, ProtoNet, RelationNet, prototypes
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task

torch.set_num_threads(1)
SMALL = {"hidden": (16,), "embed_dim": 8}


def cluster_tasks(n: int, kind: str, n_classes: int = 3, k: int = 9, q: int = 15,
                  d: int = 2, seed: int = 0) -> list[Task]:
    """Each task draws its own class centres; respondents scatter around their class centre.
    Regression: y is a task-specific linear function of x."""
    rng = np.random.default_rng(seed)
    c = n_classes if kind == "multiclass" else 2
    out = []
    for _ in range(n):
        if kind == "regression":
            x = rng.normal(size=(k + q, d)).astype(np.float32)
            y = (x @ rng.normal(size=d) * 2).astype(np.float32)
        else:
            centres = rng.normal(scale=2.0, size=(c, d))
            lab = np.concatenate([np.arange(k) % c, rng.integers(0, c, q)])
            x = (centres[lab] + 0.7 * rng.normal(size=(k + q, d))).astype(np.float32)
            y = lab.astype(np.int64 if kind == "multiclass" else np.float32)
        out.append(Task(x[:k], y[:k], x[k:], y[k:], kind,  # type: ignore[arg-type]
                        n_classes=c if kind == "multiclass" else 2))
    return out


def made(cls: type, tasks: list[Task], seed: int = 0, **kw) -> RelationNet | ProtoNet:
    m = cls(**{**SMALL, **kw})
    m.setup(TaskSpec.of(tasks[0]), seed=seed)
    return m


def test_prototypes_weighted_sum_mean_and_empty_class() -> None:
    z = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]]])       # [1, 3, 2]
    y = torch.tensor([[0, 0, 2]])
    w = torch.tensor([[1.0, 3.0, 2.0]])
    cw = torch.nn.functional.one_hot(y, 3).float() * w.unsqueeze(-1)
    empty = torch.tensor([-7.0, 7.0])
    s = prototypes(z, cw, empty, mean=False)[0]
    m = prototypes(z, cw, empty, mean=True)[0]
    assert torch.allclose(s, torch.tensor([[10.0, 6.0], [-7.0, 7.0], [10.0, 8.0]]))
    assert torch.allclose(m, torch.tensor([[2.5, 1.5], [-7.0, 7.0], [5.0, 4.0]]))


@pytest.mark.parametrize("cls", [RelationNet, ProtoNet])
@pytest.mark.parametrize("kind,tail", [("binary", ()), ("multiclass", (3,)),
                                       ("regression", ())])
def test_shapes_probabilities_and_flat_curve(cls: type, kind: str, tail: tuple) -> None:
    tasks = cluster_tasks(4, kind)
    m = made(cls, tasks)
    batch = TaskBatch.from_tasks(tasks)
    pred = m.adapt(batch, [0, 1, 5]).predict(batch)
    assert pred.shape == (3, 4, 15, *tail)
    assert torch.isfinite(pred).all()
    assert torch.equal(pred[0], pred[2])                      # no inner steps: same for all
    if kind == "multiclass":
        assert torch.allclose(pred.sum(-1), torch.ones(3, 4, 15), atol=1e-5)
    if kind == "binary":
        assert ((pred >= 0) & (pred <= 1)).all()
    if kind == "regression":                                  # weighted mean of support y
        lo = batch.y_support.min(1).values[None, :, None]
        hi = batch.y_support.max(1).values[None, :, None]
        assert ((pred >= lo - 1e-5) & (pred <= hi + 1e-5)).all()


def test_relation_probabilities_are_normalised_scores() -> None:
    tasks = cluster_tasks(2, "binary")
    m = made(RelationNet, tasks)
    batch = TaskBatch.from_tasks(tasks)
    scores = m.outputs(m.params, batch, batch.x_query).detach()       # [B, Q, 2]
    assert ((scores > 0) & (scores < 1)).all()
    want = (scores[..., 1] + EPS) / (scores.sum(-1) + 2 * EPS)
    assert torch.allclose(m.adapt(batch, [0]).predict(batch)[0], want)


def test_protonet_is_softmax_over_negative_squared_distance() -> None:
    tasks = cluster_tasks(2, "multiclass")
    m = made(ProtoNet, tasks)
    batch = TaskBatch.from_tasks(tasks)
    with torch.no_grad():
        zs, zq = m.embed(m.params, batch.x_support), m.embed(m.params, batch.x_query)
        for b in range(2):                                    # per-task reference
            protos = torch.stack([zs[b][batch.y_support[b] == c].mean(0) for c in range(3)])
            d2 = torch.cdist(zq[b], protos) ** 2
            want = torch.softmax(-d2, -1)
            got = m.adapt(batch, [0]).predict(batch)[0, b]
            assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("cls", [RelationNet, ProtoNet])
def test_support_weights_weight_the_prototypes(cls: type) -> None:
    tasks = cluster_tasks(3, "binary")
    m = made(cls, tasks)
    batch = TaskBatch.from_tasks(tasks)
    base = m.adapt(batch, [0]).predict(batch)
    scaled = TaskBatch(**{**batch.__dict__, "w_support": 3.0 * batch.w_support})
    assert torch.allclose(m.adapt(scaled, [0]).predict(batch), base, atol=1e-6)
    w = batch.w_support.clone()
    w[:, 0] = 5.0
    assert not torch.allclose(
        m.adapt(TaskBatch(**{**batch.__dict__, "w_support": w}), [0]).predict(batch), base)


def test_protonet_zero_weight_equals_dropping_the_respondent() -> None:
    tasks = cluster_tasks(3, "multiclass")
    m = made(ProtoNet, tasks)
    batch = TaskBatch.from_tasks(tasks)
    w = batch.w_support.clone()
    w[:, -1] = 0.0
    zeroed = m.adapt(TaskBatch(**{**batch.__dict__, "w_support": w}), [0]).predict(batch)
    dropped = TaskBatch.from_tasks([t.with_shots(t.shots - 1) for t in tasks])
    assert torch.allclose(zeroed, m.adapt(dropped, [0]).predict(batch), atol=1e-6)


def accuracy(m, batch: TaskBatch) -> float:
    pred = m.adapt(batch, [0]).predict(batch)[0]
    label = pred.argmax(-1) if pred.dim() == 3 else (pred > 0.5).long()
    return float((label == batch.y_query.long()).float().mean())


@pytest.mark.parametrize("cls,kind", [(RelationNet, "binary"), (RelationNet, "multiclass"),
                                      (ProtoNet, "multiclass")])
def test_short_meta_fit_beats_chance(cls: type, kind: str) -> None:
    train, test = cluster_tasks(200, kind, seed=1), cluster_tasks(40, kind, seed=2)
    m = made(cls, train, meta_lr=3e-3)
    batch = TaskBatch.from_tasks(test)
    before = accuracy(m, batch)
    log = m.meta_fit(train, Budget(iterations=80, meta_batch=16))
    after = accuracy(m, batch)
    chance = 0.5 if kind == "binary" else 1 / 3
    assert log["iterations"] == 80 and math.isfinite(log["meta_loss"])
    assert after > chance + 0.3 and after >= before, (before, after)


@pytest.mark.parametrize("cls", [RelationNet, ProtoNet])
def test_short_meta_fit_regression_beats_support_mean(cls: type) -> None:
    train, test = cluster_tasks(200, "regression", seed=1), cluster_tasks(40, "regression",
                                                                          seed=2)
    m = made(cls, train, meta_lr=1e-2)
    batch = TaskBatch.from_tasks(test)
    m.meta_fit(train, Budget(iterations=80, meta_batch=16))
    mse = float(((m.adapt(batch, [0]).predict(batch)[0] - batch.y_query) ** 2).mean())
    baseline = float(((batch.y_support.mean(1, keepdim=True) - batch.y_query) ** 2).mean())
    assert mse < 0.6 * baseline, (mse, baseline)


@pytest.mark.parametrize("cls", [RelationNet, ProtoNet])
def test_determinism_and_frozen_adaptation(cls: type) -> None:
    tasks = cluster_tasks(20, "binary")
    batch = TaskBatch.from_tasks(tasks[:3])
    preds = []
    for _ in range(2):
        m = made(cls, tasks, seed=5)
        m.meta_fit(tasks, Budget(iterations=5, meta_batch=4))
        adapted = m.adapt(batch, [0])
        preds.append(adapted.predict(batch))
    assert torch.equal(preds[0], preds[1])
    m.meta_fit(tasks, Budget(iterations=5, meta_batch=4))    # later training does not change
    assert torch.equal(adapted.predict(batch), preds[1])     # an existing adaptation
    other = made(cls, tasks, seed=6)
    assert not torch.equal(other.adapt(batch, [0]).predict(batch), preds[0])


def test_registry_names() -> None:
    assert isinstance(make_learner("relation", pooling="mean"), RelationNet)
    assert isinstance(make_learner("protonet", embed_dim=4), ProtoNet)


@pytest.mark.parametrize("cls,field,value", [
    (RelationNet, "pooling", "max"), (RelationNet, "relation_hidden", (0,)),
    (RelationNet, "embed_dim", 0), (ProtoNet, "hidden", (-3,)), (ProtoNet, "meta_lr", -1.0),
    (ProtoNet, "grad_clip", 0.0), (ProtoNet, "meta_lr", float("nan"))])
def test_bad_hyperparameters_name_the_field(cls: type, field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"{field}="):
        cls(**{field: value}).setup(TaskSpec("binary", 2))


def test_user_errors_are_clear() -> None:
    tasks = cluster_tasks(3, "binary")
    batch = TaskBatch.from_tasks(tasks)
    with pytest.raises(ValueError, match="setup"):
        ProtoNet().meta_fit(tasks, Budget(iterations=1))
    m = made(RelationNet, cluster_tasks(3, "multiclass"))
    with pytest.raises(ValueError, match="target"):
        m.meta_fit(tasks, Budget(iterations=1))
    with pytest.raises(ValueError, match="target"):
        m.adapt(batch, [0])
    m = made(RelationNet, tasks)
    with pytest.raises(ValueError, match="steps"):
        m.adapt(batch, [])


# ---- calibration: metric scaling (TADAM) and the support class prior ----------------------


def rare_tasks(n: int, k: int = 5, q: int = 20, d: int = 4, seed: int = 0) -> list[Task]:
    """Logistic tasks with a rare positive class: intercept ~ N(-2, 0.8) per task (base rate
    ~0.17), weights scattered around a shared vector."""
    rng = np.random.default_rng(seed)
    w0 = np.random.default_rng(99).normal(size=d) / np.sqrt(d)
    out = []
    for _ in range(n):
        w, b = w0 + 0.3 * rng.normal(size=d), -2.0 + 0.8 * rng.normal()
        x = rng.normal(size=(k + q, d)).astype(np.float32)
        y = (rng.random(k + q) < 1 / (1 + np.exp(-(x @ w + b)))).astype(np.float32)
        out.append(Task(x[:k], y[:k], x[k:], y[k:], "binary"))
    return out


def log_loss(m, batch: TaskBatch) -> float:
    p = m.adapt(batch, [0]).predict(batch)[0].clamp(1e-6, 1 - 1e-6)
    y = batch.y_query
    return float(-(y * p.log() + (1 - y) * (1 - p).log()).mean())


def test_calibrated_protonet_beats_plain_on_rare_positive_class() -> None:
    """K=5 support sets of a ~17% base-rate family: the plain softmax over distances treats
    the classes as equally likely a priori; the support prior and learned scale fix that."""
    train, test = rare_tasks(400, seed=1), TaskBatch.from_tasks(rare_tasks(200, seed=2))
    losses = {}
    for calibrated in (False, True):
        m = made(ProtoNet, rare_tasks(1), meta_lr=3e-3, learn_temperature=calibrated,
                 class_prior=calibrated)
        m.meta_fit(train, Budget(iterations=100, meta_batch=16))
        losses[calibrated] = log_loss(m, test)
    assert losses[True] < losses[False] - 0.03, losses        # measured: 0.46 vs 0.52


def test_class_prior_is_smoothed_support_frequency() -> None:
    tasks = cluster_tasks(2, "multiclass")
    plain, prior = made(ProtoNet, tasks), made(ProtoNet, tasks, class_prior=True,
                                               prior_count=0.5)
    batch = TaskBatch.from_tasks(tasks)
    counts = torch.nn.functional.one_hot(batch.y_support.long(), 3).sum(1).float()   # [B, 3]
    pi = (counts + 0.5) / (counts.sum(-1, keepdim=True) + 1.5)
    with torch.no_grad():
        want = plain.outputs(plain.params, batch, batch.x_query) + pi.log().unsqueeze(1)
        got = prior.outputs(prior.params, batch, batch.x_query)
    assert torch.allclose(got, want, atol=1e-5)
    balanced = TaskBatch.from_tasks(cluster_tasks(2, "multiclass", k=9))   # 3 of each class
    assert torch.allclose(prior.adapt(balanced, [0]).predict(balanced),
                          plain.adapt(balanced, [0]).predict(balanced), atol=1e-5)


@pytest.mark.parametrize("cls", [RelationNet, ProtoNet])
def test_temperature_scales_logits_and_is_learned(cls: type) -> None:
    tasks = cluster_tasks(20, "binary")
    batch = TaskBatch.from_tasks(tasks[:4])
    base, hot = made(cls, tasks), made(cls, tasks, temperature=4.0)
    with torch.no_grad():
        if cls is ProtoNet:
            assert torch.allclose(hot.outputs(hot.params, batch, batch.x_query),
                                  base.outputs(base.params, batch, batch.x_query) / 4, atol=1e-6)
        else:
            s, h = (m.outputs(m.params, batch, batch.x_query) for m in (base, hot))
            assert torch.allclose(torch.logit(h), torch.logit(s) / 4, atol=1e-4)
    assert "log_temperature" not in base.params
    m = made(cls, tasks, temperature=2.0, learn_temperature=True)
    assert m.params["log_temperature"].item() == pytest.approx(math.log(2.0))
    m.meta_fit(tasks, Budget(iterations=5, meta_batch=4))
    assert m.params["log_temperature"].item() != pytest.approx(math.log(2.0), abs=1e-5)


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_relation_with_prior_stays_a_probability(kind: str) -> None:
    tasks = cluster_tasks(20, kind)
    m = made(RelationNet, tasks, class_prior=True, learn_temperature=True)
    m.meta_fit(tasks, Budget(iterations=5, meta_batch=4))
    batch = TaskBatch.from_tasks(tasks[:4])
    pred = m.adapt(batch, [0]).predict(batch)[0]
    assert ((pred > 0) & (pred < 1)).all()
    if kind == "multiclass":
        assert torch.allclose(pred.sum(-1), torch.ones(4, 15), atol=1e-5)
    scores = m.outputs(m.params, batch, batch.x_query).detach()
    counts = torch.nn.functional.one_hot(batch.y_support.long(), m.n_classes).sum(1).float()
    prob = (scores + EPS) * ((counts + 1) / (counts.sum(-1, keepdim=True) + m.n_classes)
                             ).unsqueeze(1)
    prob = prob / prob.sum(-1, keepdim=True)
    assert torch.allclose(pred, prob[..., 1] if kind == "binary" else prob, atol=1e-6)


@pytest.mark.parametrize("cls", [RelationNet, ProtoNet])
def test_class_prior_changes_nothing_for_regression(cls: type) -> None:
    tasks = cluster_tasks(3, "regression")
    batch = TaskBatch.from_tasks(tasks)
    a, b = made(cls, tasks), made(cls, tasks, class_prior=True)
    assert torch.equal(a.adapt(batch, [0]).predict(batch), b.adapt(batch, [0]).predict(batch))


@pytest.mark.parametrize("field,value", [("temperature", 0.0), ("temperature", -1.0),
                                         ("learn_temperature", 1), ("class_prior", "yes"),
                                         ("prior_count", 0.0)])
def test_bad_calibration_fields_name_the_field(field: str, value: object) -> None:
    for cls in (RelationNet, ProtoNet):
        with pytest.raises(ValueError, match=f"{field}="):
            cls(**{field: value}).setup(TaskSpec("binary", 2))
