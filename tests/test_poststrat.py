"""MRP fed by the simulations' known populations and by survey census margins: the cells a
simulated stream carries, the stream file, the run log, the poststratified error by hand, the
``[data.census]`` section and its bad input."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch

import simlab
import simlab.tasks.stream as stream_format
from simlab.errors import ScenarioError
from simlab.experiment.config import Scenario, load_scenario
from simlab.experiment.survey_scenario import SurveyScenario
from simlab.learners import Adapted, Budget, Learner, make_learner
from simlab.report.report import _prevalence_fact
from simlab.society import survey
from simlab.society.run import build_society, seed_streams
from simlab.tasks.batch import TaskBatch
from simlab.tasks.stream import load_stream, save_stream
from simlab.tasks.task import Task

from helpers.scenarios import TINY

FAST = Budget(iterations=2, meta_batch=4)


def tiny(**survey_kw) -> Scenario:
    return Scenario.from_dict({**TINY, "survey": {**TINY["survey"], **survey_kw}})


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
        assert all(t.cells is None for t in tasks)       # the truth never reaches a learner
        return {}

    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> Adapted:
        return SigmoidFirst(tuple(steps))


# ---------------------------------------------------------------------- simulated populations

def test_simulated_tasks_carry_population_cells():
    st = tiny(population_cells=16).generate_stream(0)
    for t in st.tasks():
        c = t.cells
        assert c.source == "population" and c.x.shape == (16, t.n_features)
        np.testing.assert_allclose(c.share, 1 / 16)
        assert 0.0 < c.prevalence < 1.0
    assert all(t.cells is None for t in tiny(population_cells=0).generate_stream(0).tasks())


def test_population_cells_are_members_with_the_groups_exact_prevalence():
    """Every cell is a member's noise-free feature row; the prevalence is the whole group's
    mean true probability; the systematic sample's own mean is within range / M of it."""
    sc = tiny()
    spec = sc.society_spec()
    soc = build_society(spec, seed_streams(3))
    for _ in range(6):
        soc.step()
    names = survey.feature_names(soc, spec.survey)
    rng = np.random.default_rng(0)
    for m in (10, 1000):
        design = spec.survey.model_copy(update={"population_cells": m})
        cells = survey.population_cells(soc, design, names, rng)
        for g, c in enumerate(cells):
            members = soc.social.members(g)
            truth = soc.oracle(members)
            full = survey.features_of(soc, members, names, 0.0, rng)
            np.testing.assert_allclose(c.prevalence, truth.mean())
            match = (c.x[:, None, :] == full[None]).all(-1)        # [cells, members]
            assert match.any(1).all() and len(c.x) == min(m, len(members))
            picked = truth[match.argmax(1)]
            assert abs(picked.mean() - truth.mean()) <= np.ptp(truth) / len(c.x) + 1e-9


def test_simulated_run_logs_population_and_mrp_error_by_hand():
    st = tiny(population_cells=12).generate_stream(0)
    r = simlab.evaluate(FirstFeature(), st, warmup=2, shots=[3], steps=[0], budget=FAST)
    assert r.log["prevalence"] == "population"
    rec = r.records[r.records.metric == "prevalence_error"].sort_values("wave")
    assert len(rec) == len(st) - 2
    want = [np.mean([abs((t.cells.share / (1 + np.exp(-t.cells.x[:, 0].astype(np.float64))))
                         .sum() - t.cells.prevalence) for t in st.waves[w]])
            for w in rec.wave]
    np.testing.assert_allclose(rec.value.to_numpy(), want, rtol=1e-5)
    oracle = simlab.evaluate(make_learner("oracle"), st, warmup=2, shots=[3], steps=[0],
                             budget=FAST)
    assert oracle.log["prevalence"] == "sample"          # the oracle is never poststratified


def test_stream_file_round_trip_with_cells(tmp_path):
    st = tiny(population_cells=8).generate_stream(1)
    first = st.waves[0][0]
    uneven = np.arange(1.0, 9.0) / 36.0
    st.waves[0][0] = replace(first, cells=replace(first.cells, share=uneven))
    back = load_stream(save_stream(st, tmp_path / "s.npz"))
    for a, b in zip(st.tasks(), back.tasks()):
        np.testing.assert_array_equal(a.cells.x, b.cells.x)
        np.testing.assert_allclose(a.cells.share, b.cells.share, rtol=1e-6)
        assert a.cells.prevalence == b.cells.prevalence and b.cells.source == "population"
    assert np.isclose(back.waves[0][0].cells.share.sum(), 1.0, atol=1e-12)


def test_old_stream_files_are_read_and_unknown_ones_refused(tmp_path, monkeypatch):
    st = tiny(population_cells=0).generate_stream(0)
    monkeypatch.setattr(stream_format, "STREAM_FORMAT_VERSION", 1)
    old = load_stream(save_stream(st, tmp_path / "v1.npz"))
    assert len(old.tasks()) == len(st.tasks()) and old.waves[0][0].cells is None
    monkeypatch.setattr(stream_format, "STREAM_FORMAT_VERSION", 99)
    save_stream(st, tmp_path / "v99.npz")
    with pytest.raises(ValueError, match="stream format 99.*delete the file"):
        load_stream(tmp_path / "v99.npz")


def test_cache_key_changes_with_the_format_version(monkeypatch):
    sc = tiny()
    before = stream_format.cache_key(sc, 0)
    monkeypatch.setattr(stream_format, "STREAM_FORMAT_VERSION", 3)
    assert stream_format.cache_key(sc, 0) != before


# ------------------------------------------------------------------------ survey census margins

def survey_frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for year in (2000, 2002, 2004):
        for region in ("north", "south"):
            for _ in range(40):
                female = int(rng.random() < 0.5)
                rows.append({"year": year, "region": region, "female": female,
                             "edu": rng.choice(["low", "mid", "high"]),
                             "y": float(rng.random() < 0.3 + 0.3 * female)})
    return pd.DataFrame(rows)


def margins(share: float = 1 / 6, regions=("north", "south"), edus=("low", "mid", "high")):
    return [{"region": r, "female": f, "edu": e, "share": share}
            for r in regions for f in (0, 1) for e in edus]


def survey_scenario(census=None, **data) -> SurveyScenario:
    return SurveyScenario.from_frame(
        survey_frame(), groups="region", time="year", target="y", features=["female", "edu"],
        support=10, query=15, census=census, name="census_test",
        evaluation={"warmup": 1, "shots": [5], "steps": [0], "seeds": 1,
                    "learners": ["scratch"]}, **data)


def test_census_margins_inline_become_the_tasks_cells():
    sc = survey_scenario({"rows": margins()})
    st = sc.generate_stream(0)
    for t in st.tasks():
        assert t.cells.source == "census" and t.cells.x.shape == (6, t.n_features)
        assert t.cells.prevalence is None
        sample = np.concatenate([t.x_support, t.x_query])       # scaled like the respondents
        assert (sample[:, None, :] == t.cells.x[None]).all(-1).any(-1).all()
    r = simlab.evaluate(FirstFeature(), st, warmup=1, shots=[5], steps=[0], budget=FAST)
    assert r.log["prevalence"] == "census"
    w = 1
    rec = r.records[(r.records.metric == "prevalence_error") & (r.records.wave == w)]
    est = [(t.cells.share / (1 + np.exp(-t.cells.x[:, 0].astype(np.float64)))).sum()
           for t in st.waves[w]]
    ref = [t.y_query.mean() for t in st.waves[w]]
    np.testing.assert_allclose(rec.value.item(), np.mean(np.abs(np.subtract(est, ref))),
                               rtol=1e-5)
    plain = survey_scenario()
    assert all(t.cells is None for t in plain.generate_stream(0).tasks())
    assert simlab.evaluate(FirstFeature(), plain.generate_stream(0), warmup=1, shots=[5],
                           steps=[0], budget=FAST).log["prevalence"] == "sample"


def test_census_margins_file_in_a_scenario_data_section(tmp_path):
    survey_frame().to_csv(tmp_path / "survey.csv", index=False)
    pd.DataFrame(margins()).to_csv(tmp_path / "census.csv", index=False)
    toml = tmp_path / "census.toml"
    toml.write_text('description = "census margins"\n[data]\nsource = "survey.csv"\n'
                    'groups = ["region"]\ntime = "year"\ntarget = "y"\n'
                    'features = ["female", "edu"]\nsupport = 10\nquery = 15\n'
                    '[data.census]\nfile = "census.csv"\n'
                    '[evaluation]\nwarmup = 1\nshots = [5]\nsteps = [0]\nlearners = ["scratch"]\n')
    sc = load_scenario(toml)
    assert {t.cells.source for t in sc.generate_stream(0).tasks()} == {"census"}
    before = sc.stream_fingerprint()
    pd.DataFrame(margins()[::-1]).to_csv(tmp_path / "census.csv", index=False)
    assert load_scenario(toml).stream_fingerprint() != before      # the file is in the key


@pytest.mark.parametrize("census, match", [
    ({"rows": margins(share=1 / 12)}, r"data.census.*group 'north'.*sum to 0\.5.*normalise"),
    ({"rows": margins(edus=("low", "high"), share=1 / 4)}, "fall in no census cell"),
    ({"rows": margins(regions=("north",))}, "group 'south' .*no margins.*data.census"),
    ({"rows": [{k: v for k, v in m.items() if k != "edu"} for m in margins()]},
     r"data.census: column\(s\) \['edu'\] are missing"),
    ({"rows": margins() + [{"region": "north", "female": 0, "edu": "phd", "share": 0.0}]},
     "feature values the survey does not.*edu=phd"),
    ({"rows": [{**m, "share": "half"} for m in margins()]}, "data.census.share"),
    ({"rows": margins(), "file": "c.csv"}, "either as file"),
])
def test_census_margins_bad_input(census, match):
    with pytest.raises((ScenarioError, ValueError), match=match):
        survey_scenario(census)


def test_report_says_how_prevalence_was_estimated():
    runs = pd.DataFrame({"learner": ["maml", "scratch", "oracle"],
                         "prevalence": ["population", "population", "sample"]})
    (key, text), = _prevalence_fact(runs)
    assert key == "prevalence" and text.startswith("poststratified (MRP) to each group's "
                                                   "simulated population")
    assert "the oracle is not poststratified" in text
    mixed = runs.assign(prevalence=["census", "sample", "sample"])
    (_, text), = _prevalence_fact(mixed)
    assert "maml: poststratified (MRP) to the census" in text and "scratch: the mean" in text
    (_, text), = _prevalence_fact(runs.assign(prevalence="sample"))
    assert text.startswith("the mean prediction over the query respondents")
    assert "oracle" not in text
    assert _prevalence_fact(runs.drop(columns="prevalence")) == []


def test_the_run_log_reaches_the_report(tmp_path, monkeypatch):
    from simlab.experiment.sweep import run_sweep
    from simlab.report.store_report import report_from_store

    monkeypatch.setenv("SIMLAB_CACHE", str(tmp_path / "cache"))
    sc = Scenario.from_dict({**TINY, "learners": {}, "evaluation": {
        **TINY["evaluation"], "learners": ["scratch"], "seeds": 1}})
    run_sweep(sc, store=tmp_path / "s.db", executor="inline", quiet=True)
    out = report_from_store(tmp_path / "s.db", tmp_path / "report", figures=False)
    text = out["markdown"].read_text()
    assert "- prevalence: poststratified (MRP) to each group's simulated population" in text


def test_multiclass_population_cells_round_trip(tmp_path):
    """A multiclass society's cells carry the group's true class shares, kept by the file; a
    run poststratifies them (total variation against those shares)."""
    st = Scenario.from_dict({**TINY, "dynamics": {"family": "coevolving"}}).generate_stream(0)
    assert st.target == "multiclass"
    back = load_stream(save_stream(st, tmp_path / "m.npz"))
    for a, b in zip(st.tasks(), back.tasks()):
        assert b.cells.prevalence.shape == (st.n_classes,)
        np.testing.assert_array_equal(a.cells.prevalence, b.cells.prevalence)
        np.testing.assert_allclose(b.cells.prevalence.sum(), 1.0)
    r = simlab.evaluate(make_learner("scratch"), back, warmup=2, shots=[3], steps=[0],
                        budget=FAST)
    assert r.log["prevalence"] == "population"
    rec = r.records[r.records.metric == "prevalence_error"]
    assert len(rec) == len(st) - 2 and ((rec.value > 0) & (rec.value <= 1)).all()
