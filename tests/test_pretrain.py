"""Pre-training the pooled baselines: partial pooling's informative prior, fine-tuning's
initialisation, and tuning trials that pre-train (``[evaluation.pretrain]``, issue 20)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.learners import make_stream
from helpers.scenarios import tiny

from simlab.errors import ScenarioError
from simlab.evaluation import pretrain
from simlab.evaluation.protocol import evaluate
from simlab.evaluation.tuning import pretrain_scaled, tune
from simlab.learners import make_learner
from simlab.learners.base import Budget, TaskSpec
from simlab.learners.baselines import PartialPooling
from simlab.settings import Search, TuningSettings

torch.set_num_threads(1)
PROTOCOL = {"warmup": 2, "shots": [4], "steps": [0, 2], "budget": Budget(3, 2)}


PRE_BUDGET = Budget(30, 4)


def planned(stream, source, budget: Budget = PRE_BUDGET):
    return pretrain.attach(stream, pretrain.from_streams([source], budget,
                                                         source={"scenario": "other seed"}))


def pooled(seed: int = 0, **kw) -> PartialPooling:
    learner = PartialPooling(**kw)
    learner.setup(TaskSpec.of(make_stream().waves[0][0]), seed=seed)
    return learner


def estimates(learner: PartialPooling) -> list[np.ndarray]:
    return [t.cpu().numpy() for t in (learner.beta0, learner.tau2, learner.sigma2)]


def wave2_loss(run) -> np.ndarray:
    """The run's losses on its first scored wave (wave 2: the warm-up is waves 0-1)."""
    return run.records.query("metric == 'loss' and wave == 2")["value"].to_numpy()


def test_partial_poolings_prior_is_the_em_estimate_on_the_simulated_tasks_alone() -> None:
    sim = pretrain.from_streams([make_stream(waves=4, groups=5, seed=1)], Budget(30, 4)).tasks
    pre = pooled()
    log = pre.pretrain(sim, Budget(30, 4))
    direct = pooled(em_iterations=30)          # the same EM, as an ordinary first meta_fit
    direct.meta_fit(sim, Budget(1, 1))
    assert pre.prior is not None and log["tasks"] == len(sim)
    for mine, theirs in zip([t.numpy() for t in pre.prior], estimates(direct)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12)
    assert pre.memory_size == 0                 # the simulated tasks are forgotten
    real = make_stream(waves=2, seed=0).waves[0]
    pre.meta_fit(real, Budget(1, 1))
    assert pre.memory_size == len(real)         # the survey's tasks pool with the prior only


def test_the_prior_pulls_the_estimates_with_its_stated_weight() -> None:
    sim = pretrain.from_streams([make_stream(waves=4, groups=5, seed=1)], Budget(30, 4)).tasks
    real = make_stream(waves=2, seed=0).waves[0]          # 3 tasks: the data weigh 3
    plain = pooled()
    plain.meta_fit(real, Budget(1, 1))
    prior = None
    gaps = {}
    for n0 in (0.0, 20.0, 1e9):
        pre = pooled(prior_tasks=n0)
        pre.pretrain(sim, Budget(30, 4))
        prior = pre.prior[0].numpy()
        pre.meta_fit(real, Budget(1, 1))
        gaps[n0] = float(np.abs(pre.beta0.numpy() - prior).max())
    assert gaps[1e9] < 1e-6                                # all prior
    assert gaps[1e9] < gaps[20.0] < gaps[0.0]              # stronger prior, closer to it
    assert float(np.abs(plain.beta0.numpy() - prior).max()) > gaps[20.0]


def test_without_pretraining_partial_pooling_is_unchanged() -> None:
    real = make_stream(waves=2, seed=0).waves[0]
    a, b = pooled(), pooled(prior_tasks=500.0)     # the weight does nothing without a prior
    a.meta_fit(real, Budget(1, 1))
    b.meta_fit(real, Budget(1, 1))
    assert a.prior is None
    for x, y in zip(estimates(a), estimates(b)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", ["partial_pooling", "finetune"])
def test_pretraining_changes_the_pooled_baselines_first_scored_wave(name: str) -> None:
    stream = make_stream(waves=4, seed=0)
    pre = evaluate(make_learner(name), planned(stream, make_stream(waves=4, seed=1)),
                   **PROTOCOL)
    plain = evaluate(make_learner(name), stream, **PROTOCOL)
    assert pre.log["pretrain"]["applied"], pre.log["pretrain"]
    assert not np.allclose(wave2_loss(pre), wave2_loss(plain))
    again = evaluate(make_learner(name), planned(stream, make_stream(waves=4, seed=1)),
                     **PROTOCOL)
    np.testing.assert_array_equal(wave2_loss(pre), wave2_loss(again))     # same seed, same numbers


def test_finetune_starts_its_warm_up_from_the_pretrained_weights() -> None:
    stream = make_stream(waves=4, seed=0)
    sim = pretrain.from_streams([make_stream(waves=4, seed=1)], Budget(30, 4)).tasks
    ft = make_learner("finetune")
    ft.setup(TaskSpec.of(stream.waves[0][0]), seed=0)
    init = {k: v.detach().clone() for k, v in ft.params.items()}
    ft.meta_fit(sim, Budget(30, 4))
    moved = {k: v.detach().clone() for k, v in ft.params.items()}
    assert any(not torch.equal(init[k], moved[k]) for k in init)
    ft.meta_fit(stream.waves[0], Budget(1, 1))        # one warm-up step away from them
    step = max(float((v.detach() - moved[k]).abs().max()) for k, v in ft.params.items())
    assert 0 < step < 0.05


def test_partial_pooling_pretraining_still_refuses_a_scored_wave() -> None:
    stream = make_stream(waves=4, seed=0)
    with pytest.raises(ScenarioError, match="scored wave 2"):
        evaluate(make_learner("partial_pooling"), planned(stream, stream), **PROTOCOL)


def test_dynamic_mlms_prior_is_the_static_em_on_the_simulated_tasks_and_pulls_its_warm_up(
        ) -> None:
    from simlab.learners.dynamic_mlm import DynamicMLM

    stream = make_stream(waves=4, seed=0)
    sim = pretrain.from_streams([make_stream(waves=4, groups=5, seed=1)], PRE_BUDGET).tasks

    def made(**kw) -> DynamicMLM:
        m = DynamicMLM(**kw)
        m.setup(TaskSpec.of(stream.waves[0][0]), seed=0)
        return m

    pre, plain = made(), made()
    pre.pretrain(sim, PRE_BUDGET)
    plain._static_em(*_pooled(sim))                  # the same EM, from the same start
    assert pre.prior is not None
    np.testing.assert_allclose(pre.prior[0].numpy(), plain.b0.numpy(), rtol=1e-12)
    np.testing.assert_allclose(pre.prior[1].numpy(), plain.sigma_u.numpy(), rtol=1e-12)
    gaps = {}
    for n0 in (0.0, 1e9):
        m = made(prior_tasks=n0)
        m.pretrain(sim, PRE_BUDGET)
        m.meta_fit(stream.tasks(0, 2), Budget(1, 1))
        gaps[n0] = float((m.b0 - m.prior[0]).abs().max())
    assert gaps[1e9] < 1e-6 < gaps[0.0]
    log = evaluate(make_learner("dynamic_mlm"), planned(stream, make_stream(waves=4, seed=1)),
                   **PROTOCOL)
    assert log.log["pretrain"]["applied"]
    plain = evaluate(make_learner("dynamic_mlm"), stream, **PROTOCOL)
    assert not np.allclose(wave2_loss(log), wave2_loss(plain))


def _pooled(tasks):
    """Every respondent of ``tasks`` as the dynamic model's EM takes them (the GLM kernel)."""
    from simlab.learners import glm

    x, y, w = glm.pool(tasks, torch.device("cpu"))
    return glm.design(x), glm.encode(y, "binary", 2), w.to(glm.GLM_DTYPE)


# --- tuning trials pre-train ------------------------------------------------------------------
def test_a_lower_rung_pretrains_with_its_share_of_the_budget() -> None:
    stream = planned(make_stream(waves=4), make_stream(waves=4, seed=1), Budget(30, 4))
    assert pretrain_scaled(stream, 1.0) is stream
    cut = pretrain_scaled(stream, 1 / 3).meta["pretrain"]
    assert cut.budget.iterations == 10 and cut.tasks is stream.meta["pretrain"].tasks
    plain = make_stream(waves=4)
    assert pretrain_scaled(plain, 0.5) is plain


def test_tuning_trials_pretrain_when_the_stream_carries_a_plan() -> None:
    """The same search on the same stream, with and without a plan: the trials' scores differ
    (each trial pre-trained), so the choice is made after pre-training. The start-up (random)
    trials try the same parameters in both searches whatever the scores; TPE's later ones
    follow the scores, so they may differ."""
    stream = make_stream(waves=4, seed=0)
    kw = {"warmup": 3, "shots": [4], "steps": [0, 2], "budget": Budget(3, 2),
          "tuning": TuningSettings(search=Search(trials=3, startup=2, pruner="none", folds=1,
                                                 rungs=1))}
    plain = tune("partial_pooling", {}, [stream], **kw)
    pre = tune("partial_pooling", {}, [planned(stream, make_stream(waves=4, seed=1))], **kw)
    assert [t["params"] for t in plain.trace[:2]] == [t["params"] for t in pre.trace[:2]]
    assert all(t["state"] == "complete" for t in plain.trace + pre.trace)
    assert [t["value"] for t in plain.trace[:2]] != [t["value"] for t in pre.trace[:2]]


def test_a_sweeps_tuning_trials_pretrain_like_its_runs(monkeypatch, tmp_path) -> None:
    """``tune_learner`` (what ``simlab sweep`` / ``simlab tune`` run) attaches the scenario's
    plan to the tuning streams: the same search scores differently with
    ``[evaluation.pretrain]``."""
    from simlab.evaluation.tuning import resolve_space
    from simlab.experiment.config import Scenario
    from simlab.experiment.sweep import TuningJob, tune_learner

    monkeypatch.setenv("SIMLAB_CACHE", str(tmp_path))
    base = {"name": "tiny_tuned", "dynamics": {"family": "opinion"},
            "graph": {"kind": "planted_partition", "n_groups": 3, "group_size": 30,
                      "mean_degree": 6},
            "survey": {"waves": 4, "every": 2, "support": 6, "query": 8}, "burn_in": 2,
            "evaluation": {"warmup": 2, "shots": [3], "steps": [0], "seeds": 1,
                           "learners": ["partial_pooling"],
                           "budget": {"iterations": 2, "meta_batch": 4},
                           "tuning": {"trials": 3, "startup": 2, "folds": 1, "pruner": "none",
                                      "metric": "loss"}}}
    with_plan = {**base, "evaluation": {**base["evaluation"], "pretrain": {
        "seeds": [7], "budget": {"iterations": 5, "meta_batch": 4}}}}
    space = resolve_space("partial_pooling", {})

    def trace(data: dict) -> list:
        job = TuningJob(Scenario.from_dict(data), "partial_pooling", "partial_pooling", {},
                        space, (0,))
        return [(t["params"], t["value"]) for t in tune_learner(job).trace]

    plain, pre = trace(base), trace(with_plan)
    assert [p for p, _ in plain] == [p for p, _ in pre]
    assert [v for _, v in plain] != [v for _, v in pre]


# --- the report: pretrained against not ---------------------------------------------------------
def test_the_comparison_arm_shares_learners_and_seeds_and_the_longest_name_prefix() -> None:
    import json

    import pandas as pd

    from simlab.report.pretrain import comparison_arm

    plan = json.dumps({"applied": True})
    runs = pd.DataFrame({
        "scenario": ["x_pretrained", "x_plain", "y_plain", "z_plain", "w_pretrained"],
        "learner": ["maml", "maml", "maml", "cnp", "maml"], "seed": [0, 0, 0, 0, 0],
        "pretrain": [plan, None, None, None, plan]})
    assert comparison_arm("x_pretrained", runs) == "x_plain"    # not z (no shared learner)
    assert comparison_arm("w_pretrained", runs) in ("x_plain", "y_plain")
    assert comparison_arm("x_pretrained", runs[runs["scenario"] != "x_plain"]) == "y_plain"
    assert comparison_arm("x_pretrained", runs.iloc[[0, 4]]) is None   # only pre-trained ones


def test_a_report_gives_each_pretrained_learner_its_paired_verdict(tmp_path, monkeypatch
                                                                   ) -> None:
    from pathlib import Path

    from simlab.experiment.config import Scenario
    from simlab.experiment.sweep import run_sweep
    from simlab.report import report_from_store

    monkeypatch.setenv("SIMLAB_CACHE", str(tmp_path / "cache"))
    base = {"dynamics": {"family": "opinion"},
            "graph": {"kind": "planted_partition", "n_groups": 3, "group_size": 30,
                      "mean_degree": 6},
            "survey": {"waves": 4, "every": 2, "support": 6, "query": 8}, "burn_in": 2,
            "evaluation": {"warmup": 2, "shots": [3], "steps": [0], "seeds": 2,
                           "learners": ["scratch", "partial_pooling"],
                           "budget": {"iterations": 2, "meta_batch": 4}}}
    pre = {**base, "name": "tiny_pretrained", "evaluation": {**base["evaluation"], "pretrain": {
        "seeds": [7], "budget": {"iterations": 5, "meta_batch": 4}}}}
    summary = run_sweep([Scenario.from_dict({**base, "name": "tiny_plain"}),
                         Scenario.from_dict(pre)], store=tmp_path / "r.db",
                        executor="inline", quiet=True)
    assert summary.failed == 0, summary
    files = report_from_store(tmp_path / "r.db", tmp_path / "report", figures=False)
    md = Path(files["markdown"]).read_text()
    assert "Pre-trained against not (tiny_plain: the same learners" in md
    assert "| partial_pooling | yes | tiny_pretrained (seeds 7) |" in md
    row = next(line for line in md.splitlines() if line.startswith("| partial_pooling | ")
               and line.endswith("| 2 | too few seeds | "))
    assert row.count("[") == 3          # both arms' intervals and the difference's
    assert "scratch (pretrained)" not in md     # scratch was not pre-trained: not compared


@pytest.mark.parametrize("family", ["gss_happiness", "control_positive"])
def test_the_shipped_arms_differ_only_by_pretraining(family: str) -> None:
    """``sweeps/pretrain_*.toml`` pair ``<family>_plain`` with ``<family>_pretrained``: the same
    streams, learners and protocol, one with ``[evaluation.pretrain]``."""
    from simlab.experiment.config import load_scenario
    from simlab.experiment.sweep import load_sweep

    plain, pre = (load_scenario(f"scenarios/{family}_{arm}.toml") for arm in ("plain",
                                                                            "pretrained"))
    assert plain.evaluation.pretrain is None and pre.evaluation.pretrain is not None
    assert plain.evaluation.model_dump(exclude={"pretrain"}) == \
        pre.evaluation.model_dump(exclude={"pretrain"})
    assert plain.stream_fingerprint() == pre.stream_fingerprint()
    assert {"cnp", "pfn", "maml", "partial_pooling", "finetune"} <= set(pre.evaluation.learners)
    short = "gss" if family.startswith("gss") else "control"
    sweep = load_sweep(f"sweeps/pretrain_{short}.toml")
    assert [s.name for s in sweep.scenarios] == [plain.name, pre.name]


def test_partial_poolings_m_step_after_pretraining_is_the_conjugate_pseudo_task_update(
        ) -> None:
    pp = pooled(prior_tasks=2.0, tau2_min=1e-12)
    p, o = pp.beta0.shape
    modes = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64).view(3, 1, 1).expand(3, p, o)
    b_p, t_p = torch.full((p, o), -1.0, dtype=torch.float64), torch.full((p, o), 0.5,
                                                                          dtype=torch.float64)
    pp.prior = (b_p, t_p, torch.ones((), dtype=torch.float64))
    pp._m_step(modes, torch.zeros(3, p * o, p * o, dtype=torch.float64), None, None, None,
               torch.ones(3, dtype=torch.float64))
    # s = 2 / (3 + 2); beta0 = 0.6 * 4/3 + 0.4 * (-1) = 0.4
    # tau2 = 0.6 * mean((m - 0.4)^2) + 0.4 * (0.5 + (-1 - 0.4)^2) = 0.6 * 7.28 / 3 + 0.4 * 2.46
    np.testing.assert_allclose(pp.beta0.numpy(), 0.4, rtol=1e-12)
    np.testing.assert_allclose(pp.tau2.numpy(), 2.44, rtol=1e-12)


def test_dynamic_mlms_m_step_after_pretraining_is_the_conjugate_pseudo_task_update(
        monkeypatch) -> None:
    from simlab.learners import dynamic_mlm

    m = dynamic_mlm.DynamicMLM(prior_tasks=2.0, var_floor=1e-12)
    m.setup(TaskSpec.of(make_stream().waves[0][0]), seed=0)
    k, n = m.k, 3
    g = torch.Generator().manual_seed(0)
    modes = torch.randn(n, k, generator=g, dtype=torch.float64)
    hess = 4.0 * torch.eye(k, dtype=torch.float64).expand(n, k, k)   # P_t = I / 4
    monkeypatch.setattr(dynamic_mlm, "map_path", lambda *a, **kw: (modes[None], hess))
    b_p = torch.full((k,), 2.0, dtype=torch.float64)
    s_p = 0.5 * torch.eye(k, dtype=torch.float64)
    m.prior = (b_p, s_p, torch.ones((), dtype=torch.float64))
    x = torch.zeros(n, 1, k, dtype=torch.float64)
    m._static_em(x, torch.zeros(n, 1, 1, dtype=torch.float64),
                 torch.ones(n, 1, dtype=torch.float64), cap=1)
    s = 2.0 / (n + 2.0)
    b0 = (1 - s) * modes.mean(0) + s * b_p
    d, dp = modes - b0, b_p - b0
    want = (1 - s) * ((d.T @ d) / n + 0.25 * torch.eye(k, dtype=torch.float64)) + s * (
        s_p + torch.outer(dp, dp))
    np.testing.assert_allclose(m.b0.numpy(), b0.numpy(), rtol=1e-12)
    np.testing.assert_allclose(m.sigma_u.numpy(), want.numpy(), rtol=1e-10, atol=1e-12)


def test_dynamic_mlm_pretrains_within_the_budgets_iterations() -> None:
    sim = pretrain.from_streams([make_stream(waves=4, groups=5, seed=1)], PRE_BUDGET).tasks
    done = []
    for it in (1, 3):
        m = make_learner("dynamic_mlm", tol=0.0)
        m.setup(TaskSpec.of(sim[0]), seed=0)
        done.append(m.pretrain(sim, Budget(it, 4))["em_iterations"])
    assert done == [1.0, 3.0]


def test_the_leak_check_refuses_the_same_respondents_split_otherwise() -> None:
    stream, resplit = tiny().stream(0), tiny(support=8, query=6).stream(0)
    assert len(stream.waves[3][0].y_support) != len(resplit.waves[3][0].y_support)
    plan = pretrain.from_streams([resplit], Budget(2, 4), source={"scenario": "support=8"})
    with pytest.raises(ScenarioError, match="scored wave 2"):
        pretrain.check_no_leak(plan, stream, 2)


def test_pretraining_tasks_carry_no_true_prevalence() -> None:
    stream = tiny(population_cells=8).stream(1)
    assert stream.waves[0][0].cells is not None
    t = pretrain.from_streams([stream], Budget(2, 4)).tasks[0]
    assert (t.oracle_query, t.ceiling_query, t.cells) == (None, None, None)
