"""Headroom: how much a nonlinear learner could gain over a hierarchical GLM on a scenario.

At every wave, ``n`` respondents per group are drawn from the whole society (far more than any
few-shot task holds), and two models are fitted on their answers:

- a hierarchical GLM: a pooled linear model, then one per group shrunk toward it (an L2
  penalty on the distance from the pooled coefficients, the empirical-Bayes partial pooling of
  Gelman & Hill 2007, ch. 12, in penalised form) -- the survey statistician's model;
- a flexible model: the same hierarchical GLM on a basis expansion -- a linear spline of each
  continuous feature (hinges at pooled quantiles: kinks, saturation), steps at quartiles
  (thresholds; alone or with hinges), or hinges plus all pairwise products (interactions),
  whichever does best on a validation fifth of the respondents (``BASES``). A generalised
  additive model in the sense of Hastie & Tibshirani (1990), partially pooled like the GLM.
  (An MLP with the group as a one-hot feature, tried first, overfits 400 binary answers per
  group and never beat the GLM even where the truth is a step.)

Both are scored on the group's other members by the expected excess log loss over the oracle
(KL from the true probabilities; squared bias for regression), so the numbers carry no response
noise. ``gain = glm - flexible``: what a learner that can represent the surface could win; about
0 means the GLM is right (a control scenario). The observable ceiling's own excess (a per-group
MLP on the oracle's probabilities, see :mod:`simlab.society.diagnostics.ceiling`) is the floor
both chase.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from simlab.errors import ScenarioError
from simlab.society.diagnostics.ceiling import (Net, expected_excess, fit_net, predict_net,
                                                val_loss)
from simlab.society.run import HasSocietySpec, SocietySpec, as_spec, build_society, seed_streams

if TYPE_CHECKING:  # pragma: no cover
    from simlab.society.base import Society

MIN_TEST = 50
"""Held-out members per group the scores need at least."""
MAX_WAVES = 12
"""Waves the headroom is measured at by default (evenly spaced over a longer stream)."""
VAL_SHARE = 5
"""One respondent in VAL_SHARE is held out to choose the flexible model's basis."""


@dataclass
class WaveHeadroom:
    wave: int
    tick: int
    glm: float          # mean over groups of the GLM's expected excess loss
    flexible: float     # the same for the flexible (spline / pairwise) model
    ceiling: float      # the same for the observable ceiling (soft-label fit on all but test)

    @property
    def gain(self) -> float:
        return self.glm - self.flexible


@dataclass
class _Models:
    pooled: Net | None = None
    glm: Net | None = None
    mlp: Net | None = None
    ceiling: Net | None = None
    events: int = 0


def headroom(scenario: SocietySpec | HasSocietySpec, seed: int = 0, n: int = 400, hidden: int = 32,
             waves: list[int] | None = None) -> list[WaveHeadroom]:
    """Per-wave headroom of ``scenario`` (stream ``seed``) at ``n`` respondents per group, at
    ``waves`` (None: :func:`default_waves`)."""
    from simlab.society.survey import DISTRACTORS, feature_names, features_of

    spec = as_spec(scenario)
    society = build_society(spec, seed_streams(seed))
    design = spec.survey
    sizes = society.social.group_sizes()
    if sizes.min() < n + MIN_TEST:
        raise ScenarioError(f"--respondents {n}: the smallest group has {int(sizes.min())} agents, "
                            f"and the headroom needs n + {MIN_TEST} held-out members per group; "
                            f"lower --respondents to <= {int(sizes.min()) - MIN_TEST}")
    names = [f for f in feature_names(society, design) if not f.startswith(DISTRACTORS)]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 10]))
    want = set(default_waves(design.waves) if waves is None else waves)
    bad = sorted(w for w in want if not 0 <= w < design.waves)
    if bad:
        raise ScenarioError(f"--waves {bad}: the survey has waves 0..{design.waves - 1}")
    for _ in range(spec.burn_in):
        society.step()
    out, models = [], _Models()
    for w in range(design.waves):
        for _ in range(design.every):
            society.step()
        if w in want:
            out.append(_wave(society, names, design.noise_sd, n, hidden, w, rng, models,
                             features_of))
    return out


def default_waves(n_waves: int, most: int = MAX_WAVES) -> list[int]:
    """Every wave of a short stream; ``most`` evenly spaced ones (first and last included) of
    a long one (each wave costs a dozen small fits)."""
    if n_waves <= most:
        return list(range(n_waves))
    return sorted({round(v) for v in np.linspace(0, n_waves - 1, most)})


def _wave(society: Society, names: list[str], noise_sd: float, n: int, hidden: int, wave: int,
          rng: np.random.Generator, models: _Models, features: Any) -> WaveHeadroom:
    target, n_groups = society.target, society.social.n_groups
    c = society.n_classes if target == "multiclass" else 1
    train, test = [], []
    for g in range(n_groups):
        members = society.social.members(g)
        members = members[rng.permutation(len(members))]
        train.append(members[:n])
        test.append(members[n:])
    tr = np.concatenate(train)
    x_tr = features(society, tr, names, noise_sd, rng)
    y_tr = society.respond(tr, rng)
    t_tr = np.eye(c)[y_tr.astype(np.int64)] if target == "multiclass" else y_tr
    first = models.glm is None
    # hierarchical GLM: pooled, then per group shrunk toward the pooled fit
    models.pooled = fit_net(x_tr[None], t_tr[None], np.ones((1, len(tr))), target,
                            society.n_classes, hidden=0, l2=1e-4, iters=300 if first else 100,
                            lr=0.05, init=models.pooled)
    xg, tg = x_tr.reshape(n_groups, n, -1), t_tr.reshape((n_groups, n) + t_tr.shape[1:])
    fit = np.arange(n) < n - n // VAL_SHARE
    glm_best = (np.inf, SHRINK[0])
    for shrink in SHRINK:                    # the GLM gets the same choice of shrinkage
        net = fit_net(xg[:, fit], tg[:, fit], np.ones((n_groups, int(fit.sum()))), target,
                      society.n_classes, hidden=0, l2=shrink, iters=300, lr=0.05,
                      prior=models.pooled)
        loss = val_loss(net, (xg[:, ~fit], tg[:, ~fit], np.ones((n_groups, int((~fit).sum())))),
                         target)
        glm_best = min(glm_best, (loss, shrink))
    models.glm = fit_net(xg, tg, np.ones((n_groups, n)), target, society.n_classes, hidden=0,
                         l2=glm_best[1], iters=300, lr=0.05, prior=models.pooled)
    # flexible: hierarchical GLMs on basis expansions (BASES); the one with the lower loss on
    # a fifth of the respondents is kept
    fit = np.arange(n) < n - n // VAL_SHARE
    best: tuple[float, Net | None, tuple[str, ...], dict[int, np.ndarray]] = \
        (np.inf, None, BASES[0][1], {})
    for quantiles, basis in BASES:
        knots = _knots(x_tr, quantiles)
        e = _expand(xg, knots, basis)
        prior = fit_net(e[:, fit].reshape(1, -1, e.shape[-1]), tg[:, fit].reshape(
            (1, -1) + tg.shape[2:]), np.ones((1, int(fit.sum()) * n_groups)), target,
            society.n_classes, hidden=0, l2=1e-3, iters=400, lr=0.05)
        for shrink in SHRINK:
            net = fit_net(e[:, fit], tg[:, fit], np.ones((n_groups, int(fit.sum()))), target,
                          society.n_classes, hidden=0, l2=shrink, iters=400, lr=0.05,
                          prior=prior)
            loss = val_loss(net, (e[:, ~fit], tg[:, ~fit],
                                   np.ones((n_groups, int((~fit).sum())))), target)
            if loss < best[0]:
                best = (loss, net, basis, knots)
    flexible = best[1]
    assert flexible is not None, "every flexible fit had a NaN validation loss"
    models.mlp = flexible
    # observable ceiling: soft labels on every member but the test ones
    soft = [np.setdiff1d(society.social.members(g), test[g][:MIN_TEST * 4])
            for g in range(n_groups)]
    m = max(map(len, soft))
    xs = np.zeros((n_groups, m, len(names)))
    ts = np.zeros((n_groups, m, c) if c > 1 else (n_groups, m))
    ws = np.zeros((n_groups, m))
    for g, idx in enumerate(soft):
        xs[g, :len(idx)] = features(society, idx, names, noise_sd, rng)
        ts[g, :len(idx)] = society.oracle(idx)
        ws[g, :len(idx)] = 1.0
    fresh = first or len(society.events) != models.events     # refit after a shock
    models.events = len(society.events)
    models.ceiling = fit_net(xs, ts, ws, target, society.n_classes, hidden=16, l2=1e-3,
                             iters=300 if fresh else 80, lr=0.03, rng=rng,
                             init=None if fresh else models.ceiling)
    held = [t[:MIN_TEST * 4] for t in test]
    k = min(map(len, held))
    te = np.stack([h[:k] for h in held])                                 # [G, k]
    x_te = features(society, te.ravel(), names, noise_sd, rng).reshape(n_groups, k, -1)
    oracle = society.oracle(te.ravel()).reshape((n_groups, k) + ((c,) if c > 1 else ()))
    preds = {
        "glm": predict_net(models.glm, x_te, target),
        "flexible": predict_net(flexible, _expand(x_te, best[3], best[2]), target),
        "ceiling": predict_net(models.ceiling, x_te, target),
    }
    scores = {name: float(expected_excess(p, oracle, target).mean(1).mean())
              for name, p in preds.items()}
    return WaveHeadroom(wave=wave, tick=int(society.tick), **scores)


def _knots(x: np.ndarray, q: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
           ) -> dict[int, np.ndarray]:
    """Hinge knots at pooled quantiles of every non-binary feature column."""
    return {j: np.quantile(x[:, j], q) for j in range(x.shape[1])
            if len(np.unique(x[:, j])) > 2}


FINE, COARSE = (0.1, 0.3, 0.5, 0.7, 0.9), (0.25, 0.5, 0.75)
BASES: tuple[tuple[tuple[float, ...], tuple[str, ...]], ...] = (
    (FINE, ("hinge",)), (COARSE, ("step",)), (COARSE, ("hinge", "step")),
    (FINE, ("hinge", "pairs")))
"""Candidate expansions of the flexible model (one is chosen per wave on validation data)."""
SHRINK: tuple[float, ...] = (0.2, 0.02)
"""Candidate penalties toward the pooled fit: a shape the groups share, or their own."""


def _expand(x: np.ndarray, knots: dict[int, np.ndarray], basis: tuple[str, ...]
            ) -> np.ndarray:
    """``[..., D]`` -> the features plus, per ``basis`` entry: ``hinge`` ``max(x_j - k, 0)``
    (a linear spline: kinks, saturation), ``step`` ``1[x_j > k]`` (jumps: thresholds),
    ``pairs`` every product ``x_j x_k`` (interactions); knots k at pooled quantiles."""
    cols = [x]
    if "hinge" in basis:
        cols += [np.maximum(x[..., j:j + 1] - k, 0.0) for j, k in knots.items()]
    if "step" in basis:
        cols += [(x[..., j:j + 1] > k).astype(x.dtype) for j, k in knots.items()]
    if "pairs" in basis:
        d = x.shape[-1]
        cols.append(np.stack([x[..., a] * x[..., b] for a in range(d) for b in range(a + 1, d)],
                             -1))
    return np.concatenate(cols, -1)


def headroom_table(rows: list[WaveHeadroom], n: int) -> str:
    """The printed table and its verdict."""
    lines = [(f"headroom at {n} respondents per group (expected excess loss over the oracle "
              f"on held-out members; gain = glm - flexible)"),
             f"{'wave':>4} {'tick':>5} {'glm':>8} {'flexible':>9} {'gain':>8} {'ceiling':>8}"]
    lines += [f"{r.wave:>4} {r.tick:>5} {r.glm:8.4f} {r.flexible:9.4f} {r.gain:+8.4f} "
              f"{r.ceiling:8.4f}" for r in rows]
    gain = float(np.mean([r.gain for r in rows]))
    best = max(rows, key=lambda r: r.gain)
    lines.append(f"mean gain {gain:+.4f} (max {best.gain:+.4f} at wave {best.wave}); "
                 + ("a nonlinear learner has room to win" if gain >= HEADROOM_MIN else
                    "no headroom: the GLM is (about) right here"))
    return "\n".join(lines)


HEADROOM_MIN = 0.01
"""Mean gain below which a scenario is reported as having no headroom."""

__all__ = ["HEADROOM_MIN", "WaveHeadroom", "default_waves", "headroom", "headroom_table"]
