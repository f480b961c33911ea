"""Group x wave prevalence estimates with intervals (issue 24, item 2): computed by the
protocol, stored, exported by `simlab export`, drawn in the report; the interval's method."""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import binom
from helpers.frames import fake_scores
from helpers.learners import FixedAdapted, make_stream
from helpers.scenarios import TUNED, tiny, toml_text

import simlab
import simlab.errors
from simlab.cli import main
from simlab.errors import ScenarioError
from simlab.evaluation.metrics import metric_unit
from simlab.evaluation.poststrat import GROUP_COLUMNS, predictive_interval
from simlab.experiment.config import Scenario
from simlab.experiment.forecast import FORECAST_COLUMNS
from simlab.experiment.store import PREVALENCE_EXPORT, Store
from simlab.experiment.sweep import run_sweep
from simlab.learners import Adapted, Budget, Learner, make_learner
from simlab.report.prevalence import coverage, pick_groups, pick_learners
from simlab.report.store_report import report_from_store
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task

FAST = Budget(iterations=2, meta_batch=4)
#: l2 searched away from its default (2.0), so the tuned value always differs from it
AWAY = {**TUNED, "evaluation": {**TUNED["evaluation"], "tuning": {
    "trials": 2, "startup": 1, "folds": 1,
    "space": {"scratch": {"l2": {"low": 5.0, "high": 10.0}}}}}}


@dataclass
class SigmoidFirst(Adapted):
    steps: tuple[int, ...]

    def predict(self, query: TaskBatch) -> torch.Tensor:
        p = torch.sigmoid(query.x_query[..., 0].double())
        return p.unsqueeze(0).expand(len(self.steps), *p.shape)


@dataclass
class FirstFeature(Learner):
    """P(y=1) = sigmoid(first feature), whatever the support: a hand-checkable learner."""

    name: ClassVar[str] = "first_feature"

    def build(self) -> None:
        pass

    def meta_fit(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        return {}

    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> Adapted:
        return SigmoidFirst(tuple(steps))


torch.set_num_threads(1)


class Constant(Learner):
    """P(y=1) = 0.3 for every respondent (or class shares 0.2/0.3/0.5)."""

    name = "constant_prev"

    def build(self) -> None:
        pass

    def meta_fit(self, tasks, budget):
        return {}

    def adapt(self, support, steps):
        def fn(query, s):
            shape = (s, *query.x_query.shape[:2])
            if query.target == "multiclass":
                return torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64).expand(*shape, 3)
            return torch.full(shape, 0.3, dtype=torch.float64)
        return FixedAdapted(steps, fn)


def test_population_cells_rows_are_the_mrp_estimate_by_hand():
    st = tiny(population_cells=12).generate_stream(0)
    r = simlab.evaluate(FirstFeature(), st, warmup=2, shots=[3, 5], steps=[0], budget=FAST)
    prev = r.prevalence
    assert list(prev.columns) == GROUP_COLUMNS
    assert len(prev) == (len(st) - 2) * 2 * len(st.waves[0])       # scored waves x K x groups
    for row in prev.itertuples():
        task = next(t for t in st.waves[row.wave] if str(t.info["group"]) == row.group)
        c = task.cells
        mrp = (c.share / (1 + np.exp(-c.x[:, 0].astype(np.float64)))).sum()
        assert row.estimate == pytest.approx(mrp, rel=1e-5)
        assert row.truth == pytest.approx(c.prevalence)
        assert row.observed == pytest.approx(task.y_query.mean())
        assert row.n == task.n_query and row.category == -1
        assert 0.0 <= row.lo <= row.hi <= 1.0
    again = simlab.evaluate(FirstFeature(), st, warmup=2, shots=[3, 5], steps=[0], budget=FAST)
    pd.testing.assert_frame_equal(prev, again.prevalence)          # same run, same intervals


def test_sample_estimate_is_the_mean_prediction_and_truth_the_oracle():
    st = make_stream(groups=3, q=10)
    r = simlab.evaluate(Constant(), st, warmup=3, shots=[4], steps=[0, 1], budget=FAST)
    prev = r.prevalence
    assert len(prev) == (len(st) - 3) * 3
    np.testing.assert_allclose(prev["estimate"], 0.3)
    for row in prev.itertuples():
        task = st.waves[row.wave][int(row.group)]
        assert row.truth == pytest.approx(task.oracle_query.mean(), rel=1e-5)
        assert row.observed == pytest.approx(task.y_query.mean())
        assert row.lo < 0.3 < row.hi


def test_multiclass_rows_per_class_and_regression_has_no_interval():
    st = make_stream("multiclass", groups=2)
    prev = simlab.evaluate(Constant(), st, warmup=3, shots=[4], steps=[0],
                           budget=FAST).prevalence
    assert sorted(prev["category"].unique()) == [0, 1, 2]
    np.testing.assert_allclose(prev.sort_values(["wave", "group", "category"])["estimate"],
                               np.tile([0.2, 0.3, 0.5], len(prev) // 3))
    np.testing.assert_allclose(prev.groupby(["wave", "group"])["observed"].sum(), 1.0)
    reg = simlab.evaluate(make_learner("group_mean"), make_stream("regression"), warmup=3,
                          shots=[4], steps=[0], budget=FAST).prevalence
    assert reg["estimate"].notna().all() and reg["lo"].isna().all() and reg["hi"].isna().all()


def test_predictive_interval_matches_the_binomial_and_covers_at_its_level():
    from scipy import stats
    rng = np.random.default_rng(0)
    p = np.r_[np.full(50, 0.3), np.full(50, 0.6)][None]
    lo, hi = predictive_interval(p, np.ones((1, 100)), "binary", rng)   # exact (equal weights)
    count = stats.binom(50, 0.3).pmf(np.arange(51))[:, None] * stats.binom(50, 0.6).pmf(
        np.arange(51))[None]                           # P(A = a, B = b), two independent halves
    cdf = np.cumsum(np.bincount(np.add.outer(np.arange(51), np.arange(51)).ravel(),
                                count.ravel()))
    assert (lo[0], hi[0]) == (np.searchsorted(cdf, 0.05) / 100, np.searchsorted(cdf, 0.95) / 100)
    # unequal survey weights: the parametric bootstrap, close to the exact equal-weight one
    lo_w, hi_w = predictive_interval(p, np.r_[np.ones(99), 1.01][None], "binary", rng,
                                     draws=4000)
    assert abs(lo_w[0] - lo[0]) < 0.02 and abs(hi_w[0] - hi[0]) < 0.02
    # a calibrated learner's bands hold the observed share about 90% of the time
    p = rng.uniform(0.1, 0.9, size=(400, 30))
    y = (rng.random(p.shape) < p).astype(float)
    lo, hi = predictive_interval(p, np.ones_like(p), "binary", rng)
    share = y.mean(1)
    assert 0.85 <= np.mean((lo <= share) & (share <= hi)) <= 0.97
    # padding (weight 0, NaN prediction) is ignored; a group with no respondents has no band
    pad = np.array([[0.5, np.nan], [np.nan, np.nan]])
    lo, hi = predictive_interval(pad, np.array([[1.0, 0.0], [0.0, 0.0]]), "binary", rng)
    assert lo[0] == 0.0 and hi[0] == 1.0 and np.isnan(lo[1])


def test_store_export_and_report_carry_the_estimates(tmp_path: Path):
    db = tmp_path / "r.db"
    sc = tiny(population_cells=8)
    run_sweep(sc, ["group_mean", "maml"], [0], db, executor="inline", quiet=True)
    with Store(db, create=False) as store:
        runs = store.frames()["runs"]
        prev = store.prevalence(runs)
    assert list(prev.columns) == PREVALENCE_EXPORT and len(prev)
    assert set(prev["learner"]) == {"group_mean", "maml"} and prev["truth"].notna().all()
    assert main(["export", str(db), "-o", str(tmp_path / "x.csv")]) == 0
    out = pd.read_csv(tmp_path / "x.prevalence.csv")
    assert list(out.columns) == PREVALENCE_EXPORT and len(out) == len(prev)
    np.testing.assert_allclose(out["estimate"], prev["estimate"])
    assert (out["lo"] <= out["hi"]).all()
    files = report_from_store(db, tmp_path / "rep")
    assert "tiny/prevalence_groups" in files
    md = files["markdown"].read_text()
    assert "90% band" in md and "Share of bands holding the observed share" in md
    # excess loss has its unit in the board, the facts and the glossary (item 8)
    assert "excess loss (nats/respondent above the oracle) \\[95% CI\\]" in md
    assert "| loss (nats/respondent) | regret (nats/respondent above the oracle, summed" in md
    assert "excess loss (nats of log loss per respondent above the oracle): per-seed" in md
    assert "in nats of log loss per respondent (natural log" in md


def test_metric_units():
    assert metric_unit("excess_loss") == "nats of log loss per respondent above the oracle"
    assert metric_unit("loss", classification=False, short=True) == "squared error/respondent"
    assert metric_unit("prevalence_error", short=True) == "proportion, 0-1"
    assert metric_unit("accuracy") == ""


def test_a_store_from_before_the_table_exports_no_estimates(tmp_path: Path):
    db = tmp_path / "old.db"
    run_sweep(tiny(), ["group_mean"], [0], db, executor="inline", quiet=True)
    import sqlite3
    with sqlite3.connect(db) as con:
        con.execute("DROP TABLE prevalence")
    with Store(db, create=False) as store:
        assert store.prevalence(store.frames()["runs"]).empty
        store.export(tmp_path / "x.csv")
    assert pd.read_csv(tmp_path / "x.prevalence.csv").empty


def test_figure_picks_best_baseline_and_meta_learner_and_states_coverage():
    board = pd.DataFrame({"label": ["group_mean", "partial_pooling", "maml", "oracle"],
                          "learner": ["group_mean", "partial_pooling", "maml", "oracle"],
                          "mean_prevalence_error": [0.05, 0.03, 0.04, 0.0]})
    assert pick_learners(board) == ["partial_pooling", "maml"]
    frame = pd.DataFrame({"group": ["a"] * 3 + ["b"] * 3 + ["c"] * 3,
                          "wave": [0, 1, 2] * 3,
                          "observed": [0.1, 0.2, 0.3, 0.5, 0.5, 0.5, 0.9, 0.6, 0.3],
                          "lo": 0.2, "hi": 0.6})
    assert pick_groups(frame, 2) == ["c", "a"]              # steepest fall and rise
    assert coverage(frame) == pytest.approx(7 / 9)          # 0.1 and 0.9 fall outside


# ------------------------------------------------------------------------------ forecast
def test_forecast_predicts_each_groups_population_at_the_next_wave():
    sc = tiny(population_cells=8)
    st = sc.stream(0)
    f = simlab.forecast(sc, FirstFeature(), seed=0)
    assert list(f.columns) == FORECAST_COLUMNS and len(f) == len(st.waves[-1])
    assert (f["wave"] == len(st)).all() and (f["K"] == max(sc.evaluation.shots)).all()
    for row, task in zip(f.itertuples(), st.waves[-1]):
        c = task.cells                                   # poststratified to the population
        want = (c.share / (1 + np.exp(-c.x[:, 0].astype(np.float64)))).sum()
        assert row.group == str(task.info["group"]) and row.estimate == pytest.approx(want)
        y = np.concatenate([task.y_support, task.y_query])
        assert row.last_observed == pytest.approx(y.mean()) and row.n == len(y)
        # n new respondents drawn from the population: Binomial(n, estimate) / n, exact
        assert (row.lo, row.hi) == pytest.approx(
            (binom.ppf(0.05, row.n, want) / row.n, binom.ppf(0.95, row.n, want) / row.n))
        assert row.lo <= row.estimate <= row.hi
    assert f.attrs["source"] == "the scenario's settings"
    assert f.attrs["run"].records["wave"].max() == len(st) - 1     # scored every wave first


def test_forecast_uses_the_tuned_values_of_a_store_and_the_cli_prints_it(tmp_path, capsys):
    db = tmp_path / "r.db"
    sc = Scenario.from_dict(AWAY)
    run_sweep(sc, ["scratch"], [0], db, executor="inline", quiet=True)
    with Store(db, create=False) as store:
        chosen = store.run_info(1)["tuned"]["l2"]
    f = simlab.forecast(sc, "scratch", store=db)
    assert f.attrs["hyperparameters"]["l2"] == chosen != 2.0
    assert "tuned ['l2']" in f.attrs["source"]
    assert simlab.forecast(sc, "scratch").attrs["hyperparameters"]["l2"] == 2.0
    path = tmp_path / "s.toml"
    path.write_text(toml_text(AWAY))
    assert main(["forecast", str(path), "--learner", "group_mean", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "predicted prevalence at the next wave" in out and "last_observed" in out
    assert len(out.strip().splitlines()) == 2 + len(sc.stream(0).waves[-1])
    with pytest.raises(simlab.errors.StoreError, match="no results store"):
        simlab.forecast(sc, "group_mean", store=tmp_path / "missing.db")


@dataclass
class BudgetLog(FirstFeature):
    """FirstFeature that records the ``Budget`` of every meta_fit call (issue 24)."""

    budgets: list[Budget] = dataclasses.field(default_factory=list)

    def meta_fit(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        self.budgets.append(budget)
        return {}


@pytest.mark.parametrize("shots", ["grid", "matched"])
def test_forecasts_last_meta_fit_draws_the_protocols_episodes(shots):
    """The meta-fit after the last wave trains on the episodes of the protocol's online
    meta-fits (K from the scored shots grid), not each task's own support size; with
    "matched" episodes the learner left is the largest K's model, so K-max episodes."""
    sc = tiny().override({"evaluation": {"episodes": {"shots": shots}}})
    model = BudgetLog()
    simlab.forecast(sc, model, seed=0)
    *protocol, last = model.budgets
    grid = tuple(sorted(sc.evaluation.shots))
    assert last == protocol[-1]                       # the protocol's last online meta-fit
    assert last.episodes.grid == (grid if shots == "grid" else grid[-1:])
    assert last.episodes.shots == ("grid" if shots == "grid" else grid[-1])


@dataclass
class IncrementalLog(BudgetLog):
    """An incremental learner (its own state of the past, shown each wave once)."""

    incremental: ClassVar[bool] = True


def test_forecast_shows_an_incremental_learner_the_last_wave_once():
    """An incremental learner is adapted on the last wave's respondents, as the protocol
    scored that wave, without a meta-fit on that wave first (it would count them twice);
    the others get the protocol's meta-fit after the last wave."""
    sc = tiny()
    plain, incremental = BudgetLog(), IncrementalLog()
    simlab.forecast(sc, plain, seed=0)
    simlab.forecast(sc, incremental, seed=0)
    assert len(plain.budgets) == len(incremental.budgets) + 1


def test_forecast_next_wave_errors_name_the_task_and_the_fix():
    """Hand-made next-wave tasks without a wave index forecast; tasks unlike the stream's
    (other features, no support) are one ScenarioError naming next_wave."""
    sc = tiny()
    last = sc.stream(0).waves[-1]
    bare = [dataclasses.replace(t, info={"group": t.info["group"]}) for t in last]
    f = simlab.forecast(sc, FirstFeature(), seed=0, next_wave=bare)
    assert len(f) == len(last) and (f["wave"] == len(sc.stream(0))).all()
    narrow = [dataclasses.replace(t, x_support=t.x_support[:, :1], x_query=t.x_query[:, :1])
              for t in last]
    with pytest.raises(ScenarioError, match="next_wave task 0 .* features"):
        simlab.forecast(sc, FirstFeature(), seed=0, next_wave=narrow)
    with pytest.raises(ScenarioError, match="next_wave has no tasks"):
        simlab.forecast(sc, FirstFeature(), seed=0, next_wave=[])


def test_verdicts_state_the_loss_unit():
    from simlab.evaluation.statistics import compare
    sc = fake_scores({"maml": -0.05, "partial_pooling": 0.0})
    assert "nats/respondent above the oracle, 95% CI" in compare(
        sc, "maml", "partial_pooling").verdict
    assert "nats/respondent, 95% CI" in compare(sc, "maml", "partial_pooling", "loss").verdict
    plain = compare(sc, "maml", "partial_pooling", "prevalence_error").verdict
    assert "nats" not in plain and re.search(r"\(difference -[\d.]+, 95% CI", plain)


def test_chunked_and_matched_runs_give_one_row_per_group_wave_and_k():
    from simlab.learners.base import Episodes
    sc = tiny(population_cells=8)
    st = sc.stream(0)
    kw = {"warmup": 2, "shots": [3, 6], "steps": [0, 1], "budget": FAST}
    one = simlab.evaluate(make_learner("group_mean"), st, **kw).prevalence
    chunked = simlab.evaluate(make_learner("group_mean"), st, max_tasks=3, **kw).prevalence
    pd.testing.assert_frame_equal(one, chunked)                # cells taken per chunk
    matched = simlab.evaluate(make_learner("group_mean"), st, episodes=Episodes("matched"),
                              **kw).prevalence
    assert len(matched) == len(one)
    assert not matched.duplicated(["wave", "shots", "group"]).any()


def test_partial_pooling_adds_its_posterior_interval_of_the_estimate():
    st = tiny(population_cells=12).generate_stream(0)
    kw = {"warmup": 2, "shots": [3, 6], "steps": [0, 5], "budget": FAST}
    prev = simlab.evaluate(make_learner("partial_pooling"), st, **kw).prevalence
    assert prev[["lo_model", "hi_model"]].notna().all().all()
    assert ((prev["lo_model"] <= prev["estimate"]) & (prev["estimate"] <= prev["hi_model"])).all()
    # the uncertainty of the estimate, narrower than where an observed share of n falls
    assert ((prev["hi_model"] - prev["lo_model"]) < (prev["hi"] - prev["lo"])).mean() > 0.8
    again = simlab.evaluate(make_learner("partial_pooling"), st, **kw).prevalence
    pd.testing.assert_frame_equal(prev, again)
    other = simlab.evaluate(make_learner("group_mean"), st, **kw).prevalence
    assert other[["lo_model", "hi_model"]].isna().all().all()
