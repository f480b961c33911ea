"""Shocks: timing, event records, validation, and that a shift really moves the task."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.optimize import minimize
from scipy.special import expit

from simlab.society.families.opinion import OpinionParams, OpinionSociety
from simlab.society.graphs import planted_partition
from simlab.society.population import PopulationSpec, make_population
from simlab.society.shocks import (
    AbruptShock,
    DriftShock,
    RegimeShock,
    parse_shocks,
    validate_shocks,
)
from simlab.society.survey import SurveyDesign, sample_wave

pytestmark = pytest.mark.society


def society(shocks=(), seed: int = 0, n_groups: int = 4, size: int = 100, h: float = 0.5,
            **params) -> OpinionSociety:
    rng = np.random.default_rng(seed)
    g = planted_partition(n_groups, size, 6.0, 0.8, rng)
    pop = make_population(g.groups, n_groups, PopulationSpec(heterogeneity=h), rng)
    return OpinionSociety(g, pop, OpinionParams(**params), shocks=list(shocks), rng=seed)


def run(s: OpinionSociety, ticks: int) -> list[tuple[int, str, float]]:
    for _ in range(ticks):
        s.step()
    return [(t, shock.name, size) for t, shock, size in s.events]


def test_abrupt_value_and_delta() -> None:
    s = society([AbruptShock(name="flip", at=3, target="coef.education", value=-1.0),
                 AbruptShock(name="media", at=5, target="media_push", delta=0.2)])
    edu = s.pop.column("education")
    before = s.coef[:, edu].copy()
    run(s, 2)
    assert np.array_equal(s.coef[:, edu], before) and s.params.media_push == 0.0
    events = run(s, 4)
    assert np.allclose(s.coef[:, edu], -1.0) and s.params.media_push == pytest.approx(0.2)
    assert events[0][:2] == (3, "flip") and events[0][2] == pytest.approx(-1.0 - before.mean())
    assert events[1] == (5, "media", pytest.approx(0.2))


def test_per_group_values() -> None:
    s = society([AbruptShock(name="split", at=1, target="intercept", value=[1, 2, 3, 4])])
    run(s, 1)
    assert np.allclose(s.intercept, [1, 2, 3, 4])


def test_drift_spreads_the_total_and_records_one_event() -> None:
    s = society([DriftShock(name="secular", start=2, end=6, target="coef.income", total=-2.0)])
    inc = s.pop.column("income")
    start = s.coef[:, inc].copy()
    path = []
    for _ in range(8):
        s.step()
        path.append(s.coef[0, inc] - start[0])
    assert np.allclose(path, [0, -0.5, -1.0, -1.5, -2.0, -2.0, -2.0, -2.0], atol=1e-6)
    assert [(t, sh.name, sz) for t, sh, sz in s.events] == [(2, "secular", -2.0)]


def test_regime_cycles_and_records_each_switch() -> None:
    s = society([RegimeShock(name="season", period=3, target="media_push",
                             values=[0.0, 0.3], start=2)])
    seen = []
    for _ in range(9):
        s.step()
        seen.append(s.params.media_push)
    assert seen == [0.0, 0.0, 0.0, 0.0, 0.3, 0.3, 0.3, 0.0, 0.0]
    assert [(t, round(sz, 6)) for t, _, sz in s.events] == [(5, 0.3), (8, -0.3)]


def test_spec_validation_and_parsing() -> None:
    with pytest.raises(ValidationError, match="exactly one of value"):
        AbruptShock(name="x", at=2, target="intercept")
    with pytest.raises(ValidationError, match="end=3 must be after start=3"):
        DriftShock(name="x", start=3, end=3, target="intercept", total=1.0)
    with pytest.raises(ValidationError, match="Extra inputs"):
        AbruptShock(name="x", at=2, target="intercept", value=1.0, when=2)
    shocks = parse_shocks([{"kind": "abrupt", "name": "a", "at": 2, "target": "eps",
                            "value": 0.1},
                           {"kind": "regime", "name": "r", "period": 2, "target": "intercept",
                            "values": [0, 1]}])
    assert isinstance(shocks[0], AbruptShock) and isinstance(shocks[1], RegimeShock)
    with pytest.raises(ValueError, match="kind='jump' is unknown; use one of abrupt"):
        parse_shocks([{"kind": "jump", "name": "j"}])


@pytest.mark.parametrize(("shock", "needle"), [
    (AbruptShock(name="m", at=2, target="coef.height", value=1.0),
     "shock 'm': target='coef.height' is not a parameter of the opinion society; allowed: "
     "intercept, coef.age"),
    (AbruptShock(name="late", at=11, target="intercept", value=1.0),
     "shock 'late': at=11 is after the end of the run \\(last tick 10\\)"),
    (DriftShock(name="d", start=5, end=12, target="eps", total=0.1),
     "shock 'd': end=12 is after the end.*choose end <= 11"),
    (AbruptShock(name="w", at=2, target="intercept", value=[1.0, 2.0]),
     "shock 'w': value=\\[1.0, 2.0\\] has 2 entries; target 'intercept' takes a number or 4"),
    (AbruptShock(name="s", at=2, target="eps", value=[0.1, 0.2, 0.3, 0.4]),
     "target 'eps' takes a single number"),
    (AbruptShock(name="neg", at=2, target="eps", delta=-1.0),
     "shock 'neg': delta would set eps=-0.7.*parameters reject"),
    (AbruptShock(name="r", at=2, target="response", value=1.0), "target='response' is not "
     "numeric"),
])
def test_validate_shocks_errors(shock, needle: str) -> None:
    s = society()
    with pytest.raises(ValueError, match=needle):
        validate_shocks([shock], s, n_ticks=10)


def test_validate_accepts_a_good_schedule_and_rejects_duplicate_names() -> None:
    s = society()
    good = [AbruptShock(name="a", at=10, target="coef.age", value=0.0),
            DriftShock(name="b", start=2, end=11, target="media_push", total=0.3),
            RegimeShock(name="c", period=4, target="intercept", values=[0.0, [1, 2, 3, 4]])]
    validate_shocks(good, s, n_ticks=10)
    with pytest.raises(ValueError, match="two shocks are named 'a'"):
        validate_shocks([good[0], good[0]], s, n_ticks=10)


# --- a shift must change how features relate to the response -----------------------------

def log_loss(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    p = np.clip(expit(x @ w), 1e-9, 1 - 1e-9)
    loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    return loss, x.T @ (p - y) / len(y)


def fit_logistic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    res = minimize(log_loss, np.zeros(x.shape[1]), args=(x, y), jac=True, method="L-BFGS-B")
    assert res.success
    return res.x


def survey_ticks(s: OpinionSociety, ticks: range) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    design = SurveyDesign(support=10, query=390)
    out = {}
    for t in ticks:
        while s.tick < t:
            s.step()
        tasks = sample_wave(s, design, t, np.random.default_rng(100 + t))
        x = np.concatenate([np.concatenate([k.x_support, k.x_query]) for k in tasks])
        y = np.concatenate([np.concatenate([k.y_support, k.y_query]) for k in tasks])
        out[t] = (np.column_stack([np.ones(len(x)), x]), y)
    return out


@pytest.mark.parametrize("shocked", [True, False])
def test_a_shift_makes_the_pre_shift_model_measurably_worse(shocked: bool) -> None:
    shocks = [AbruptShock(name="reversal", at=6, target="coef.education", value=-1.5),
              AbruptShock(name="secularise", at=6, target="coef.religiosity", value=1.0)]
    s = society(shocks if shocked else [], seed=11, h=0.0, size=400)
    data = survey_ticks(s, range(1, 9))
    x_fit = np.concatenate([data[t][0] for t in (1, 2, 3, 4)])
    y_fit = np.concatenate([data[t][1] for t in (1, 2, 3, 4)])
    w = fit_logistic(x_fit, y_fit)
    before = log_loss(w, *data[5])[0]
    after = np.mean([log_loss(w, *data[t])[0] for t in (6, 7, 8)])
    print(f"log loss of the pre-shift fit: before {before:.3f}, after {after:.3f}")
    if shocked:
        assert after - before > 0.1, (before, after)
    else:
        assert abs(after - before) < 0.05, (before, after)
