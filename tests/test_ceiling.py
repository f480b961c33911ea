"""The observable ceiling: stored per query respondent, saved with the stream, scored as
``excess_loss_reachable``, and it lies between the oracle and the learners."""
from __future__ import annotations

import numpy as np
import pytest

import simlab
from simlab.evaluation.metrics import score_predictions, shots_to_target
from simlab.evaluation.protocol import evaluate
from simlab.experiment.config import load_scenario
from simlab.learners import Budget
from simlab.society.diagnostics.ceiling import expected_excess, fit_net, predict_net
from simlab.society.diagnostics.reporters import modularity
from simlab.tasks.stream import load_stream, save_stream

SMALL = {"graph": {"n_groups": 4, "group_size": 300}, "burn_in": 10, "shocks": [],
         "survey": {"waves": 5, "support": 20, "query": 30, "every": 2},
         "evaluation": {"warmup": 2, "shots": [5, 20], "steps": [0, 5],
                        "warmup_budget": {"mode": "iterations"}, "tuning": {"folds": 1}}}


@pytest.fixture(scope="module")
def stream():
    sc = load_scenario("response_threshold").override(SMALL)
    return sc.stream(0, cache=False)


def test_every_task_carries_a_ceiling_and_its_error(stream) -> None:
    for task in stream.tasks():
        assert task.ceiling_query is not None
        assert task.ceiling_query.shape == task.oracle_query.shape
        assert 0.0 < task.info["ceiling_se"] < 0.2
        assert ((task.ceiling_query > 0) & (task.ceiling_query < 1)).all()


def test_ceiling_and_reporters_survive_the_stream_file(stream, tmp_path) -> None:
    back = load_stream(save_stream(stream, tmp_path / "s.npz"))
    for a, b in zip(stream.tasks(), back.tasks()):
        assert np.array_equal(a.ceiling_query, b.ceiling_query)
    rep = back.meta["reporters"]
    assert {"tick", "mean_response", "mean_opinion", "share_favour"} <= set(rep)
    assert rep["tick"][0] == 10 and len(rep["tick"]) == 1 + 5 * 2


def test_ceiling_lies_between_the_oracle_and_the_best_learner(stream) -> None:
    losses = {}
    for name in ("scratch", "partial_pooling"):
        res = evaluate(simlab.make_learner(name), stream, warmup=2, shots=[20], steps=[0, 5],
                       budget=Budget(iterations=20, meta_batch=4))
        rec = res.records
        at = rec[(rec.steps == 5) & (rec.shots == 20)].pivot_table(
            index="wave", columns="metric", values="value")
        losses[name] = at["loss"].mean()
        ceiling = (at["loss"] - at["excess_loss_reachable"]).mean()
        oracle = (at["loss"] - at["excess_loss"]).mean()
    assert oracle < ceiling < min(losses.values()), (oracle, ceiling, losses)


def test_excess_loss_reachable_is_loss_minus_the_ceilings_loss() -> None:
    y = np.array([[1.0, 0.0, 1.0]])
    w = np.ones_like(y)
    pred = np.array([[[0.6, 0.4, 0.5]]])
    oracle = np.array([[0.9, 0.1, 0.8]])
    ceiling = np.array([[0.7, 0.3, 0.6]])
    out = score_predictions(pred, y, w, "binary", oracle=oracle, ceiling=ceiling)
    ll = lambda p: -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert out["excess_loss_reachable"][0] == pytest.approx(ll(pred[0]) - ll(ceiling))
    assert out["excess_loss"][0] > out["excess_loss_reachable"][0]
    assert "excess_loss_reachable" not in score_predictions(pred, y, w, "binary", oracle=oracle)


def test_shots_to_target_uses_the_reachable_ceiling() -> None:
    import pandas as pd

    rows = []
    for k, loss in ((5, 0.60), (20, 0.50)):
        for metric, v in (("loss", loss), ("excess_loss", loss - 0.30),
                          ("excess_loss_reachable", loss - 0.47)):
            rows.append({"wave": 3, "shots": k, "steps": 1, "metric": metric, "value": v})
    rec = pd.DataFrame(rows)
    assert shots_to_target(rec) == 20          # within 10% of 0.47, out of reach of 0.30
    no_ceiling = rec[rec.metric != "excess_loss_reachable"]
    assert np.isnan(shots_to_target(no_ceiling))


def test_fit_net_recovers_a_step_from_soft_labels() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 400, 1))
    p = np.where(x[..., 0] > np.array([[0.0], [0.5]]), 0.9, 0.1)       # group-specific steps
    net = fit_net(x, p, np.ones((2, 400)), "binary", hidden=8, iters=400, rng=rng)
    assert expected_excess(predict_net(net, x, "binary"), p, "binary").mean() < 0.03
    lin = fit_net(x, p, np.ones((2, 400)), "binary", hidden=0, iters=400)
    assert expected_excess(predict_net(lin, x, "binary"), p, "binary").mean() > 0.05


def test_modularity_matches_networkx() -> None:
    import networkx as nx
    import scipy.sparse as sp

    g = nx.planted_partition_graph(3, 20, 0.5, 0.05, seed=1)
    labels = np.repeat(np.arange(3), 20)
    adj = sp.csr_matrix(nx.to_scipy_sparse_array(g, format="csr"))
    want = nx.community.modularity(g, [set(range(i * 20, (i + 1) * 20)) for i in range(3)])
    assert modularity(adj, labels) == pytest.approx(want)
