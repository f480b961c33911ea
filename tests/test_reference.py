"""Reference task families: Finn et al. (2017) sinusoids and linear-Gaussian logistic tasks."""
from __future__ import annotations

import numpy as np
import pytest

from simlab.tasks.reference import (
    linear_gaussian_mean,
    linear_gaussian_tasks,
    sinusoid_tasks,
)

pytestmark = pytest.mark.society   # numpy only: runs without torch


def test_sinusoid_shapes_ranges_and_formula() -> None:
    tasks = sinusoid_tasks(200, 10, 7, np.random.default_rng(0))
    assert len(tasks) == 200
    t = tasks[0]
    assert t.x_support.shape == (10, 1) and t.y_support.shape == (10,)
    assert t.x_query.shape == (7, 1) and t.oracle_query.shape == (7,)
    assert t.target == "regression" and t.x_support.dtype == np.float32
    amp = np.array([t.info["amplitude"] for t in tasks])
    phase = np.array([t.info["phase"] for t in tasks])
    x = np.concatenate([np.r_[t.x_support, t.x_query] for t in tasks])
    assert 0.1 <= amp.min() and amp.max() <= 5.0 and amp.max() > 4.5 and amp.min() < 0.6
    assert 0.0 <= phase.min() and phase.max() <= np.pi
    assert -5.0 <= x.min() and x.max() <= 5.0 and x.min() < -4.9 and x.max() > 4.9
    for t in tasks[:5]:
        expect = t.info["amplitude"] * np.sin(t.x_query[:, 0] - t.info["phase"])
        np.testing.assert_allclose(t.y_query, expect, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(t.y_query, t.oracle_query)   # noise-free by default


def test_sinusoid_noise_and_determinism() -> None:
    a = sinusoid_tasks(5, 4, 4, np.random.default_rng(3), noise=0.3)
    b = sinusoid_tasks(5, 4, 4, np.random.default_rng(3), noise=0.3)
    c = sinusoid_tasks(5, 4, 4, np.random.default_rng(4), noise=0.3)
    assert all(np.array_equal(x.y_support, y.y_support) for x, y in zip(a, b))
    assert not np.array_equal(a[0].y_support, c[0].y_support)
    resid = np.concatenate([t.y_query - t.oracle_query for t in a])
    assert 0.0 < np.abs(resid).max() < 2.0


@pytest.mark.parametrize("kwargs, field", [
    ({"n_tasks": 0, "shots": 5, "query": 5}, "n_tasks"),
    ({"n_tasks": 3, "shots": 0, "query": 5}, "shots"),
    ({"n_tasks": 3, "shots": 5, "query": 2.5}, "query"),
])
def test_bad_sizes_raise_one_clear_error(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        sinusoid_tasks(rng=np.random.default_rng(0), **kwargs)
    with pytest.raises(ValueError, match=field):
        linear_gaussian_tasks(rng=np.random.default_rng(0), **kwargs)


def test_linear_gaussian_bad_family_parameters() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="n_classes"):
        linear_gaussian_tasks(3, 5, 5, rng, n_classes=1)
    with pytest.raises(ValueError, match="spread"):
        linear_gaussian_tasks(3, 5, 5, rng, spread=-1.0)
    with pytest.raises(ValueError, match="noise"):
        sinusoid_tasks(3, 5, 5, rng, noise=-0.1)


def _recovered_coefficients(tasks: list) -> np.ndarray:
    """Per task, least squares of logit(oracle) on [x, 1]: exactly the task's (w_t, b_t)."""
    out = []
    for t in tasks:
        p = t.oracle_query.astype(np.float64)
        design = np.c_[t.x_query, np.ones(t.n_query)]
        coef, *_ = np.linalg.lstsq(design, np.log(p / (1 - p)), rcond=None)
        out.append(coef)
    return np.array(out)


def test_linear_gaussian_weights_are_drawn_around_the_shared_mean() -> None:
    d, spread = 3, 0.4
    tasks = linear_gaussian_tasks(1500, 5, 30, np.random.default_rng(1), n_features=d,
                                  spread=spread, mean_scale=1.0, family_seed=7)
    mean_w, mean_b = linear_gaussian_mean(d, 2, 7, mean_scale=1.0)
    coef = _recovered_coefficients(tasks)
    se = spread / np.sqrt(len(tasks))
    np.testing.assert_allclose(coef.mean(0), np.r_[mean_w[:, 0], mean_b], atol=5 * se)
    np.testing.assert_allclose(coef.std(0), spread, rtol=0.1)
    # spread 0: every task is the same logistic regression (the family's mean)
    same = _recovered_coefficients(linear_gaussian_tasks(
        4, 5, 30, np.random.default_rng(2), n_features=d, spread=0.0, mean_scale=1.0,
        family_seed=7))
    np.testing.assert_allclose(same, np.tile(np.r_[mean_w[:, 0], mean_b], (4, 1)), atol=1e-3)


def test_linear_gaussian_binary_labels_follow_the_oracle() -> None:
    tasks = linear_gaussian_tasks(400, 10, 20, np.random.default_rng(5))
    t = tasks[0]
    assert t.target == "binary" and t.y_query.dtype == np.float32 and t.oracle_query.shape == (20,)
    y = np.concatenate([t.y_query for t in tasks])
    p = np.concatenate([t.oracle_query for t in tasks])
    assert set(np.unique(y)) == {0.0, 1.0} and ((0 < p) & (p < 1)).all()
    # calibration of the labels against the oracle, by decile of p (binomial standard errors)
    bins = np.quantile(p, np.linspace(0, 1, 11))
    idx = np.clip(np.searchsorted(bins, p, side="right") - 1, 0, 9)
    for b in range(10):
        sel = idx == b
        se = np.sqrt(p[sel].mean() * (1 - p[sel].mean()) / sel.sum())
        assert abs(y[sel].mean() - p[sel].mean()) < 4 * se + 1e-3


def test_linear_gaussian_multiclass() -> None:
    tasks = linear_gaussian_tasks(300, 6, 40, np.random.default_rng(9), n_features=2,
                                  n_classes=4)
    t = tasks[0]
    assert t.target == "multiclass" and t.n_classes == 4
    assert t.y_support.dtype == np.int64 and t.oracle_query.shape == (40, 4)
    p = np.concatenate([t.oracle_query for t in tasks])
    y = np.concatenate([t.y_query for t in tasks])
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    freq = np.bincount(y, minlength=4) / len(y)
    se = np.sqrt(p.mean(0) * (1 - p.mean(0)) / len(y))
    assert (np.abs(freq - p.mean(0)) < 4 * se).all()
    # labels agree with the most probable class more often than chance
    assert (y == p.argmax(1)).mean() > 0.4
