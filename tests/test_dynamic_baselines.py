"""Survey baselines of issue 11: dynamic_mlm (vs an exact Kalman filter), partial pooling with
forgetting (vs statsmodels MixedLM), the cpd: changepoint wrapper, poststratified prevalence."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

import simlab
from simlab.evaluation import poststrat
from simlab.learners import Budget, TaskSpec, make_learner
from simlab.learners.changepoint import RunLength
from simlab.tasks.batch import TaskBatch
from simlab.tasks.reference import (
    drifting_bayes_predictions,
    drifting_regression_stream,
)
from simlab.tasks.task import Task, TaskStream

torch.set_num_threads(1)
FAST = Budget(iterations=2, meta_batch=4)


def small_stream(seed: int = 0, jump: int | None = None, **kw) -> TaskStream:
    args = {"n_groups": 8, "n_waves": 6, "n_features": 2, "shots": 10, "query": 10}
    return drifting_regression_stream(np.random.default_rng(seed), jump_wave=jump, **{**args,
                                                                                       **kw})


# ------------------------------------------------------------------------------ dynamic_mlm

def test_dynamic_mlm_equals_exact_kalman_filter_on_linear_gaussian_random_walk():
    """With the true hyperparameters the Laplace filter is the exact Kalman filter: its
    predictions match a hand-written covariance-form filter to float32 precision, before
    and after a known jump (intervention)."""
    st = small_stream(3, jump=3)
    tr, p, k = st.meta["truth"], 3, 5
    ref = drifting_bayes_predictions(st, k, prior_sd=10.0)
    m = make_learner("dynamic_mlm")
    m.setup(TaskSpec.of(st.waves[0][0]))
    m.fix_hyperparameters(np.zeros(p), 100 * np.eye(p), tr["sigma_u"], tr["q_b"] * np.eye(p),
                          tr["q_u"] * tr["sigma_u"], tr["noise"] ** 2)
    for t, wave in enumerate(st.waves):
        if t == tr["jump_wave"]:
            m.filter.S[:p, :p] += tr["jump_sd"] ** 2 * torch.eye(p, dtype=torch.float64)
        b = TaskBatch.from_tasks([x.with_shots(k) for x in wave])
        pred = m.adapt(b, [1]).predict(b)[0].numpy()
        np.testing.assert_allclose(pred, ref[t], atol=2e-4, rtol=1e-4)
        m.meta_fit(wave, FAST)


def test_dynamic_mlm_group_memory_beats_static_pooling_and_unseen_groups_fall_back():
    """Group effects persist: step 0 (no support) of the dynamic model for a known group beats
    the static model's population prediction; an unseen group gets the population."""
    st = small_stream(1, n_groups=12, n_waves=7)
    res = {n: simlab.evaluate(make_learner(n), st, warmup=3, shots=[5], steps=[0, 1],
                              budget=FAST).records for n in ("dynamic_mlm", "partial_pooling")}
    loss = {n: r[(r.metric == "loss") & (r.steps == 0)].value.mean() for n, r in res.items()}
    assert loss["dynamic_mlm"] < 0.8 * loss["partial_pooling"]
    m = make_learner("dynamic_mlm")
    m.setup(TaskSpec.of(st.waves[0][0]))
    m.meta_fit(st.tasks(0, 3), FAST)
    b = TaskBatch.from_tasks([t.with_shots(5) for t in st.waves[3][:2]])
    b = TaskBatch(**{**b.__dict__, "group": torch.tensor([0, 999])})
    coef = m.adapt(b, [0]).coef[0, :, :, 0]
    pop = m.filter.m[:3]
    assert torch.allclose(coef[1].double(), pop) and not torch.allclose(coef[0].double(), pop)


@pytest.mark.parametrize("target", ["binary", "multiclass"])
def test_dynamic_mlm_classification_is_finite_and_beats_no_pooling(target):
    st = small_stream(2, n_groups=10, target="binary")
    if target == "multiclass":       # three classes: y + (x_0 > 0)
        st = TaskStream([[Task(t.x_support, (t.y_support + (t.x_support[:, 0] > 0)).astype(
            np.int64), t.x_query, (t.y_query + (t.x_query[:, 0] > 0)).astype(np.int64),
            "multiclass", n_classes=3, info=dict(t.info)) for t in w] for w in st.waves],
            st.shifts, st.meta)
    res = {n: simlab.evaluate(make_learner(n), st, warmup=3, shots=[5], steps=[3],
                              budget=FAST) for n in ("dynamic_mlm", "scratch")}
    loss = {n: r.records[r.records.metric == "loss"].value.mean() for n, r in res.items()}
    assert all(r.status == "ok" for r in res.values())
    assert math.isfinite(loss["dynamic_mlm"]) and loss["dynamic_mlm"] < loss["scratch"]


def test_dynamic_mlm_needs_group_ids():
    st = small_stream(0)
    tasks = [Task(t.x_support, t.y_support, t.x_query, t.y_query, "regression",
                  info={"wave": 0}) for t in st.waves[0]]
    m = make_learner("dynamic_mlm")
    m.setup(TaskSpec.of(tasks[0]))
    with pytest.raises(ValueError, match="group column"):
        m.meta_fit(tasks, FAST)


def test_dynamic_mlm_empirical_bayes_finds_drift_and_group_covariance():
    """EB on warm-up waves: sigma2 near the truth, Sigma_u the right scale, a drift chosen."""
    st = small_stream(4, n_groups=30, n_waves=5, shots=20, query=20)
    m = make_learner("dynamic_mlm")
    m.setup(TaskSpec.of(st.waves[0][0]))
    log = m.meta_fit(st.tasks(0, 5), FAST)
    tr = st.meta["truth"]
    assert abs(log["sigma2"] - tr["noise"] ** 2) < 0.15
    true_tr = np.trace(tr["sigma_u"])
    assert 0.5 * true_tr < log["sigma_u_trace"] < 2.0 * true_tr
    assert log["q_u"] in m.eb_grid and log["q_b"] in m.eb_grid


# ------------------------------------------------------------------------- partial pooling

def test_partial_pooling_matches_statsmodels_mixedlm():
    """Gaussian random intercept + independent random slope: the EM's ML estimates equal
    statsmodels' MixedLM (reml=False, diagonal random-effects covariance) within 1e-3 for the
    fixed effects and 2 % for the variance components."""
    sm = pytest.importorskip("statsmodels.api")
    from statsmodels.regression.mixed_linear_model import MixedLMParams
    rng = np.random.default_rng(0)
    tasks, rows = [], []
    for g in range(30):
        a, s = 1.0 + 0.8 * rng.standard_normal(), -0.5 + 0.4 * rng.standard_normal()
        x = rng.standard_normal((12, 1)).astype(np.float32)
        y = (a + s * x[:, 0] + 0.7 * rng.standard_normal(12)).astype(np.float32)
        tasks.append(Task(x[:4], y[:4], x[4:], y[4:], "regression", info={"group": g}))
        rows += [(g, float(xi), float(yi)) for xi, yi in zip(x[:, 0], y)]
    df = pd.DataFrame(rows, columns=["g", "x", "y"])
    exog = np.c_[df.x, np.ones(len(df))]
    md = sm.MixedLM(df.y, exog, groups=df.g, exog_re=exog)
    free = MixedLMParams.from_components(np.ones(2), np.eye(2))
    fit = md.fit(reml=False, free=free, method="lbfgs")
    pp = make_learner("partial_pooling", em_iterations=5000, tol=1e-10)
    pp.setup(TaskSpec.of(tasks[0]))
    pp.meta_fit(tasks, Budget())
    np.testing.assert_allclose(pp.beta0[:, 0].numpy(), fit.fe_params, atol=1e-3)
    np.testing.assert_allclose(pp.tau2[:, 0].numpy(), np.diag(fit.cov_re), rtol=0.02)
    assert float(pp.sigma2) == pytest.approx(fit.scale, rel=0.02)


def test_partial_pooling_binary_matches_gauss_hermite_maximum_likelihood():
    """Random-intercept logistic model, 40 respondents per group: the Laplace EM's fixed
    effects are within 0.03 and its intercept variance within 10 % of the maximum-likelihood
    fit by 30-point Gauss-Hermite quadrature of the marginal likelihood (the exact one up to
    quadrature error; measured: 0.017 and -6 %, Laplace biases tau^2 down at this size)."""
    optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(1)
    g_n, n = 60, 40
    a = 0.3 + 0.9 * rng.standard_normal(g_n)
    x = rng.standard_normal((g_n, n, 1)).astype(np.float32)
    p = 1 / (1 + np.exp(-(a[:, None] + 0.8 * x[..., 0])))
    y = (rng.uniform(size=p.shape) < p).astype(np.float32)
    tasks = [Task(x[g, :10], y[g, :10], x[g, 10:], y[g, 10:], "binary", info={"group": g})
             for g in range(g_n)]
    nodes, weights = np.polynomial.hermite.hermgauss(30)

    def nll(theta):
        slope, icpt, log_tau = theta
        eta = (icpt + slope * x[..., 0])[..., None] + np.sqrt(2) * np.exp(log_tau) * nodes
        ll = (y[..., None] * eta - np.logaddexp(0, eta)).sum(1)          # [G, nodes]
        return -np.log(np.exp(ll - ll.max(1, keepdims=True)) @ weights / np.sqrt(np.pi)
                       ).sum() - ll.max(1).sum()

    fit = optimize.minimize(nll, np.zeros(3), method="L-BFGS-B")
    slope, icpt, log_tau = fit.x
    pp = make_learner("partial_pooling", em_iterations=100, tol=1e-6, fit_newton=2)
    pp.setup(TaskSpec.of(tasks[0]))
    pp.meta_fit(tasks, Budget())
    assert fit.success
    np.testing.assert_allclose(pp.beta0[:, 0].numpy(), [slope, icpt], atol=0.03)
    assert float(pp.tau2[-1, 0]) == pytest.approx(np.exp(2 * log_tau), rel=0.1)


def test_partial_pooling_window_counts_waves_and_discount_weights_recent():
    st = small_stream(5, n_waves=4)
    pp = make_learner("partial_pooling", window=2)
    pp.setup(TaskSpec.of(st.waves[0][0]))
    for w in st.waves:
        pp.meta_fit(w, FAST)
    assert pp.memory_size == 2 * len(st.waves[0])
    pp.reset_memory()
    assert pp.memory_size == 0
    # a jump: strong discount tracks the new level, no discount averages both
    old = [Task(t.x_support, t.y_support, t.x_query, t.y_query, "regression",
                info={**t.info, "wave": 0}) for t in st.waves[0]]
    new = [Task(t.x_support, t.y_support + 5, t.x_query, t.y_query + 5, "regression",
                info={**t.info, "wave": 1}) for t in st.waves[0]]
    icpt = {}
    for d in (1.0, 0.05):
        m = make_learner("partial_pooling", discount=d)
        m.setup(TaskSpec.of(old[0]))
        m.meta_fit(old, FAST)
        m.meta_fit(new, FAST)
        icpt[d] = float(m.beta0[-1, 0])
    assert icpt[0.05] - icpt[1.0] > 2.0


@pytest.mark.parametrize("hp,field", [({"window": 0}, "window"), ({"discount": 0.0}, "discount"),
                                      ({"discount": 1.5}, "discount")])
def test_partial_pooling_bad_forgetting(hp, field):
    m = make_learner("partial_pooling", **hp)
    with pytest.raises(ValueError, match=field):
        m.setup(TaskSpec("regression", 2))


# --------------------------------------------------------------------------------- cpd:

def test_run_length_filter_formulas_and_detection():
    """Student-t predictive as Adams & MacKay's Normal-Gamma model; a level step is detected
    where it happens and a flat noisy series gives no alarm."""
    stats = pytest.importorskip("scipy.stats")
    st = np.array([[0.3, 2.0, 3.0, 0.5]])
    m, k, a, b = st[0]
    want = stats.t.logpdf(1.1, df=2 * a, loc=m, scale=math.sqrt(b * (k + 1) / (a * k)))
    assert RunLength._log_t(1.1, st)[0] == pytest.approx(want, rel=1e-10)
    rng = np.random.default_rng(0)
    z = np.r_[0.05 * rng.standard_normal(8), 0.7 + 0.05 * rng.standard_normal(4)]
    f = RunLength(hazard=0.1, scale=0.1)
    probs = [f.update(v) for v in z]
    assert np.argmax(probs) == 8 and probs[8] > 0.9 and max(probs[:8]) < 0.3


def test_cpd_registry_routing_errors_and_pickle():
    m = make_learner("cpd:partial_pooling", window=3, cpd_hazard=0.2)
    assert m.name == "cpd:partial_pooling" and m.window == 3 and m.cpd_hazard == 0.2
    assert "cpd_threshold" in type(m).search_space and "window" in type(m).search_space
    back = pickle.loads(pickle.dumps(m))
    assert back.hyperparameters() == m.hyperparameters()
    with pytest.raises(ValueError, match="Did you mean partial_pooling"):
        make_learner("cpd:partial_poolin")
    with pytest.raises(ValueError, match="window"):
        make_learner("cpd:partial_pooling", window=0).setup(TaskSpec("regression", 2))
    with pytest.raises(ValueError, match="cpd_hazard"):
        make_learner("cpd:scratch", cpd_hazard=1.0).setup(TaskSpec("regression", 2))


def test_cpd_detects_a_coefficient_jump_and_recovers():
    st = small_stream(6, jump=5, n_groups=12, n_waves=9, shots=15, query=15, jump_sd=1.5)
    res = {n: simlab.evaluate(make_learner(n), st, warmup=2, shots=[5], steps=[1], budget=FAST)
           for n in ("cpd:partial_pooling", "partial_pooling")}
    cps = [c["wave"] for c in res["cpd:partial_pooling"].log["changepoints"]]
    assert cps == [5]
    rec = res["cpd:partial_pooling"].records       # Learner.wave_extras: one row per fit wave
    alarms = rec[rec.metric == "changepoint"].set_index("wave")["value"]
    assert alarms.index.tolist() == list(range(2, 8)) and alarms[5] == 1.0 == alarms.sum()
    assert "changepoint" not in set(res["partial_pooling"].records.metric)
    assert "changepoints" not in res["partial_pooling"].log
    assert {r.log["role"] for r in res.values()} == {"baseline"}     # cpd: takes its inner's
    after = {n: r.records[(r.records.metric == "loss") & (r.records.wave > 5)].value.mean()
             for n, r in res.items()}
    assert after["cpd:partial_pooling"] < 0.9 * after["partial_pooling"]


@pytest.mark.parametrize("inner", ["finetune", "maml"])
def test_cpd_generic_learner_is_rebuilt_on_change(inner):
    """Learners without reset_memory are rebuilt from their seed at a change: right after
    it, the wrapped network's parameters are its fresh initialisation, trained on one wave."""
    m = make_learner(f"cpd:{inner}", cpd_threshold=0.01, hidden=(4,))
    st = small_stream(7, jump=3, n_waves=5)
    r = simlab.evaluate(m, st, warmup=1, shots=[5], steps=[1], budget=FAST)
    assert r.status == "ok" and len(r.log["changepoints"]) >= 1
    fresh = make_learner(inner, hidden=(4,))
    fresh.setup(TaskSpec.of(st.waves[0][0]))
    m._reset()
    for k, v in fresh.params.items():
        assert torch.equal(m.inner.params[k].detach(), v.detach())


# ------------------------------------------------------------------------------- poststrat

def test_poststratified_prevalence_error_uses_population_cells():
    """Scratch at step 0 predicts E[y] = 0 everywhere: its MRP prevalence error is exactly the
    mean |true population mean|; without cells it is the sample gap (plain metric)."""
    st = small_stream(8, n_waves=3)
    rng = np.random.default_rng(0)
    truth = {}
    for t in st.tasks():
        x = rng.standard_normal((6, 2)).astype(np.float32)
        truth[(t.info["group"], t.info["wave"])] = float(rng.normal())
        t.info["poststrat"] = poststrat.population_cells(x, np.full(6, truth[
            (t.info["group"], t.info["wave"])]))
    r = simlab.evaluate(make_learner("scratch"), st, warmup=1, shots=[5], steps=[0, 1],
                        budget=FAST)
    rec = r.records[(r.records.metric == "prevalence_error") & (r.records.steps == 0)]
    want = [np.mean([abs(truth[(g, w)]) for g in range(8)]) for w in (1, 2)]
    np.testing.assert_allclose(rec.value.to_numpy(), want, rtol=1e-6)
    assert r.log["prevalence"] == "population"
    plain = simlab.evaluate(make_learner("scratch"), small_stream(8, n_waves=3), warmup=1,
                            shots=[5], steps=[0], budget=FAST)
    assert plain.log["prevalence"] == "sample"


def test_census_margins_bad_input():
    st = small_stream(9, n_waves=2, n_groups=2)
    cells = {g: poststrat.Cells(np.r_[st.waves[0][g].x_support, st.waves[0][g].x_query,
                                      st.waves[1][g].x_support, st.waves[1][g].x_query],
                                np.full(40, 1 / 40), None, "census") for g in range(2)}
    poststrat.attach_cells(st, cells)
    assert st.waves[1][0].cells.source == "census"
    with pytest.raises(ValueError, match="group 1 .*no margins"):
        poststrat.attach_cells(st, {0: cells[0]})
    with pytest.raises(ValueError, match="sum to 0.5"):
        poststrat.attach_cells(st, {g: poststrat.Cells(c.x, c.share / 2, None, "census")
                                    for g, c in cells.items()})
    with pytest.raises(ValueError, match="fall in no census cell"):
        poststrat.attach_cells(st, {g: poststrat.Cells(c.x[:10], np.full(10, 0.1), None,
                                                       "census") for g, c in cells.items()})
    df = pd.DataFrame({"g": [0, 0], "a": [0.0, 1.0], "b": [1.0, 1.0], "share": [0.5, 0.4]})
    with pytest.raises(ValueError, match="sum to 0.9"):
        poststrat.census_cells(df, "g", "share", ["a", "b"])


# ---------------------------------------------------------------------------------- report

def test_changepoint_scoring_delay_and_false_alarms():
    from simlab.report.changepoints import _score
    assert _score([3, 9, 10], [9], 14) == (["0"], 2)
    assert _score([11], [9, 12], 14) == (["2", "missed"], 0)


def test_report_shows_detected_changepoints_beside_true_shifts(tmp_path):
    from simlab.evaluation.result import RECORD_COLUMNS
    from simlab.report.report import build_report
    st = small_stream(6, jump=5, n_groups=12, n_waves=9, shots=15, query=15, jump_sd=1.5)
    runs, mets, shifts = [], [], []
    for rid, name in enumerate(["cpd:partial_pooling", "partial_pooling"]):
        r = simlab.evaluate(make_learner(name), st, warmup=2, shots=[5], steps=[1],
                            budget=FAST)
        runs.append([rid, "jumpy", 0, name, "{}", r.status, None, 1.0])
        mets.append(r.records.assign(run_id=rid)[["run_id", *RECORD_COLUMNS]])
        shifts.append(r.shifts.assign(scenario="jumpy", seed=0))
    runs_df = pd.DataFrame(runs, columns=["run_id", "scenario", "seed", "learner",
                                          "hyperparameters", "status", "error", "seconds"])
    out = build_report(runs_df, pd.concat(mets), pd.concat(shifts).drop_duplicates(),
                       tmp_path, "cpd", n_boot=50)
    md = out["markdown"].read_text()
    assert "### Detected changepoints" in md
    assert "| cpd:partial_pooling | 0 | 5 | 5 | 0 | 0 |" in md
    assert "Detected changepoints" in out["html"].read_text()


def test_poststratified_prevalence_multiclass_total_variation():
    """Multiclass: the estimate is the share-weighted class distribution; scratch's step 0 is
    uniform, so its error is the total-variation distance to the true class shares."""
    rng = np.random.default_rng(3)
    truth = np.array([0.6, 0.3, 0.1])
    waves = []
    for w in range(2):
        tasks = []
        for g in range(3):
            x = rng.standard_normal((20, 2)).astype(np.float32)
            y = rng.integers(0, 3, 20)
            tasks.append(Task(x[:8], y[:8], x[8:], y[8:], "multiclass", n_classes=3,
                              info={"group": g, "wave": w, "poststrat": poststrat.Cells(
                                  x[:4], np.full(4, 0.25), truth)}))
        waves.append(tasks)
    r = simlab.evaluate(make_learner("scratch"), TaskStream(waves, []), warmup=1, shots=[4],
                        steps=[0], budget=FAST)
    got = r.records[r.records.metric == "prevalence_error"].value.to_numpy()
    np.testing.assert_allclose(got, 0.5 * np.abs(truth - 1 / 3).sum(), rtol=1e-6)
