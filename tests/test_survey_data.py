"""The survey adapter: encoding, missing values, no leakage, weights, skipped cells, errors."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from simlab.errors import DataError
from simlab.survey import SurveyData, survey_stream

from helpers.scenarios import frame, spec

pytestmark = pytest.mark.society   # numpy/pandas only


def test_cells_become_tasks_with_one_hot_categories():
    s = survey_stream(frame(), spec(), seed=0)
    assert len(s) == 3 and all(len(w) == 3 for w in s.waves)
    t = s.waves[0][0]
    assert t.x_support.shape == (10, 4) and t.x_query.shape == (15, 4)
    assert s.meta["feature_names"] == ["age", "edu=high", "edu=low", "edu=mid"]
    np.testing.assert_allclose(t.x_support[:, 1:].sum(axis=1), 1.0)   # one-hot rows
    assert t.oracle_query is None


def test_standardised_with_the_first_waves_statistics_only():
    """One scale for the stream, from revealed data only (the first wave's respondents): a
    respondent's encoded value does not depend on the task or K it is in, and later waves'
    values never enter the scale."""
    df = frame()
    s = survey_stream(df, spec(), seed=0)
    first = df.loc[df["year"] == 2000, "age"]
    mean, sd = first.mean(), first.std(ddof=0)
    for wave in s.waves:
        for t in wave:
            for x in (t.x_support, t.x_query):
                raw = x[:, 0] * sd + mean            # back to years: must be real ages
                gap = np.abs(raw[:, None] - df["age"].to_numpy()[None]).min(1)
                assert (gap < 1e-3).all()
    # the same raw age in two different tasks (other group, other wave) encodes the same
    same = df.copy()
    same.loc[(same["year"] == 2004) & (same["region"] == "east"), "age"] = 33.0
    same.loc[(same["year"] == 2002) & (same["region"] == "north"), "age"] = 33.0
    st = survey_stream(same, spec(), seed=0)
    a = next(t for t in st.waves[2] if t.info["group"] == "east")
    b = next(t for t in st.waves[1] if t.info["group"] == "north")
    assert np.unique(np.r_[a.x_support[:, 0], a.x_query[:, 0], b.x_support[:, 0],
                           b.x_query[:, 0]]).size == 1
    # and at any K: a task cut to fewer support respondents keeps each respondent's value
    np.testing.assert_array_equal(a.with_shots(3).x_support, a.x_support[:3])
    # later waves do not move the scale
    later = df.copy()
    later.loc[later["year"] == 2004, "age"] += 30
    np.testing.assert_array_equal(survey_stream(later, spec(), seed=0).waves[0][0].x_support,
                                  s.waves[0][0].x_support)


def test_query_values_never_enter_support_scaling():
    df = frame()
    base = survey_stream(df, spec(), seed=0).waves[0][0]
    ref = survey_stream(df, spec(query=1), seed=0).waves[0][0]
    np.testing.assert_array_equal(base.x_support, ref.x_support)


def test_missing_values_impute_with_indicator_or_drop():
    df = frame()
    df.loc[::7, "age"] = np.nan
    s = survey_stream(df, spec(missing="impute"), seed=0)
    assert "age_missing" in s.meta["feature_names"]
    age, flag = 0, s.meta["feature_names"].index("age_missing")
    n_flagged = 0
    for t in s.tasks():
        x = np.concatenate([t.x_support, t.x_query])
        assert set(np.unique(x[:, flag])) <= {0.0, 1.0}
        miss = x[:, flag] == 1.0
        n_flagged += miss.sum()
        # imputed with the support mean, which standardises to exactly 0
        np.testing.assert_allclose(x[miss, age], 0.0, atol=1e-6)
        assert np.all(x[~miss, age] != 0.0)
    assert n_flagged > 0
    assert all(np.isfinite(t.x_support).all() and np.isfinite(t.x_query).all()
               for t in s.tasks())
    dropped = survey_stream(df, spec(missing="drop"), seed=0)
    assert "age_missing" not in dropped.meta["feature_names"]
    assert dropped.meta["rows"] == len(df) - df["age"].isna().sum()


def test_weights_are_normalised_per_cell():
    s = survey_stream(frame(), spec(weights="wt"), seed=0)
    t = s.waves[1][2]
    w = np.concatenate([t.w_support, t.w_query])
    assert t.w_support is not None and w.min() > 0
    assert w.mean() == pytest.approx(1.0, rel=1e-5)   # raw wt ~ U(0.5, 2) has mean 1.25
    assert 1.2 < w.max() / w.min() <= 4.0 + 1e-5      # rescaled, not flattened: raw ratio <= 4
    for task in s.tasks():
        both = np.concatenate([task.w_support, task.w_query])
        assert both.mean() == pytest.approx(1.0, rel=1e-5)


def test_small_cells_are_skipped_and_counted():
    df = frame()
    df = df[~((df.region == "east") & (df.year == 2002))| (df.index % 10 == 0)]
    s = survey_stream(df, spec(), seed=0)
    assert [len(w) for w in s.waves] == [3, 2, 3]
    assert len(s.meta["skipped_cells"]) == 1 and "east" in s.meta["skipped_cells"][0]


def test_reproducible_draws():
    a = survey_stream(frame(), spec(), seed=3).waves[2][1]
    b = survey_stream(frame(), spec(), seed=3).waves[2][1]
    c = survey_stream(frame(), spec(), seed=4).waves[2][1]
    np.testing.assert_array_equal(a.x_support, b.x_support)
    assert not np.array_equal(a.y_query, c.y_query) or not np.array_equal(a.x_support, c.x_support)


@pytest.mark.parametrize("kw, message", [
    ({"features": ["agee"]}, "close matches: age"),
    ({"groups": ["regoin"]}, "data.groups: column 'regoin'"),
    ({"target": "edu", "features": ["age"]}, "not numeric"),
    ({"support": 100}, "no (group, time) cell has support + min_query = 105"),
])
def test_bad_input_gives_one_clear_message(kw, message):
    with pytest.raises(DataError, match=re.escape(message)):
        survey_stream(frame(), spec(**kw), seed=0)


def test_a_single_wave_is_an_error():
    df = frame()
    with pytest.raises(DataError, match="single value"):
        survey_stream(df[df.year == 2000], spec(), seed=0)


def test_multiclass_target_codes():
    df = frame()
    # tie the category to age so each code's respondents can be recognised from the feature
    df["edu"] = np.where(df["age"] < 35, "low", np.where(df["age"] > 55, "high", "mid"))
    s = survey_stream(df, spec(target="edu", target_kind="multiclass", features=["age"]), seed=0)
    assert s.n_classes == 3 and s.waves[0][0].y_support.dtype == np.int64
    codes = set()
    for t in s.tasks():
        x = np.concatenate([t.x_support[:, 0], t.x_query[:, 0]])   # one monotone scaling
        y = np.concatenate([t.y_support, t.y_query])
        codes |= set(y.tolist())
        # sorted categories: high -> 0, low -> 1, mid -> 2; so low < mid < high in age
        assert x[y == 1].max() < x[y == 2].min() and x[y == 2].max() < x[y == 0].min()
    assert codes == {0, 1, 2}


# --- the data ledger --------------------------------------------------------------------------
def ledger_frame() -> pd.DataFrame:
    """3 years x 3 regions x 30 rows, then: 4 missing targets (2000 north), 3 missing ages
    (2002 south), (2002 east) cut to 13 rows (a task needs K + min_query = 15), (2004 east) cut
    to 8 rows (below K + 1 = 11)."""
    df = frame()
    df.loc[df.index[(df.year == 2000) & (df.region == "north")][:4], "y"] = np.nan
    df.loc[df.index[(df.year == 2002) & (df.region == "south")][:3], "age"] = np.nan
    drop = list(df.index[(df.year == 2002) & (df.region == "east")][13:]) + \
        list(df.index[(df.year == 2004) & (df.region == "east")][8:])
    return df.drop(index=drop).reset_index(drop=True)


def test_ledger_counts_every_row_per_wave():
    df = ledger_frame()
    s = survey_stream(df, spec(missing="drop"), seed=0)
    led = s.meta["ledger"]
    by_time = {r["time"]: r for r in led["waves"]}
    assert [r["time"] for r in led["waves"]] == [2000, 2002, 2004]
    assert by_time[2000] | {} == {**by_time[2000], "read": 90, "missing_target": 4,
                                  "missing_features": 0, "tasks": 3, "used": 75,
                                  "surplus": 1 + 5 + 5, "lost": 4}
    assert by_time[2002]["read"] == 73 and by_time[2002]["missing_features"] == 3
    assert by_time[2002]["few_query_cells"] == 1 and by_time[2002]["few_query_rows"] == 13
    assert by_time[2002]["tasks"] == 2 and by_time[2002]["lost"] == 16
    assert by_time[2004]["read"] == 68 and by_time[2004]["small_cells"] == 1
    assert by_time[2004]["small_rows"] == 8 and by_time[2004]["tasks"] == 2
    parts = ("missing_target", "missing_features", "missing_other", "held_out", "small_rows",
             "few_query_rows", "used", "surplus")
    for row in led["waves"]:
        assert row["read"] == sum(row[k] for k in parts)      # every row is in one bucket
    assert led["total"]["read"] == len(df) == 231
    assert led["lost_share"] == pytest.approx((4 + 16 + 8) / 231)
    assert [len(w) for w in s.waves] == [3, 2, 2]
    assert s.meta["wave_times"] == [2000, 2002, 2004]
    assert [t.info["time"] for t in s.waves[1]] == [2002, 2002]
    assert not s.meta["warnings"]                       # 12% lost < 20%, no wave lost


def test_losing_a_wave_warns_and_strict_makes_it_an_error():
    df = frame()
    df.loc[df.year == 2002, "y"] = np.nan               # a survey year with no valid target
    s = survey_stream(df, spec(), seed=0)
    assert len(s) == 2 and s.meta["wave_times"] == [2000, 2004]
    assert [t.info["time"] for t in s.waves[1]] == [2004] * 3     # labelled by year, not index
    led = s.meta["ledger"]
    assert led["lost_waves"] == [2002] and led["waves"][1]["wave"] is None
    assert any("whole wave(s) lost: survey time(s) 2002" in w for w in s.meta["warnings"])
    assert any("33.3% of the respondents are lost" in w for w in s.meta["warnings"])
    with pytest.raises(DataError, match=re.escape("data.strict = true and the data lost")):
        survey_stream(df, spec(strict=True), seed=0)
    assert not survey_stream(df, spec(max_lost=0.5), seed=0).meta["ledger"]["lost_share"] < 0.3


def test_query_sets_below_the_minimum_are_not_scored_but_counted():
    df = ledger_frame()
    strict_q = survey_stream(df, spec(), seed=0)
    loose_q = survey_stream(df, spec(min_query=3), seed=0)
    assert [len(w) for w in strict_q.waves] == [3, 2, 2]
    assert [len(w) for w in loose_q.waves] == [3, 3, 2]
    assert min(t.n_query for t in loose_q.tasks()) == 3
    assert min(t.n_query for t in strict_q.tasks()) >= 5
    assert strict_q.meta["ledger"]["total"]["few_query_cells"] == 1


# --- leakage -----------------------------------------------------------------------------------
@pytest.mark.parametrize("make, why", [
    (lambda df: df.assign(y2=np.where(df.y == 1, "yes", "no")), "identical to it after recoding"),
    (lambda df: df.assign(y2=df.y * 3 + np.random.default_rng(1).normal(0, .1, len(df))),
     "correlation +0.99"),
    (lambda df: df.assign(y2=np.where(df.y == 1, np.random.default_rng(1).uniform(1, 100, len(df)),
                                      np.random.default_rng(2).uniform(-1, 0, len(df)))),
     "it separates the two answers perfectly"),
])
def test_a_copy_of_the_target_among_the_features_is_an_error(make, why):
    with pytest.raises(DataError, match=re.escape(f"data.features: column 'y2' leaks the "
                                                  f"target 'y' ({why}")):
        survey_stream(make(frame()), spec(features=["age", "edu", "y2"]), seed=0)


def test_a_correlated_copy_of_a_numeric_target_is_an_error():
    df = frame().assign(income=lambda d: d.age * 2 + np.random.default_rng(2).normal(0, 1, len(d)))
    with pytest.raises(DataError, match=r"column 'income' leaks the target 'age' "
                                        r"\(correlation \+0\.99"):
        survey_stream(df, spec(target="age", target_kind="regression",
                               features=["income", "edu"]), seed=0)


def test_the_target_itself_among_the_features_is_refused():
    with pytest.raises(ValueError, match="data.features lists the target column 'y'"):
        spec(features=["age", "y"])


def test_a_suspiciously_good_support_fit_is_a_warning():
    rng = np.random.default_rng(3)
    df = frame().assign(a=lambda d: rng.normal(0, 1, len(d)), b=lambda d: rng.normal(0, 1, len(d)))
    df["score"] = df.a + df.b + rng.normal(0, 0.05, len(df))    # each alone: |r| ~ 0.7
    s = survey_stream(df, spec(target="score", target_kind="regression", features=["a", "b"]),
                      seed=0)
    assert any(w.startswith("suspiciously good fit") for w in s.meta["warnings"])
    plain = survey_stream(frame(), spec(), seed=0)
    assert not any("suspiciously" in w for w in plain.meta["warnings"])


# --- validation --------------------------------------------------------------------------------
def test_stray_text_in_a_numeric_column_is_an_error_with_the_fix():
    df = frame()
    df["age"] = df["age"].round().astype(object)
    df.loc[[3, 17], "age"] = "refused"
    df.loc[40, "age"] = "42 years"
    with pytest.raises(DataError) as err:
        survey_stream(df, spec(), seed=0)
    msg = str(err.value)
    assert "data.features: column 'age' is numeric but has 3 non-numeric cell(s)" in msg
    assert "'refused' (rows 3, 17)" in msg and "'42 years' (row 40)" in msg
    assert "data.missing_codes" in msg and "data.categorical = ['age']" in msg
    df.loc[40, "age"] = 42
    s = survey_stream(df, spec(missing_codes=["refused"]), seed=0)
    assert s.meta["feature_names"][:2] == ["age", "age_missing"]     # one numeric column
    assert len(survey_stream(df, spec(categorical=["age"]), seed=0).meta["feature_names"]) > 20


def test_a_declared_numeric_column_must_be_numbers():
    df = frame()
    df["edu"] = df["edu"].map({"low": "1", "mid": "2", "high": "unknown"})
    with pytest.raises(DataError, match=r"data.numeric: column 'edu' is numeric but has \d+ "
                                        r"non-numeric cell\(s\): 'unknown'"):
        survey_stream(df, spec(numeric=["edu"]), seed=0)
    ok = survey_stream(df, spec(numeric=["edu"], missing_codes=["unknown"]), seed=0)
    assert "edu" in ok.meta["feature_names"] and "edu_missing" in ok.meta["feature_names"]


def test_text_time_needs_an_order():
    df = frame()
    df["year"] = df["year"].map({2000: "spring", 2002: "summer", 2004: "autumn"})
    with pytest.raises(DataError, match=r"data.time: column 'year' holds text .*"
                                        r"data.ordinal.year = \[earliest"):
        survey_stream(df, spec(), seed=0)
    order = ["spring", "summer", "autumn"]
    s = survey_stream(df, spec(ordinal={"year": order}), seed=0)
    assert s.meta["wave_times"] == order                  # not alphabetical
    cat = df.assign(year=pd.Categorical(df.year, categories=order, ordered=True))
    assert survey_stream(cat, spec(), seed=0).meta["wave_times"] == order


def test_groups_equal_to_time_is_refused():
    with pytest.raises(ValueError, match="data.groups and data.time both name 'year'"):
        spec(groups=["year"])


def test_a_zero_one_target_declared_regression_warns():
    s = survey_stream(frame(), spec(target_kind="regression"), seed=0)
    assert any("takes only the values 0 and 1" in w for w in s.meta["warnings"])


# --- designs -----------------------------------------------------------------------------------
def one_year() -> pd.DataFrame:
    df = frame(n_per_cell=60)
    return df[df.year == 2000].reset_index(drop=True)


def test_a_single_year_points_to_the_designs():
    with pytest.raises(DataError, match="data.design = 'replicates'"):
        survey_stream(one_year(), spec(), seed=0)


def test_replicates_split_one_survey_into_seeded_random_waves():
    df = one_year()
    s = survey_stream(df, spec(design="replicates", replicates=4), seed=0)
    assert len(s) == 4 and [len(w) for w in s.waves] == [3] * 4
    assert s.meta["wave_times"] == ["2000 r1", "2000 r2", "2000 r3", "2000 r4"]
    led = s.meta["ledger"]
    assert [r["read"] for r in led["waves"]] == [45] * 4       # 60 per region / 4, per wave
    assert all(r["used"] == 45 for r in led["waves"])
    # each respondent is in one replicate: the support+query ages of a region never repeat
    ages = np.concatenate([np.concatenate([t.x_support[:, 0], t.x_query[:, 0]])
                           for w in s.waves for t in w if t.info["group"] == "north"])
    assert len(ages) == 60
    again = survey_stream(df, spec(design="replicates", replicates=4), seed=0)
    other = survey_stream(df, spec(design="replicates", replicates=4), seed=1)
    np.testing.assert_array_equal(again.waves[2][1].y_query, s.waves[2][1].y_query)
    assert any(not np.array_equal(other.waves[w][g].y_query, s.waves[w][g].y_query)
               for w in range(4) for g in range(3))


def test_new_groups_surveys_each_group_in_one_wave_only():
    df = pd.concat([frame(seed=k).assign(region=lambda d, k=k: d.region + str(k))
                    for k in range(2)], ignore_index=True)      # 6 regions x 3 years
    s = survey_stream(df, spec(design="new_groups"), seed=0)
    seen = [t.info["group"] for t in s.tasks()]
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 6     # never seen twice
    assert [len(w) for w in s.waves] == [2, 2, 2]
    assert s.meta["wave_times"] == [2000, 2002, 2004]
    led = s.meta["ledger"]
    assert led["total"]["held_out"] == 6 * 2 * 30 and led["lost_share"] == 0.0
    assert s.meta["wave_groups"] == [[t.info["group_id"] for t in w] for w in s.waves]
    single = survey_stream(one_year(), spec(design="new_groups", replicates=3), seed=0)
    assert [len(w) for w in single.waves] == [1, 1, 1]
    assert single.meta["wave_times"] == ["2000 set 1", "2000 set 2", "2000 set 3"]
