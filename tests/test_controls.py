"""The meta-learning controls of issue 18: the ``peak`` response kind (a shared single-peaked
form, fresh latent parameters per task), the ``floor`` reference (exact posterior predictive
by quadrature), and the control scenarios."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from simlab.errors import LearnerError
from simlab.evaluation.statistics import best_baseline, compare_all, is_baseline, is_reference
from simlab.experiment.config import ScenarioError, list_scenarios, load_scenario
from simlab.learners.base import TaskSpec
from simlab.learners.registry import make_learner
from simlab.society.diagnostics.ceiling import expected_excess, fit_net, predict_net
from simlab.society.families.opinion import OpinionParams, OpinionSociety
from simlab.society.response import PeakSpec, response_spec
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task

from helpers.society import planted_inputs, run

PRIOR = {"kind": "peak", "trait": "age", "width": 0.5, "offset": [-1.5, 0.5],
         "amplitude": [3.0, 1.0], "location": [0.0, 1.0], "linear": 0.0, "column": 0}


def society(spec: PeakSpec, seed: int = 0, groups: int = 6, size: int = 400) -> OpinionSociety:
    rng = np.random.default_rng(seed)
    graph, pop = planted_inputs(rng, groups, size, 8.0)
    return OpinionSociety(graph, pop, OpinionParams(opinion_effect=0.0),
                          rng=np.random.default_rng(seed + 1), response=spec,
                          response_rng=np.random.default_rng(seed + 2))


def peak_tasks(n: int, k: int, q: int, rng: np.random.Generator, prior=PRIOR) -> list[Task]:
    """Tasks drawn from the peak prior directly (column 0 is the trait, column 1 noise)."""
    out = []
    for _ in range(n):
        o, a, loc = (rng.normal(*prior[name]) for name in ("offset", "amplitude", "location"))
        x = rng.standard_normal((k + q, 2)).astype(np.float32)
        p = 1.0 / (1.0 + np.exp(-(o + a * np.exp(-0.5 * ((x[:, 0] - loc) / 0.5) ** 2))))
        y = (rng.random(k + q) < p).astype(np.float32)
        out.append(Task(x[:k], y[:k], x[k:], y[k:], "binary", oracle_query=p[k:].astype(
            np.float32)))
    return out


def floor(**kw) -> object:
    learner = make_learner("floor", prior=PRIOR, **kw)
    learner.setup(TaskSpec("binary", 2))
    return learner


# --- the response kind -----------------------------------------------------------------------
def test_peak_score_is_the_documented_bump_and_redraws_every_tick() -> None:
    s = society(PeakSpec(width=0.4))
    idx = np.arange(s.n_agents)
    lat = {k: v.copy() for k, v in s.response.latent.items()}
    g, x = s.groups, s.pop.observed[:, s.pop.column("age")].astype(np.float64)
    want = lat["offset"][g] + lat["amplitude"][g] * np.exp(
        -0.5 * ((x - lat["location"][g]) / 0.4) ** 2)
    assert np.allclose(s.trait_score(idx), want)
    assert np.allclose(s.oracle(idx), 1.0 / (1.0 + np.exp(-want)))     # no state term
    run(s, 1)                                  # a new tick is a new task: fresh latents
    assert not np.allclose(s.response.latent["location"], lat["location"])
    assert s.events == []                      # ... and not a shift
    flat = society(PeakSpec(strength=0.0))     # strength 0: the per-task offset only
    assert np.allclose(flat.trait_score(idx), flat.response.latent["offset"][flat.groups])


def test_peak_latents_follow_the_declared_prior() -> None:
    s = society(PeakSpec(location=0.3, location_sd=0.7, amplitude=2.0, amplitude_sd=0.5),
                groups=50, size=60)
    draws = [s.response.draw() for _ in range(40)]
    loc = np.concatenate([d["location"] for d in draws])
    amp = np.concatenate([d["amplitude"] for d in draws])
    assert abs(loc.mean() - 0.3) < 0.05 and abs(loc.std() - 0.7) < 0.05
    assert abs(amp.mean() - 2.0) < 0.04 and abs(amp.std() - 0.5) < 0.04
    prior = s.response.prior()
    assert prior["location"] == [0.3, 0.7] and prior["amplitude"] == [2.0, 0.5]


@pytest.mark.parametrize("table, match", [
    ({"kind": "peek"}, r"response.kind = 'peek' is unknown; did you mean 'peak'"),
    ({"kind": "peak", "width": 0.0}, r"width"),
    ({"kind": "peak", "location_sd": -1.0}, r"location_sd"),
    ({"kind": "peak", "strength": -0.5}, r"strength"),
    ({"kind": "peak", "trait": "female"}, r"response.trait = 'female' is binary"),
    ({"kind": "peak", "trait": "height"}, r"response.trait = 'height' is not an observed trait"),
    ({"kind": "peak", "amplitud": 3.0}, r"amplitud"),
])
def test_bad_peak_tables_give_one_clear_error(table, match) -> None:
    base = load_scenario("control_positive")
    with pytest.raises(ScenarioError, match=match) as err:
        base.override({"response": table})
    assert "\n" not in str(err.value)
    if table["kind"] == "peek":                  # the same did-you-mean from Python
        with pytest.raises(ValueError, match="did you mean 'peak'"):
            response_spec(table)


def test_a_glm_cannot_represent_the_peak_but_fits_its_flat_twin() -> None:
    """A per-community logistic regression on all members' true probabilities (infinite
    data) stays far from them on the peak; with strength 0 (a flat answer) it is exact."""
    def glm_excess(spec: PeakSpec) -> float:
        s = society(spec, groups=6, size=400)
        members = np.stack([s.social.members(g)[:400] for g in range(6)])
        x = s.pop.observed[members].astype(np.float64)                 # [G, n, D]
        p = s.oracle(members.ravel()).reshape(members.shape)
        net = fit_net(x, p, np.ones(p.shape), "binary", hidden=0, l2=0.0, iters=600, lr=0.05)
        return float(expected_excess(predict_net(net, x, "binary"), p, "binary").mean())

    assert glm_excess(PeakSpec()) > 0.05
    assert glm_excess(PeakSpec(strength=0.0)) < 0.002


# --- the floor reference ---------------------------------------------------------------------
def test_floor_equals_a_brute_force_posterior_on_a_tiny_case() -> None:
    rng = np.random.default_rng(3)
    task = peak_tasks(1, 3, 5, rng)[0]
    batch = TaskBatch.from_tasks([task])
    got = floor().adapt(batch, [0]).predict(batch)[0, 0].numpy()
    # Monte Carlo: prior draws weighted by the support likelihood
    n = 400_000
    o, a, loc = (rng.normal(*PRIOR[k], size=n) for k in ("offset", "amplitude", "location"))

    def prob(x: np.ndarray) -> np.ndarray:                              # [n, len(x)]
        z = o[:, None] + a[:, None] * np.exp(-0.5 * ((x[None] - loc[:, None]) / 0.5) ** 2)
        return 1.0 / (1.0 + np.exp(-z))

    ps = prob(task.x_support[:, 0].astype(np.float64))
    lik = np.prod(np.where(task.y_support[None] > 0.5, ps, 1.0 - ps), axis=1)
    want = (lik[:, None] * prob(task.x_query[:, 0].astype(np.float64))).sum(0) / lik.sum()
    assert np.abs(got - want).max() < 3e-3
    prior_only = prob(task.x_query[:, 0].astype(np.float64)).mean(0)
    assert np.abs(prior_only - want).max() > 0.02                       # the support mattered


def test_floor_beats_the_prior_alone_and_approaches_the_oracle_with_k() -> None:
    rng = np.random.default_rng(0)
    excess = {}
    for k in (5, 20):
        batch = TaskBatch.from_tasks(peak_tasks(40, k, 20, rng))
        learner = floor()
        pred = learner.adapt(batch, [0, 1]).predict(batch)
        assert pred.shape == (2, 40, 20) and torch.equal(pred[0], pred[1])
        blind = dataclasses.replace(batch, w_support=torch.zeros_like(batch.w_support))
        prior_only = learner.adapt(blind, [0]).predict(batch)[0]
        truth = batch.oracle_query.numpy()
        excess[k] = float(expected_excess(pred[0].numpy(), truth, "binary").mean())
        excess[f"prior{k}"] = float(expected_excess(prior_only.numpy(), truth, "binary").mean())
        assert excess[k] < 0.8 * excess[f"prior{k}"]
    assert excess[20] < 0.7 * excess[5]


def test_floor_needs_a_peak_prior_and_says_so() -> None:
    learner = make_learner("floor")
    learner.setup(TaskSpec("binary", 2))
    with pytest.raises(LearnerError, match="no response prior.*kind = \"peak\""):
        learner.observe_stream({"response": "glm", "feature_names": ["age"]})
    prior = {k: v for k, v in PRIOR.items() if k != "column"} | {"trait": "religiosity"}
    learner.observe_stream({"response_prior": prior, "feature_names": ["age", "education"]})
    batch = TaskBatch.from_tasks(peak_tasks(2, 3, 4, np.random.default_rng(0)))
    with pytest.raises(LearnerError, match="'religiosity', which is not among the survey's"):
        learner.adapt(batch, [0])
    with pytest.raises(LearnerError, match="response.linear = 1.0"):
        make_learner("floor", prior=PRIOR | {"linear": 1.0}).setup(TaskSpec("binary", 2))
    with pytest.raises(LearnerError, match="nodes"):
        make_learner("floor", nodes=1).setup(TaskSpec("binary", 2))


def test_floor_runs_through_the_protocol_on_the_positive_control() -> None:
    """The prior reaches the floor through stream.meta (``Learner.observe_stream``) in a
    shrunken positive control."""
    import simlab

    sc = load_scenario("control_positive").override({
        "graph": {"n_groups": 8, "group_size": 60}, "survey": {"waves": 5, "query": 20},
        "evaluation": {"warmup": 2, "warmup_budget": {"mode": "iterations"},
                       "tuning": {"folds": 1}}})
    stream = sc.stream(0, cache_dir=None)
    assert stream.meta["response_prior"]["trait"] == "age"
    from simlab.learners.base import Budget

    from simlab.learners.floor import Floor

    class Recording(Floor):
        def observe_stream(self, meta):
            self.told = dict(meta)
            super().observe_stream(meta)

    learner = Recording()
    result = simlab.evaluate(learner, stream, warmup=2, shots=[5, 10], steps=[0],
                             budget=Budget(iterations=0))
    excess = result.summary["mean_excess_loss"]
    assert 0.0 < excess < 0.2
    # told the prior and the feature names, never the society's per-tick reporters (future)
    assert set(learner.told) == {"feature_names", "response", "response_prior"}
    assert "reporters" in stream.meta


# --- scenarios and statistics ----------------------------------------------------------------
def test_control_scenarios_load_and_are_listed_valid() -> None:
    rows = {name: desc for name, _, desc in list_scenarios("scenarios")}
    for name in ("control_positive", "control_negative"):
        assert name in rows and not rows[name].startswith("INVALID"), rows.get(name)
    pos, neg = load_scenario("control_positive"), load_scenario("control_negative")
    assert pos.response.kind == "peak" and neg.response.kind == "glm"
    assert "floor" in pos.evaluation.learners and "floor" not in neg.evaluation.learners
    assert pos.evaluation.shots == neg.evaluation.shots == [5, 10]
    assert (pos.graph, pos.survey, pos.dynamics) == (neg.graph, neg.survey, neg.dynamics)


def test_the_floor_is_a_reference_never_a_baseline_nor_compared() -> None:
    assert is_reference("floor") and is_reference("oracle") and not is_baseline("floor")
    rows = []
    for seed in range(6):
        for lab, v in (("floor", 0.05), ("partial_pooling", 0.20), ("finetune", 0.25),
                       ("maml", 0.15 + 0.001 * seed), ("oracle", 0.0)):
            rows.append({"scenario": "s", "label": lab, "learner_name": lab, "seed": seed,
                         "wave": 0, "value": v})
    scores = pd.DataFrame(rows)
    assert best_baseline(scores) == "partial_pooling"
    compared = {c.learner for c in compare_all(scores)}
    assert compared == {"maml"}


def test_the_leaderboard_shows_each_learners_distance_above_the_floor() -> None:
    """On a positive control every learner's distance to the attainable floor is a column
    of the leaderboard (issue 18); without a floor run there is no such column."""
    from simlab.report.report import _compact_board

    board = pd.DataFrame({"label": ["floor", "maml", "partial_pooling"],
                          "learner": ["floor", "maml", "partial_pooling"],
                          "mean_excess_loss": [0.08, 0.13, 0.17], "runs": [6, 6, 6],
                          "ok": [6, 6, 6], "diverged": [0, 0, 0], "failed": [0, 0, 0]})
    table = _compact_board(board, [], "excess_loss", pd.DataFrame())
    col = table.header.index("above floor")
    assert [row[col] for row in table.rows] == ["0", "0.05", "0.09"]
    plain = _compact_board(board.iloc[1:], [], "excess_loss", pd.DataFrame())
    assert "above floor" not in plain.header
