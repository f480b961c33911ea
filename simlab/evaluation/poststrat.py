"""Poststratified group prevalence (MRP): the estimate a survey analyst reports.

Multilevel regression and poststratification (Gelman & Little 1997, "Poststratification into
many categories using hierarchical logistic regression", Survey Methodology; Park, Gelman &
Bafumi 2004): a group's prevalence is not the mean prediction over the few sampled
respondents but the learner's predictions at the group's population *cells* weighted by each
cell's population share, ``sum_c share_c p(x_c)`` (class shares for multiclass, the mean for
regression). Every learner is scored alike: its adapted model predicts the cells.

Where the cells come from (``Task.cells``, a :class:`~simlab.tasks.task.Cells`; a
``Task.info["poststrat"]`` Cells or dict with the same keys is read too):

* a simulation knows its population: ``x`` = its members' observed features (every member, or
  an implicitly stratified subsample: ``simlab.society.survey.population_cells``) and
  ``prevalence`` = the group's true population prevalence (mean true probability / class
  shares / mean), ``source="population"``; :func:`population_cells` builds one by hand;
* a survey may give census margins per group (``[data.census]``; :func:`census_cells` validates
  a table of them, :func:`check_stream_cells` a stream's: shares >= 0 summing to 1 per group,
  every group of the stream covered, every sampled respondent in one of its group's cells),
  ``source="census"``; the reference is then the sample's weighted query mean (the truth is
  unknown);
* otherwise the query sample itself is the population (``source="sample"``): the estimate is
  the weighted mean prediction over the query respondents and the reference their weighted
  mean response -- exactly the protocol's plain ``prevalence_error``. The run log's
  ``log["prevalence"]`` says which was used, so the report can say so.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from simlab.errors import DataError
from simlab.tasks.task import Cells, Task, TaskStream

if TYPE_CHECKING:  # pragma: no cover - torch only to predict: loading a survey checks its
    from simlab.tasks.batch import TaskBatch  # census cells without importing torch

KEY = "poststrat"
SOURCES = ("population", "census")
SUM_TOL = 1e-6


def check_cells(cells: Cells, n_features: int, where: str) -> Cells:
    """One clear error for malformed cells: shape, finiteness, shares >= 0 summing to 1."""
    x, share = np.asarray(cells.x, np.float32), np.asarray(cells.share, np.float64)
    if x.ndim != 2 or x.shape[1] != n_features or share.shape != (x.shape[0],) or not len(x):
        raise DataError(f"{where}: poststrat cells need x [C, {n_features}] and share [C] "
                        f"(C >= 1); got x {x.shape} and share {share.shape}")
    if not (np.isfinite(x).all() and np.isfinite(share).all() and (share >= 0).all()):
        raise DataError(f"{where}: poststrat cell features and shares must be finite and the "
                        "shares >= 0")
    if abs(share.sum() - 1.0) > SUM_TOL:
        raise DataError(f"{where}: the population shares of the cells sum to {share.sum():.6g},"
                        " not 1; normalise the census margins of this group")
    if cells.source not in SOURCES:
        raise DataError(f"{where}: poststrat source={cells.source!r}; use one of {SOURCES}")
    return replace(cells, x=x, share=share)


def cells_of(task: Task) -> Cells | None:
    """The task's validated cells (``task.cells``, else ``info["poststrat"]``), or None."""
    raw = task.cells if task.cells is not None else task.info.get(KEY)
    if raw is None:
        return None
    cells = raw if isinstance(raw, Cells) else Cells(**raw)
    return check_cells(cells, task.n_features, f"task (group {task.info.get('group')!r}, wave "
                       f"{task.info.get('wave')!r})")


def population_cells(x: np.ndarray, truth: np.ndarray, weight: np.ndarray | None = None
                     ) -> Cells:
    """A simulated group's whole population as cells: members' features ``x [N, D]``, their
    true P(y=1) / class probabilities / means ``truth [N(, K)]``, optional weights."""
    w = np.ones(len(x)) if weight is None else np.asarray(weight, np.float64)
    share = w / w.sum()
    prev = np.tensordot(share, np.asarray(truth, np.float64), axes=1)
    return Cells(np.asarray(x, np.float32), share, prev if np.ndim(prev) else float(prev))


def census_cells(margins: Any, group: str, share: str, features: Sequence[str]
                 ) -> dict[Any, Cells]:
    """Census margins (a DataFrame: one row per group x cell, the cell's encoded feature
    columns ``features`` and its population ``share``) as validated :class:`Cells` per group."""
    missing = [c for c in (group, share, *features) if c not in margins.columns]
    if missing:
        raise DataError(f"census margins: columns {missing} are missing; have "
                        f"{list(margins.columns)}")
    out = {}
    for g, rows in margins.groupby(group, sort=False):
        cells = Cells(rows[list(features)].to_numpy(np.float32),
                      rows[share].to_numpy(np.float64), None, "census")
        out[g] = check_cells(cells, len(features), f"census margins of group {g!r}")
    return out


def attach_cells(stream: TaskStream, cells: Mapping[Any, Cells]) -> None:
    """Give every task of ``stream`` its group's cells (``task.cells``); every group must be
    covered and every sampled respondent must fall in one of its group's cells."""
    groups = list(dict.fromkeys(t.info.get("group") for t in stream.tasks()))
    missing = [g for g in groups if g not in cells]
    if missing:
        raise DataError(_no_margins(missing[0], len(groups)))
    stream.waves = [[replace(t, cells=cells.get(t.info.get("group"))) for t in wave]
                    for wave in stream.waves]
    check_stream_cells(stream)


def check_stream_cells(stream: TaskStream) -> None:
    """Census cells on a stream (:func:`attach_cells`, or made per task by the survey adapter):
    all tasks or none have cells, each task's are valid, and every sampled respondent falls in
    one of its group's cells. One clear error naming the group and the fix."""
    tasks = stream.tasks()
    if all(t.cells is None for t in tasks):
        return
    groups = {t.info.get("group") for t in tasks}
    for task in tasks:
        g = task.info.get("group")
        if task.cells is None:
            raise DataError(_no_margins(g, len(groups)))
        where = f"data.census: the margins of group {g!r}"
        c = check_cells(task.cells, task.n_features, where)
        sample = np.concatenate([task.x_support, task.x_query])
        hit = (np.abs(sample[:, None, :] - c.x[None]) < 1e-5).all(-1).any(-1)
        if not hit.all():
            raise DataError(f"{where}: {int((~hit).sum())} sampled respondents (wave "
                            f"{task.info.get('wave')!r}) fall in no census cell; the margins "
                            "must cover every cell of the survey (a respondent with a missing "
                            "feature needs a cell with that feature empty)")


def _no_margins(group: Any, n_groups: int) -> str:
    return (f"data.census: group {group!r} of the survey has no margins; give margins for "
            f"every group ({n_groups} groups), or drop [data.census] to poststratify to the "
            "sample")


@dataclass(frozen=True)
class WaveCells:
    """The cells of one wave's tasks, stacked: ``x [B, C, D]``, ``share [B, C]`` (0 on
    padding), ``truth [B(, K)]`` (NaN where unknown) and the source."""

    x: np.ndarray
    share: np.ndarray
    truth: np.ndarray
    source: str

    def take(self, idx: np.ndarray) -> WaveCells:
        return WaveCells(self.x[idx], self.share[idx], self.truth[idx], self.source)


def wave_cells(tasks: Sequence[Task]) -> WaveCells | None:
    """Stack the tasks' cells; None when no task has any (then the sample is used)."""
    got = [cells_of(t) for t in tasks]
    cells = [c for c in got if c is not None]
    if not cells:
        return None
    if len(cells) < len(got):
        raise DataError("poststrat: some tasks of a wave have population cells and others "
                        "not; give cells for every group (or none)")
    c_max = max(len(c.share) for c in cells)
    x = np.stack([np.pad(c.x, [(0, c_max - len(c.x)), (0, 0)]) for c in cells])
    share = np.stack([np.pad(c.share, (0, c_max - len(c.share))) for c in cells])
    k = tasks[0].n_classes if tasks[0].target == "multiclass" else None
    nan = np.full(k, np.nan) if k else np.nan
    truth = np.stack([np.asarray(nan if c.prevalence is None else c.prevalence, np.float64)
                      for c in cells])
    return WaveCells(x, share, truth, cells[0].source)


def predict_prevalence(adapted: Any, sealed: TaskBatch, cells: WaveCells) -> np.ndarray:
    """The adapted learner's poststratified prevalence per step and task ``[S, B(, K)]``:
    its predictions at the cells (a query batch of cells) weighted by the shares."""
    import torch

    share = torch.as_tensor(cells.share, dtype=sealed.w_query.dtype, device=sealed.x_query.device)
    shape = share.shape
    query = replace(sealed, x_query=torch.as_tensor(cells.x, device=sealed.x_query.device),
                    y_query=torch.full(shape, -1 if sealed.target == "multiclass" else np.nan,
                                       dtype=sealed.y_query.dtype, device=share.device),
                    w_query=share, q_mask=share > 0, oracle_query=None)
    pred = adapted.predict(query).detach().to("cpu", torch.float64).numpy()
    w = cells.share[None, ..., None] if pred.ndim == 4 else cells.share[None]
    return (np.where(w > 0, pred, 0.0) * w).sum(2)


def prevalence_error(est: np.ndarray, cells: WaveCells, observed: np.ndarray,
                     weight: np.ndarray) -> np.ndarray:
    """Mean over groups of |poststratified estimate - reference| ``[S]`` (total variation for
    multiclass). Reference: the true population prevalence where known, else the group's
    weighted observed query mean ``observed [B, Q(, K)]`` (weights ``[B, Q]``)."""
    w = weight / np.maximum(weight.sum(-1, keepdims=True), 1e-12)
    sample = (observed * (w[..., None] if observed.ndim == 3 else w)).sum(1)
    ref = np.where(np.isnan(cells.truth), sample, cells.truth)
    gap = np.abs(est - ref[None])
    gap = 0.5 * gap.sum(-1) if gap.ndim == 3 else gap
    return np.nanmean(gap, axis=-1)


def wave_error(estimates: list[np.ndarray], cells: WaveCells, batch: TaskBatch,
               loss: np.ndarray) -> np.ndarray:
    """The protocol's hook: ``prevalence_error [S]`` of one wave x K from the chunks'
    poststratified estimates (NaN where the learner's loss is, i.e. diverged steps)."""
    observed = batch.y_query.double().numpy()
    if batch.target == "multiclass":
        observed = np.eye(batch.n_classes)[observed.clip(0).astype(np.int64)]
    err = prevalence_error(np.concatenate(estimates, 1), cells, observed,
                           (batch.w_query * batch.q_mask).double().numpy())
    return np.where(np.isfinite(loss), err, np.nan)


# ---------------------------------------------------------------- group x wave estimates
#: the central probability of the stored group prevalence intervals
INTERVAL_LEVEL = 0.90
#: Monte Carlo draws of the query sample per group x wave x K (quantile error ~0.01 at 90%)
INTERVAL_DRAWS = 400
#: at most this many random numbers at once (draws x tasks x query x classes)
_DRAW_ELEMENTS = 2 ** 22
#: one row per group x wave x K (x class for multiclass) of a run (``RunResult.prevalence``)
GROUP_COLUMNS = ["wave", "shots", "group", "category", "estimate", "lo", "hi", "observed",
                 "truth", "n", "lo_model", "hi_model"]


def predictive_interval(pred: np.ndarray, weight: np.ndarray, target: str, rng: np.random.Generator,
                        level: float = INTERVAL_LEVEL, draws: int = INTERVAL_DRAWS
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The ``level`` interval of each group's weighted observed query share if the learner's
    predicted probabilities were true: the distribution of the share of ``y_i ~
    Bernoulli(p_i)`` (per class for multiclass: ``1[y_i = c]``, ``y_i ~ Categorical(p_i)``)
    over the group's query respondents. With equal weights (every simulation) it is exact: the
    Poisson-binomial distribution of the count, by convolution; with unequal survey weights, a
    parametric bootstrap of ``draws`` samples. ``pred [B, Q(, C)]``, ``weight [B, Q]`` (0 on
    padding). Returns ``lo, hi`` ``[B(, C)]``; NaN for regression (a mean predictor states no
    spread) and for a group without finite predictions.

    Why this interval for every learner: it needs only the predictions every learner makes (no
    posterior, which most meta-learners do not have, and no re-adapting), and it answers the
    question the figure asks -- is the observed share where the learner says it should be? --
    so its coverage is a group-level calibration check. It does not include the uncertainty of
    the learner's own parameters, so it is a lower bound on the estimate's total uncertainty.
    """
    b = pred.shape[0]
    shape = (b, pred.shape[2]) if target == "multiclass" else (b,)
    lo, hi = np.full(shape, np.nan), np.full(shape, np.nan)
    if target == "regression":
        return lo, hi
    finite = np.isfinite(pred).all(-1) if target == "multiclass" else np.isfinite(pred)
    w = np.where(finite, weight, 0.0)
    ok = w.sum(-1) > 0
    real = w > 0
    top = np.where(real, w, -np.inf).max(-1, keepdims=True)
    low = np.where(real, w, np.inf).min(-1, keepdims=True)
    equal = ok & (np.abs(top - low) <= 1e-9 * np.abs(top)).all(-1)
    tail = (1.0 - level) / 2
    if equal.any():
        lo[equal], hi[equal] = _poisson_binomial(np.nan_to_num(pred[equal]), real[equal],
                                                 target, tail)
    rest = np.flatnonzero(ok & ~equal)
    per = draws * pred[0].size
    for idx in np.array_split(rest, max(1, -(-per * len(rest) // _DRAW_ELEMENTS))):
        if not len(idx):
            continue
        p, ww = np.nan_to_num(pred[idx]), w[idx] / w[idx].sum(-1, keepdims=True)
        u = rng.random((draws, *ww.shape))
        if target == "multiclass":
            cls = (u[..., None] > np.cumsum(p, -1)[None]).sum(-1).clip(0, p.shape[-1] - 1)
            hits = np.eye(p.shape[-1])[cls]                       # [R, b, Q, C]
            share = (hits * ww[None, ..., None]).sum(2)
        else:
            share = ((u < p[None]) * ww[None]).sum(-1)             # [R, b]
        lo[idx], hi[idx] = np.quantile(share, [tail, 1.0 - tail], axis=0)
    return lo, hi


def _poisson_binomial(p: np.ndarray, real: np.ndarray, target: str, tail: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``tail`` / ``1 - tail`` quantiles (inverted CDF) of the share of successes among
    the ``real`` respondents with success probabilities ``p [b, Q(, C)]``: ``[b(, C)]``."""
    if target == "multiclass":                     # each class's share: a binary problem
        c = p.shape[-1]
        lo, hi = _poisson_binomial(p.transpose(0, 2, 1).reshape(-1, p.shape[1]),
                                   np.repeat(real, c, axis=0), "binary", tail)
        return lo.reshape(-1, c), hi.reshape(-1, c)
    q = np.where(real, np.clip(p, 0.0, 1.0), 0.0)   # a padded respondent never succeeds
    dist = np.zeros((len(q), q.shape[1] + 1))
    dist[:, 0] = 1.0
    for j in range(q.shape[1]):                     # add respondent j: P(count = k)
        pj = q[:, j:j + 1]
        dist[:, 1:] = dist[:, 1:] * (1 - pj) + dist[:, :-1] * pj
        dist[:, :1] *= 1 - pj
    cdf = np.cumsum(dist, -1)
    n = real.sum(-1)
    lo = (cdf < tail - 1e-12).sum(-1) / n
    hi = (cdf < 1.0 - tail - 1e-12).sum(-1) / n
    return lo, hi


def model_band(adapted: Any, sealed: TaskBatch, cells: WaveCells | None, seed: Sequence[int],
               level: float = INTERVAL_LEVEL, draws: int = INTERVAL_DRAWS
               ) -> np.ndarray | None:
    """The ``level`` posterior interval ``[2, B(, K)]`` of each task's prevalence from a model
    that states its posterior (``adapted.prevalence_draws``: partial pooling's Laplace
    posterior), at the cells (else the weighted query respondents); None for the others.
    Unlike :func:`predictive_interval` it is the uncertainty of the estimate itself (of the
    model's coefficients given the support), not of an observed share."""
    draw = getattr(adapted, "prevalence_draws", None)
    if draw is None:
        return None
    import torch

    if cells is not None:
        x = torch.as_tensor(cells.x)
        share = torch.as_tensor(cells.share)
    else:
        x = sealed.x_query
        share = (sealed.w_query * sealed.q_mask).double()
        share = share / share.sum(-1, keepdim=True).clamp_min(1e-12)
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence(list(seed))
                                            .generate_state(1)[0]))
    out = draw(x, share, draws, gen)
    if out is None:
        return None
    tail = (1.0 - level) / 2
    return np.quantile(out.detach().to("cpu", torch.float64).numpy(), [tail, 1 - tail], axis=0)


def group_estimates(groups: Sequence[Any], wave: int, shots: int, pred: np.ndarray,
                    estimate: np.ndarray | None, observed: np.ndarray, weight: np.ndarray,
                    target: str, truth: np.ndarray | None, band: np.ndarray | None = None
                    ) -> dict[str, np.ndarray]:
    """One wave x K's group rows (``GROUP_COLUMNS``) at the learner's scored step:
    ``pred [B, Q(, C)]`` its query predictions, ``estimate [B(, C)]`` its poststratified
    prevalence (None: the weighted mean prediction over the query, the sample's MRP),
    ``observed [B, Q(, C)]`` the responses (one-hot for multiclass), ``weight [B, Q]``,
    ``truth [B(, C)]`` (NaN / None where unknown). The interval is
    :func:`predictive_interval`'s, drawn from a generator seeded by (wave, K) so the same run
    gives the same interval. ``band [2, B(, C)]``: a model's posterior interval of the
    estimate (:func:`model_band`; ``lo_model``, ``hi_model``), NaN where None."""
    w = weight / np.maximum(weight.sum(-1, keepdims=True), 1e-12)
    wc = w[..., None] if target == "multiclass" else w
    share = (observed * wc).sum(1)
    if estimate is None:
        finite = np.isfinite(pred) | (wc == 0)
        estimate = (np.where(wc > 0, pred, 0.0) * wc).sum(1)
        estimate = np.where(finite.all(axis=tuple(range(1, pred.ndim))).reshape(
            (-1,) + (1,) * (estimate.ndim - 1)), estimate, np.nan)
    lo, hi = predictive_interval(pred, weight, target, np.random.default_rng([wave, shots]))
    truth = np.full(estimate.shape, np.nan) if truth is None else np.asarray(truth, np.float64)
    n = (weight > 0).sum(-1)
    classes = estimate.shape[1] if estimate.ndim == 2 else 1
    rep = np.repeat
    return {"wave": np.full(len(groups) * classes, wave, np.int64),
            "shots": np.full(len(groups) * classes, shots, np.int64),
            "group": rep(np.asarray([str(g) for g in groups], object), classes),
            "category": (np.tile(np.arange(classes), len(groups)) if estimate.ndim == 2
                         else np.full(len(groups), -1)),
            "estimate": estimate.ravel(), "lo": lo.ravel(), "hi": hi.ravel(),
            "observed": share.ravel(), "truth": truth.ravel(), "n": rep(n, classes),
            "lo_model": (np.full(estimate.size, np.nan) if band is None else band[0].ravel()),
            "hi_model": (np.full(estimate.size, np.nan) if band is None else band[1].ravel())}
