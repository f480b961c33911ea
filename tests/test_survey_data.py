"""The survey adapter: encoding, missing values, no leakage, weights, skipped cells, errors."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from simlab.tasks.survey_data import SurveyData, survey_stream

pytestmark = pytest.mark.society   # numpy/pandas only


def frame(n_per_cell: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for year in (2000, 2002, 2004):
        for region in ("north", "south", "east"):
            for _ in range(n_per_cell):
                age = rng.normal(45, 15)
                rows.append({"year": year, "region": region, "age": age,
                             "edu": rng.choice(["low", "mid", "high"]),
                             "y": float(rng.random() < 1 / (1 + np.exp(-(age - 45) / 15))),
                             "wt": rng.uniform(0.5, 2.0)})
    return pd.DataFrame(rows)


def spec(**kw) -> SurveyData:
    base = dict(source="x.csv", groups=["region"], time="year", target="y",
                features=["age", "edu"], support=10, query=15)
    return SurveyData(**{**base, **kw})


def test_cells_become_tasks_with_one_hot_categories():
    s = survey_stream(frame(), spec(), seed=0)
    assert len(s) == 3 and all(len(w) == 3 for w in s.waves)
    t = s.waves[0][0]
    assert t.x_support.shape == (10, 4) and t.x_query.shape == (15, 4)
    assert s.meta["feature_names"] == ["age", "edu=high", "edu=low", "edu=mid"]
    np.testing.assert_allclose(t.x_support[:, 1:].sum(axis=1), 1.0)   # one-hot rows
    assert t.oracle_query is None


def test_standardised_with_support_statistics_only():
    df = frame()
    t = survey_stream(df, spec(), seed=0).waves[0][0]
    np.testing.assert_allclose(t.x_support[:, 0].mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(t.x_support[:, 0].std(), 1.0, atol=1e-4)
    assert abs(t.x_query[:, 0].mean()) > 1e-3   # the query is scaled with support statistics


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
    with pytest.raises(ValueError, match=re.escape(message)):
        survey_stream(frame(), spec(**kw), seed=0)


def test_a_single_wave_is_an_error():
    df = frame()
    with pytest.raises(ValueError, match="single value"):
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
