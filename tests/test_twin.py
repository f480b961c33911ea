"""The simulated twin: matched to the survey's shape; TOML out; the side-by-side report."""
from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simlab.evaluation.result import RECORD_COLUMNS, SHIFT_COLUMNS
from simlab.experiment.config import Scenario, ScenarioError, load_scenario
from simlab.experiment.survey_scenario import SurveyScenario
from simlab.cli import main
from simlab.experiment.twin import dumps_toml, fit_twin, survey_shape, write_fit, write_twin
from simlab.report.twin import build_twin_report, rank_agreement, spearman
from simlab.society.run import generate_stream

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
SMALL = {"data": {"support": 10, "query": 20}, "evaluation": {"shots": [5, 10]}}


@pytest.fixture(scope="module")
def survey() -> SurveyScenario:
    return load_scenario(SCENARIOS / "gss_happiness.toml").override(SMALL)


@pytest.fixture(scope="module")
def fit(survey: SurveyScenario):
    return fit_twin(survey, seed=0, rounds=3)


# --- shape ----------------------------------------------------------------------------------------
def test_twin_matches_the_survey_shape(survey: SurveyScenario, fit) -> None:
    real = survey.stream(0, cache=False)
    twin = Scenario.from_dict(fit.config)
    assert twin.family == "opinion" and twin.name == "gss_happiness_twin"
    assert twin.graph.n_groups == len(real.waves[0]) == 9
    assert twin.survey.waves == len(real) == 7 and twin.survey.every == 2
    assert (twin.survey.support, twin.survey.query) == (10, 20)
    assert "oracle" in twin.evaluation.learners and twin.evaluation.shots == [5, 10]
    stream = generate_stream(twin, 0)
    t, r = stream.waves[0][0], real.waves[0][0]
    assert (t.shots, t.n_query, t.n_features, t.target) == (10, 20, r.n_features, r.target)
    assert [len(w) for w in stream.waves] == [9] * 7
    x = np.concatenate([np.concatenate([k.x_support, k.x_query]) for k in stream.tasks()])
    n_binary = int(np.isin(x, (0.0, 1.0)).all(axis=0).sum())
    assert n_binary == real.meta["feature_kinds"].count("binary") == 22


def test_twin_prevalence_is_calibrated_per_wave_and_group(fit) -> None:
    shape = fit.shape
    assert shape.wave_level.shape == (7,) and shape.group_level.shape == (9,)
    np.testing.assert_allclose(fit.achieved_wave, shape.wave_level, atol=0.02)
    np.testing.assert_allclose(fit.achieved_group, shape.group_level, atol=0.02)
    np.testing.assert_allclose(fit.check_wave, shape.wave_level, atol=0.06)   # another seed
    assert fit.history[-1] < fit.history[0]
    assert 0.5 * shape.signal < fit.signal < 2.0 * shape.signal
    assert "wave 6 (2006)" in fit.summary()


def test_written_twin_loads_and_roundtrips(survey: SurveyScenario, fit, tmp_path: Path) -> None:
    out = write_fit(survey, fit, tmp_path / "twin.toml")
    text = out.read_text()
    assert text.startswith("# Simulated twin of") and "group_levels" in text
    assert load_scenario(out).fingerprint() == Scenario.from_dict(
        fit.config, "x").fingerprint()
    assert tomllib.loads(dumps_toml(fit.config)) == _no_none(fit.config)


def test_quotes_newlines_and_unicode_survive_the_written_twin(survey: SurveyScenario, fit,
                                                              tmp_path: Path) -> None:
    text = 'say "yes" \\ no\nsecond line, tab\t: \u00fcn\u00efc\u00f6d\u00e9 \u2014 \U0001F642'
    config = {**fit.config, "description": text}
    parsed = tomllib.loads(dumps_toml(config, ["a header\nof two lines \U0001F642"]))
    assert parsed["description"] == text and parsed == _no_none(config)
    out = write_fit(survey, dataclasses.replace(fit, config=config), tmp_path / "twin.toml")
    assert load_scenario(out).description == text


def _no_none(d):
    if isinstance(d, dict):
        return {k: _no_none(v) for k, v in d.items() if v is not None and v != {}}
    if isinstance(d, list):
        return [_no_none(v) for v in d]
    return d


def test_regression_target_twin(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 4 * 3 * 40
    region = np.tile(np.repeat(["a", "b", "c"], 40), 4)
    year = np.repeat([1, 2, 3, 4], 120)
    age = rng.normal(0, 1, n)
    y = 2.0 + 0.5 * age + 0.3 * year + (region == "b") + rng.normal(0, 1, n)
    pd.DataFrame({"t": year, "g": region, "age": age, "y": y}).to_csv(tmp_path / "r.csv")
    (tmp_path / "r.toml").write_text(
        '[data]\nsource = "r.csv"\ngroups = ["g"]\ntime = "t"\ntarget = "y"\n'
        'target_kind = "regression"\nfeatures = ["age"]\nsupport = 5\nquery = 20\n'
        '[evaluation]\nwarmup = 1\nshots = [5]\nsteps = [0, 1]\n')
    path = write_twin(tmp_path / "r.toml", rounds=3)
    assert path == tmp_path / "r_twin.toml"
    twin = load_scenario(path)
    assert twin.dynamics.params.response == "continuous" and twin.survey.features == [
        "education"] and twin.graph.n_groups == 3
    stream = generate_stream(twin, 0)
    assert stream.waves[0][0].target == "regression" and stream.waves[0][0].n_features == 1
    shape = survey_shape(load_scenario(tmp_path / "r.toml"))
    means = [np.mean(np.concatenate([t.oracle_query for t in w])) for w in stream.waves]
    np.testing.assert_allclose(means, shape.wave_level, atol=0.1)


def test_twin_refuses_what_it_cannot_match(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="a twin is made from a survey scenario"):
        write_twin(SCENARIOS / "opinion_shift.toml", tmp_path / "x.toml")
    df = pd.DataFrame({"t": np.repeat([1, 2], 30), "g": "a", "x": np.arange(60.0),
                       "y": np.tile(["u", "v", "w"], 20)})
    df.to_csv(tmp_path / "m.csv")
    (tmp_path / "m.toml").write_text(
        '[data]\nsource = "m.csv"\ngroups = ["g"]\ntime = "t"\ntarget = "y"\n'
        'target_kind = "multiclass"\nfeatures = ["x"]\nsupport = 5\nquery = 5\n'
        '[evaluation]\nwarmup = 1\nshots = [5]\n')
    with pytest.raises(ScenarioError, match=re.escape("data.target_kind = 'multiclass' has no "
                                                      "twin yet")):
        write_twin(tmp_path / "m.toml")


# --- the side-by-side report ----------------------------------------------------------------------
def frames(scenario: str, losses: dict[str, float], oracle: bool, first_id: int = 1,
           seeds: int = 3) -> dict[str, pd.DataFrame]:
    """Store-like frames: every learner scored on waves 2..5, loss = its level + noise."""
    rng = np.random.default_rng(len(scenario))
    runs, recs = [], []
    rid = first_id
    for name, level in losses.items():
        for seed in range(seeds):
            runs.append({"run_id": rid, "scenario": scenario, "seed": seed, "learner": name,
                         "learner_name": name, "hyperparameters": "{}", "status": "ok",
                         "error": None, "seconds": 1.0})
            for wave in range(2, 6):
                for steps in (0, 5):
                    loss = level + 0.01 * rng.standard_normal() + (0.05 if steps == 0 else 0)
                    recs += [(rid, wave, 5, steps, "loss", loss),
                             (rid, wave, 5, steps, "accuracy", 1 - loss / 2)]
                    if oracle:
                        recs.append((rid, wave, 5, steps, "excess_loss", loss - 0.5))
            rid += 1
    metrics = pd.DataFrame(recs, columns=["run_id", *RECORD_COLUMNS])
    return {"runs": pd.DataFrame(runs), "metrics": metrics,
            "shifts": pd.DataFrame(columns=["scenario", "seed", *SHIFT_COLUMNS])}


def test_rank_agreement_counts_pairs_and_excludes_the_oracle() -> None:
    real = frames("survey", {"a": 0.55, "b": 0.60, "c": 0.70, "d": 0.80}, oracle=False)
    twin = frames("twin", {"a": 0.56, "b": 0.75, "c": 0.65, "d": 0.85, "oracle": 0.5},
                  oracle=True)
    ag, real_board, twin_board = rank_agreement(real, twin, n_boot=200)
    assert ag.learners == ["a", "b", "c", "d"]
    assert (ag.concordant, ag.discordant) == (5, 1)
    assert ag.kendall_tau == pytest.approx(4 / 6) and ag.spearman_rho == pytest.approx(0.8)
    assert ag.best_real == ag.best_twin == "a"
    assert ag.answer.startswith("Too few to tell: 4 learners x 3 seed(s)")
    flipped = [p for p in ag.pairs if p["agree"] is False]
    assert [(p["a"], p["b"]) for p in flipped] == [("b", "c")]
    assert "mean_excess_loss" not in real_board and twin_board["mean_excess_loss"].notna().all()


def test_spearman_exact_p_value() -> None:
    rho, p = spearman(np.array([1.0, 2, 3]), np.array([1.0, 2, 3]))
    assert rho == pytest.approx(1.0) and p == pytest.approx(1 / 3)
    assert spearman(np.arange(5.0), np.array([1.0, 0, 2, 3, 4]))[1] == pytest.approx(10 / 120)


def test_twin_report_renders_both_leaderboards(tmp_path: Path) -> None:
    real = frames("gss", {"scratch": 0.7, "partial_pooling": 0.6, "maml": 0.65}, oracle=False)
    twin = frames("gss", {"scratch": 0.72, "partial_pooling": 0.61, "maml": 0.66,
                          "oracle": 0.5}, oracle=True)           # same names, same run ids
    files = build_twin_report(real, twin, tmp_path / "rep", "GSS and twin", n_boot=200)
    html, md = files["html"].read_text(), files["markdown"].read_text()
    assert "Too few to tell: 3 learners x 3 seed(s)" in md     # p >= 1/3 with 3 learners
    assert "Survey: gss" in md and "Twin: gss (twin)" in md
    assert "| partial_pooling | 1 | 0.6" in md
    assert "data:image/png;base64," in html and files["figure"].stat().st_size > 1000
    detail = files["report_markdown"].read_text()
    assert "Scenario: gss" in detail and "Scenario: gss (twin)" in detail
    with pytest.raises(ValueError, match="the twin frames hold no runs"):
        build_twin_report(real, {k: v.iloc[0:0] for k, v in twin.items()}, tmp_path / "x", "t")


def test_cmd_twin_writes_runs_both_and_reports(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(1)
    n = 3 * 3 * 40
    age = rng.normal(45, 15, n).round()
    pd.DataFrame({"year": np.repeat([2000, 2002, 2004], 120),
                  "region": np.tile(np.repeat(["north", "south", "east"], 40), 3),
                  "age": age, "edu": rng.choice(["low", "mid", "high"], n),
                  "y": (rng.random(n) < 1 / (1 + np.exp(-(age - 45) / 15))).astype(int)}
                 ).to_csv(tmp_path / "tiny.csv", index=False)
    (tmp_path / "tiny.toml").write_text(
        '[data]\nsource = "tiny.csv"\ngroups = ["region"]\ntime = "year"\ntarget = "y"\n'
        'features = ["age", "edu"]\nsupport = 5\nquery = 10\n'
        '[evaluation]\nwarmup = 1\nshots = [5]\nsteps = [0, 1]\nseeds = 1\n'
        'learners = ["scratch", "partial_pooling"]\n'
        '[learners.partial_pooling]\nem_iterations = 3\n')
    assert main(["twin", str(tmp_path / "tiny.toml"), "--rounds", "2", "--report",
                 str(tmp_path / "rep"), "--db", str(tmp_path / "r.db"), "--executor", "inline",
                 "--seeds", "0,", "-q"]) == 0
    out = capsys.readouterr().out
    assert "twin of tiny: 3 groups x 3 waves (every 2 ticks, design waves), K=5, Q=10, 4 " \
           "features (3 binary, 1 continuous)" in out
    assert re.search(r"effect spread between groups\s+[0-9.]+ \| [0-9.]+ \| \+-", out)
    twin = load_scenario(tmp_path / "tiny_twin.toml")
    assert twin.learners == {"partial_pooling": {"em_iterations": 3}}
    md = (tmp_path / "rep" / "twin.md").read_text()
    assert "learners compared: " in md and "Twin: tiny_twin" in md and "| oracle |" in md
    assert "### How closely the twin matches the survey" in md
    assert "| pooled R^2 of the features |" in md
    assert "Too few to tell: 2 learners x 1 seed(s)" in md
    detail = (tmp_path / "rep" / "report.md").read_text()      # the survey's data ledger
    assert "### Data accounting" in detail and "| 2004 | 2 | 120 |" in detail
    assert detail.count("### Data accounting") == 1              # the twin has none


def test_distractor_columns_are_appended_and_leave_the_rest_unchanged() -> None:
    base = {"name": "d", "dynamics": {"family": "opinion"}, "burn_in": 2,
            "graph": {"kind": "planted_partition", "n_groups": 2, "group_size": 40},
            "survey": {"every": 1, "waves": 2, "support": 5, "query": 10,
                       "features": ["age", "female"]},
            "evaluation": {"warmup": 1, "shots": [5], "learners": ["scratch"]}}
    plain = generate_stream(Scenario.from_dict(base), 0)
    extra = Scenario.from_dict({**base, "survey": {**base["survey"], "distractors": 2,
                                                   "binary_distractors": [0.0, 1.0, 0.5]}})
    stream = generate_stream(extra, 0)
    assert stream.meta["feature_names"] == [
        "age", "female", "distractor_1", "distractor_2", "binary_distractor_1",
        "binary_distractor_2", "binary_distractor_3"]
    first, ref = stream.waves[0][0], plain.waves[0][0]
    np.testing.assert_array_equal(first.x_support[:, :2], ref.x_support)   # same respondents
    np.testing.assert_array_equal(first.y_query, ref.y_query)
    x = np.concatenate([np.concatenate([t.x_support, t.x_query]) for t in stream.tasks()])
    assert (x[:, 4] == 0).all() and (x[:, 5] == 1).all() and set(np.unique(x[:, 6])) == {0, 1}
    assert abs(x[:, 2].mean()) < 0.3 and 0.7 < x[:, 2].std() < 1.3
    with pytest.raises(ScenarioError, match="each entry is a probability in"):
        Scenario.from_dict({**base, "survey": {**base["survey"], "binary_distractors": [1.5]}})


def test_rank_verdict_needs_enough_learners_and_seeds() -> None:
    losses = {"a": 0.50, "b": 0.55, "c": 0.60, "d": 0.65, "e": 0.70}
    shifted = {k: v + 0.01 for k, v in losses.items()}
    ag, _, _ = rank_agreement(frames("s", losses, False), frames("t", shifted, True), n_boot=50)
    assert ag.seeds == 3 and ag.kendall_tau == pytest.approx(1.0) and ag.kendall_p < 0.05
    assert ag.answer.startswith("Yes")
    few_seeds, _, _ = rank_agreement(frames("s", losses, False, seeds=2),
                                     frames("t", shifted, True), n_boot=50)
    assert few_seeds.seeds == 2 and few_seeds.answer.startswith("Too few to tell")
    four = {k: losses[k] for k in "abcd"}
    few, _, _ = rank_agreement(frames("s", four, False),
                               frames("t", {k: v + 0.01 for k, v in four.items()}, True),
                               n_boot=50)
    assert few.kendall_tau == pytest.approx(1.0) and few.answer.startswith("Too few to tell")
    assert "p >= 0.083" in few.answer
    # tau 0.8 with 5 learners: p = 0.083, not significant -> not "Yes"
    swapped = {**shifted, "a": shifted["b"], "b": shifted["a"]}
    ag2, _, _ = rank_agreement(frames("s", losses, False), frames("t", swapped, True),
                               n_boot=50)
    assert ag2.kendall_tau == pytest.approx(0.8) and ag2.kendall_p > 0.05
    assert ag2.answer.startswith("Partly: the twin orders the 5 learners much like")


# --- heterogeneity of effects and designs ---------------------------------------------------------
def spread_frame(sd: float, seed: int = 0, groups: int = 8, years=(2000, 2001, 2002),
                 n: int = 120) -> pd.DataFrame:
    """A numeric survey whose three effects differ between groups by a known sd."""
    rng = np.random.default_rng(seed)
    beta = np.array([1.0, -0.5, 0.5]) + sd * rng.standard_normal((groups, 3))
    parts = []
    for g in range(groups):
        for year in years:
            x = rng.standard_normal((n, 3))
            parts.append(pd.DataFrame({"year": year, "region": f"r{g}", "x1": x[:, 0],
                                       "x2": x[:, 1], "x3": x[:, 2],
                                       "y": x @ beta[g] + 0.2 * g + rng.standard_normal(n)}))
    return pd.concat(parts, ignore_index=True)


def frame_survey(df: pd.DataFrame, **data) -> SurveyScenario:
    return SurveyScenario.from_frame(
        df, groups="region", time="year", target="y", target_kind="regression",
        features=["x1", "x2", "x3"], name="spread", **{"support": 20, "query": 50, **data},
        evaluation={"warmup": 1, "shots": [5, 20], "steps": [0], "learners": ["scratch"]})


def test_effect_spread_recovers_a_known_spread() -> None:
    from simlab.experiment.twin import effect_spread

    flat = effect_spread(frame_survey(spread_frame(0.0)).stream(0, cache=False))
    wide = effect_spread(frame_survey(spread_frame(0.6)).stream(0, cache=False))
    assert flat < 0.2 and 0.42 < wide < 0.8 and wide > 3 * flat


def test_twin_matches_the_between_group_spread_of_effects() -> None:
    survey = frame_survey(spread_frame(0.6))
    fit = fit_twin(survey, rounds=4, heterogeneity=0.2)
    row = next(r for r in fit.fidelity() if r["quantity"] == "effect spread between groups")
    assert row["survey"] == pytest.approx(fit.shape.spread) and row["survey"] > 0.4
    assert row["ok"] and abs(row["twin"] - row["survey"]) <= row["tolerance"]
    assert fit.config["population"]["heterogeneity"] > 0.2      # raised from its start
    fixed = fit_twin(survey, rounds=2, heterogeneity=0.2, match_spread=False)
    assert fixed.config["population"]["heterogeneity"] == 0.2
    assert fixed.spread < fit.spread


def test_twin_reproduces_the_new_groups_and_replicates_designs() -> None:
    df = spread_frame(0.3, groups=6)
    fit = fit_twin(frame_survey(df, design="new_groups"), rounds=1)
    real = frame_survey(df, design="new_groups").stream(0, cache=False)
    groups = fit.config["survey"]["wave_groups"]
    assert [len(g) for g in groups] == [len(w) for w in real.waves] == [2, 2, 2]
    assert sorted(g for wave in groups for g in wave) == list(range(6))             # each group in one wave
    twin = generate_stream(Scenario.from_dict(fit.config), 0)
    assert [[t.info["group"] for t in w] for w in twin.waves] == groups
    one = df[df.year == 2000]
    rep = fit_twin(frame_survey(one, design="replicates", replicates=3, query=15),
                   rounds=1)
    assert rep.shape.times == ["2000 r1", "2000 r2", "2000 r3"]
    assert np.ptp(rep.shape.wave_level) == 0.0 and "wave_groups" not in rep.config["survey"]
    assert "random replicates (exchangeable)" in rep.summary()


def test_wave_groups_must_match_the_waves() -> None:
    base = {"name": "w", "dynamics": {"family": "opinion"}, "burn_in": 2,
            "graph": {"kind": "planted_partition", "n_groups": 3, "group_size": 40},
            "survey": {"every": 1, "waves": 2, "support": 5, "query": 10,
                       "wave_groups": [[0, 1]]}, "evaluation": {"warmup": 1, "shots": [5]}}
    with pytest.raises(ScenarioError, match=r"survey.wave_groups has 1 lists for 2 waves"):
        Scenario.from_dict(base)
    base["survey"]["wave_groups"] = [[0, 1], [2]]
    stream = generate_stream(Scenario.from_dict(base), 0)
    assert [[t.info["group"] for t in w] for w in stream.waves] == [[0, 1], [2]]
