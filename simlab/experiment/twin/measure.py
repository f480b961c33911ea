"""Measurements a twin is matched on, taken alike on the survey's stream and the twin's: how
much the features explain (pooled R^2), how far their effects differ between groups, and the
prevalence of each (group, wave) cell."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from simlab.tasks.task import TaskStream


def pooled_r2(stream: TaskStream, ridge: float = 1e-3) -> float:
    """How much the features explain, pooled over every task of the stream (support and
    query): McFadden's pseudo-R^2 ``1 - LL(model) / LL(intercept)`` of a (slightly ridge
    penalised) logistic regression for a binary target, the OLS R^2 for a numeric one."""
    from scipy.optimize import minimize
    from scipy.special import expit

    tasks = stream.tasks()
    x = np.concatenate([np.concatenate([t.x_support, t.x_query]) for t in tasks]).astype(
        np.float64)
    y = np.concatenate([np.concatenate([t.y_support, t.y_query]) for t in tasks]).astype(
        np.float64)
    x = np.column_stack([np.ones(len(x)), x])
    if tasks[0].target == "regression":
        beta, *_ = np.linalg.lstsq(x, y, rcond=None)
        sst = float(np.sum((y - y.mean()) ** 2))
        return 1.0 - float(np.sum((y - x @ beta) ** 2)) / sst if sst > 0 else 0.0

    def nll(beta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = x @ beta
        loss = np.mean(np.logaddexp(0.0, eta) - y * eta) + ridge * np.sum(beta[1:] ** 2)
        grad = x.T @ (expit(eta) - y) / len(y)
        grad[1:] += 2 * ridge * beta[1:]
        return float(loss), grad

    fit = minimize(nll, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B")
    p = float(np.clip(y.mean(), 1e-9, 1 - 1e-9))
    null = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    model = float(np.mean(np.logaddexp(0.0, x @ fit.x) - y * (x @ fit.x)))
    return max(0.0, 1.0 - model / null)


def effect_spread(stream: TaskStream, ridge: float = 1e-3) -> float:
    """How far the features' effects differ between groups: per group (its tasks pooled over
    waves) least-squares coefficients b_g with sampling variances s_g^2; per feature the
    between-group variance ``max(0, var_g(b_g) - mean_g(s_g^2))`` (method of moments, Swamy
    1970); returns the root of its mean over the features that vary in every group. Linear
    (probability) scale for every target kind, so the survey and its twin are measured alike."""
    by_group: dict[Any, list[Any]] = {}
    for task in stream.tasks():
        by_group.setdefault(task.info["group"], []).append(task)
    if len(by_group) < 2:
        return 0.0
    coefs: list[np.ndarray] = []
    variances: list[np.ndarray] = []
    varies: list[np.ndarray] = []
    for tasks in by_group.values():
        x = np.concatenate([np.concatenate([t.x_support, t.x_query]) for t in tasks]
                           ).astype(np.float64)
        y = np.concatenate([np.concatenate([t.y_support, t.y_query]) for t in tasks]
                           ).astype(np.float64)
        x1 = np.column_stack([np.ones(len(x)), x])
        gram = x1.T @ x1 + ridge * len(x) * np.diag([0.0] + [1.0] * x.shape[1])
        inv = np.linalg.inv(gram)
        beta = inv @ x1.T @ y
        dof = max(len(y) - x1.shape[1], 1)
        sigma2 = float(np.sum((y - x1 @ beta) ** 2)) / dof
        coefs.append(beta[1:])
        variances.append(sigma2 * np.diag(inv)[1:])
        varies.append(x.std(axis=0) > 1e-6)
    b, s2 = np.array(coefs), np.array(variances)
    ok = np.all(varies, axis=0)
    if not ok.any():
        return 0.0
    between = b[:, ok].var(axis=0, ddof=1) - s2[:, ok].mean(axis=0)
    return float(np.sqrt(np.mean(np.maximum(between, 0.0))))


def survey_cells(resp: pd.DataFrame, names: Sequence[str], times: Sequence[Any], binary: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """[G, W] observed prevalence (weighted mean) per group and wave of the survey's
    respondents, and its sampling variance (Kish effective n); nan where no cell."""
    level = np.full((len(names), len(times)), np.nan)
    var = np.full_like(level, np.nan)
    index = {str(t): w for w, t in enumerate(times)}
    gi = {str(g): k for k, g in enumerate(names)}
    for (t, g), cell in resp.groupby([resp["time"].astype(str), resp["group"].astype(str)]):
        if t not in index or g not in gi:
            continue
        y, w = cell["y"].to_numpy(np.float64), cell["w"].to_numpy(np.float64)
        m = float(np.sum(w * y) / np.sum(w))
        n_eff = float(np.sum(w) ** 2 / np.sum(w ** 2))
        v = m * (1 - m) if binary else float(np.sum(w * (y - m) ** 2) / np.sum(w))
        level[gi[g], index[t]] = m
        var[gi[g], index[t]] = max(v, 1e-6) / n_eff
    return level, var


def twin_cells(stream: TaskStream, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """[G, W] expected prevalence (mean oracle over query respondents) of a twin's cells and
    its sampling variance over the respondents drawn; nan where a wave skips a group."""
    level = np.full((n_groups, len(stream.waves)), np.nan)
    var = np.full_like(level, np.nan)
    for w, wave in enumerate(stream.waves):
        for task in wave:
            o = np.asarray(task.oracle_query, dtype=np.float64)
            g = int(task.info["group"])
            level[g, w] = float(o.mean())
            var[g, w] = max(float(o.var()), 1e-9) / len(o)
    return level, var


def achieved_levels(stream: TaskStream, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Expected prevalence (mean oracle over query respondents) per wave and per group."""
    waves = np.array([np.mean(np.concatenate([t.oracle_query for t in wave]))
                      for wave in stream.waves])
    per_group: list[list[np.ndarray]] = [[] for _ in range(n_groups)]
    for task in stream.tasks():
        per_group[int(task.info["group"])].append(np.asarray(task.oracle_query))
    return waves, np.array([np.mean(np.concatenate(g)) for g in per_group])


__all__ = ["achieved_levels", "effect_spread", "pooled_r2", "survey_cells", "twin_cells"]
