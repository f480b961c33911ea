"""The observable ceiling: E[y | the survey's observed features, group, wave].

The oracle knows the full simulated state (opinions, adoption, personal thresholds); no survey
can. What a perfect learner could reach from the questionnaire is the conditional mean of the
oracle given the asked features, within the group, at this wave. It is estimated from the
simulator itself: every member of the group except the wave's query respondents is "surveyed"
(features with the survey's own transforms and noise, and the oracle's probability as a soft
label -- E[y | x] = E[p(state) | x], so no response noise is fitted), and a small flexible model
is fitted per group (a one-hidden-layer tanh MLP, batched over groups, numpy only). Two fits on
disjoint halves are averaged; half their disagreement is the stated estimation error (the
standard error of the mean of two independent estimates).

The fitter (:func:`fit_net` / :func:`predict_net`) is shared with the headroom diagnostic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import expit, softmax

if TYPE_CHECKING:  # pragma: no cover
    from simlab.society.view import SocietyView

EPS = 1e-7


@dataclass
class Net:
    """Weights of a batch of B small networks (``hidden == 0``: a linear model)."""

    w1: np.ndarray          # [B, D, H] (or [B, D, C] when linear)
    b1: np.ndarray          # [B, 1, H]
    w2: np.ndarray | None   # [B, H, C]
    b2: np.ndarray | None   # [B, 1, C]
    mean: np.ndarray        # [B, 1, D] input standardisation
    sd: np.ndarray
    y_mean: np.ndarray | float = 0.0   # [B, 1, 1] output scale (regression targets)
    y_sd: np.ndarray | float = 1.0

    def params(self) -> list[np.ndarray]:
        return [p for p in (self.w1, self.b1, self.w2, self.b2) if p is not None]


def _forward(net: Net, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    xs = (x - net.mean) / net.sd
    if net.w2 is None:
        return xs @ net.w1 + net.b1, None
    h = np.tanh(xs @ net.w1 + net.b1)
    return h @ net.w2 + net.b2, h


def predict_net(net: Net, x: np.ndarray, target: str,
                offset: np.ndarray | None = None) -> np.ndarray:
    """P(y=1) ``[B, n]``, class probabilities ``[B, n, C]`` or E[y] ``[B, n]`` (``offset``:
    logits added to the output, as in ``fit_net``)."""
    z, _ = _forward(net, x)
    if offset is not None:
        z = z + offset
    if target == "multiclass":
        return softmax(z, axis=-1)
    return expit(z[..., 0]) if target == "binary" else (z * net.y_sd + net.y_mean)[..., 0]


def fit_net(x: np.ndarray, t: np.ndarray, w: np.ndarray, target: str, n_classes: int = 2,
            hidden: int = 32, l2: float = 1e-3, iters: int = 300, lr: float = 0.02,
            rng: np.random.Generator | None = None, init: Net | None = None,
            prior: Net | None = None, offset: np.ndarray | None = None,
            val: tuple[np.ndarray, ...] | None = None, check_every: int = 25) -> Net:
    """Full-batch Adam on B independent problems at once.

    ``x [B, n, D]``; ``t`` soft labels ``[B, n]`` (P(y=1) or E[y]) or ``[B, n, C]``; ``w [B, n]``
    row weights (0 = padding). Loss: weighted cross-entropy (squared error for regression)
    plus ``l2`` times the squared distance of the weights from ``prior`` (0 without one: ridge;
    a pooled fit: partial pooling; the fit then starts at the prior and uses its input and
    output scales, so "distance" is measured in one parametrisation). ``init`` warm-starts
    from earlier weights (and scales). Regression targets are standardised. ``offset``
    (logits ``[B, n, C']``) is added to the network's output: the network then fits what a
    first model missed (boosting's residual step, Friedman 2001). ``val = (x, t, w[, offset])``
    stops early: the weights with the lowest validation loss (checked every ``check_every``
    steps) are returned. The parameters
    are views on one flat vector, so an Adam step is a handful of numpy calls whatever B is
    (these problems are small: call overhead, not arithmetic, is the cost).
    """
    rng = rng or np.random.default_rng(0)
    b, _, d = x.shape
    c = n_classes if target == "multiclass" else 1
    wsum = np.maximum(w.sum(1, keepdims=True), 1e-12)[..., None]          # [B, 1, 1]
    y_mean: np.ndarray | float = 0.0
    y_sd: np.ndarray | float = 1.0
    ref = init if init is not None else prior
    if ref is not None:               # a prior's weights mean what they do on its scale
        mean, sd, y_mean, y_sd = ref.mean, ref.sd, ref.y_mean, ref.y_sd
        hidden = 0 if ref.w2 is None else ref.w1.shape[-1]
    else:
        mean = (w[..., None] * x).sum(1, keepdims=True) / wsum
        var = (w[..., None] * (x - mean) ** 2).sum(1, keepdims=True) / wsum
        sd = np.where(var > 1e-12, np.sqrt(var), 1.0)
        if target == "regression":   # fit standardised targets, predict on the natural scale
            mu = (w * t).sum(1)[:, None, None] / wsum
            y_var = (w * (t - mu[..., 0]) ** 2).sum(1)[:, None, None] / wsum
            y_mean = mu
            y_sd = np.where(y_var > 1e-12, np.sqrt(y_var), 1.0)
    shapes = [(b, d, hidden), (b, 1, hidden), (b, hidden, c), (b, 1, c)] if hidden else \
        [(b, d, c), (b, 1, c)]
    sizes = [int(np.prod(sh)) for sh in shapes]
    theta = np.zeros(sum(sizes), np.float32)
    views = [theta[a:a + n].reshape(sh) for a, n, sh in
             zip(np.cumsum([0] + sizes[:-1]), sizes, shapes)]
    decay = np.concatenate([np.full(n, float(i % 2 == 0), np.float32)
                            for i, n in enumerate(sizes)]) * np.float32(l2)
    if ref is not None:                             # warm start, or start at the prior
        for v, p in zip(views, ref.params()):
            v[...] = p
    elif hidden:
        views[0][...] = rng.standard_normal(shapes[0]) / np.sqrt(d)
        views[2][...] = 0.1 * rng.standard_normal(shapes[2]) / np.sqrt(hidden)
    anchor = np.float32(0.0) if prior is None else np.concatenate(
        [np.broadcast_to(p, sh).ravel() for p, sh in zip(prior.params(), shapes)]
    ).astype(np.float32)
    net = Net(views[0], views[1], views[2], views[3], mean, sd, y_mean, y_sd) if hidden else \
        Net(views[0], views[1], None, None, mean, sd, y_mean, y_sd)
    tt = t if target == "multiclass" else t[..., None]
    if target == "regression":
        tt = (tt - y_mean) / y_sd
    xs = ((x - mean) / sd).astype(np.float32)
    xt = np.ascontiguousarray(xs.transpose(0, 2, 1))
    w, tt = w.astype(np.float32), tt.astype(np.float32)
    wsum = wsum.astype(np.float32)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    off = np.float32(0.0) if offset is None else offset.astype(np.float32)
    best = (np.inf, theta.copy())
    for step in range(1, iters + 1):
        if val is not None and (step - 1) % check_every == 0:
            loss = val_loss(net, val, target)
            if loss < best[0]:
                best = (loss, theta.copy())
        z, h = _logits(net, xs)
        z = z + off
        if target == "multiclass":
            pred = softmax(z, axis=-1)
        else:
            pred = expit(z) if target == "binary" else z
        dz = w[..., None] * (pred - tt) / wsum
        if h is None or net.w2 is None:             # a linear model (both or neither)
            grads = [xt @ dz, dz.sum(1)]
        else:
            dh = (dz @ net.w2.transpose(0, 2, 1)) * (1.0 - h * h)
            grads = [xt @ dh, dh.sum(1), np.ascontiguousarray(h.transpose(0, 2, 1)) @ dz,
                     dz.sum(1)]
        g = np.concatenate([q.ravel() for q in grads])
        g += decay * (theta - anchor)
        m *= np.float32(0.9)
        m += np.float32(0.1) * g
        v *= np.float32(0.999)
        v += np.float32(0.001) * g * g
        theta -= np.float32(lr / (1 - 0.9 ** step)) * m / (
            np.sqrt(v / np.float32(1 - 0.999 ** step)) + np.float32(1e-8))
    if val is not None and val_loss(net, val, target) > best[0]:
        theta[...] = best[1]
    return net


def val_loss(net: Net, val: tuple[np.ndarray, ...], target: str) -> float:
    """Weighted mean loss of ``net`` on ``(x, t, w[, offset])`` (soft or hard labels)."""
    x, t, w = val[:3]
    off = val[3] if len(val) > 3 else None
    p = predict_net(net, x, target, off)
    if target == "regression":
        per = ((p - t) / net.y_sd[..., 0] if isinstance(net.y_sd, np.ndarray)
               else p - t) ** 2
    elif target == "binary":
        q = np.clip(p, EPS, 1 - EPS)
        per = -(t * np.log(q) + (1 - t) * np.log(1 - q))
    else:
        per = -(t * np.log(np.clip(p, EPS, 1.0))).sum(-1)
    return float((per * w).sum() / max(w.sum(), 1e-12))


def _logits(net: Net, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``_forward`` on inputs already standardised."""
    if net.w2 is None:
        return xs @ net.w1 + net.b1, None
    h = np.tanh(xs @ net.w1 + net.b1)
    return h @ net.w2 + net.b2, h


def expected_excess(pred: np.ndarray, oracle: np.ndarray, target: str,
                    sd: float = 1.0) -> np.ndarray:
    """E_y[loss(pred, y) - loss(oracle, y)] per respondent, y drawn from the oracle: the KL
    divergence (log loss) or the squared bias (squared error). Its mean over a sample is the
    excess loss without the response noise."""
    if target == "regression":
        return (pred - oracle) ** 2
    if target == "binary":
        p = np.clip(pred, EPS, 1 - EPS)
        o = np.clip(oracle, EPS, 1 - EPS)
        return o * np.log(o / p) + (1 - o) * np.log((1 - o) / (1 - p))
    p = np.clip(pred, EPS, 1.0)
    o = np.clip(oracle, EPS, 1.0)
    return (o * (np.log(o) - np.log(p))).sum(-1)


# --- the ceiling of one wave -------------------------------------------------------------------
@dataclass
class CeilingEstimator:
    """Fits the per-group ceiling model at each wave; warm-starts from the previous wave's
    weights (the society moves little between waves), so later waves need fewer iterations --
    except after a shock or a change of form (``society.events`` grew), which refits afresh."""

    hidden: int = 16
    iters_first: int = 250
    iters_next: int = 60
    l2: float = 1e-3
    _net: Net | None = None
    _events: int = 0

    def __call__(self, society: SocietyView, x_query: list[np.ndarray],
                 query_idx: list[np.ndarray],
                 features: list[str], noise_sd: float, rng: np.random.Generator
                 ) -> tuple[list[np.ndarray], list[float]]:
        """Ceiling for each group's query respondents (``x_query[g] [Q, D]``, their agent ids
        ``query_idx[g]``) and the estimation error (RMS half-disagreement) per group."""
        from simlab.society.survey import features_of

        target = society.target
        halves: list[list[np.ndarray]] = [[], []]
        for g, q in enumerate(query_idx):
            members = np.setdiff1d(society.social.members(g), q)
            members = members[rng.permutation(len(members))]
            cut = len(members) // 2
            halves[0].append(members[:cut])
            halves[1].append(members[cut:])
        c = society.n_classes if target == "multiclass" else 1
        blocks = halves[0] + halves[1]                  # both halves in one batched fit
        n = max(len(h) for h in blocks)
        x = np.zeros((len(blocks), n, len(features)))
        t = np.zeros((len(blocks), n, c) if c > 1 else (len(blocks), n))
        w = np.zeros((len(blocks), n))
        for b, idx in enumerate(blocks):
            x[b, :len(idx)] = features_of(society, idx, features, noise_sd, rng)
            t[b, :len(idx)] = society.oracle(idx)
            w[b, :len(idx)] = 1.0
        # a shock or a change of form since the last wave: the old fit is no start point
        init = self._net if len(society.events) == self._events else None
        self._events = len(society.events)
        net = fit_net(x, t, w, target, society.n_classes, self.hidden, self.l2,
                      self.iters_first if init is None else self.iters_next, rng=rng, init=init)
        self._net = net
        n_groups = len(query_idx)
        n_query = max(len(v) for v in x_query)
        xq = np.zeros((len(x_query), n_query, len(features)))
        for g, v in enumerate(x_query):
            xq[g, :len(v)] = v
        both = predict_net(net, np.concatenate([xq, xq]), target)
        p1, p2 = both[:n_groups], both[n_groups:]
        mean, half = (p1 + p2) / 2, np.abs(p1 - p2) / 2
        out = [mean[g, :len(v)] for g, v in enumerate(x_query)]
        se = [float(np.sqrt(np.mean(half[g, :len(v)] ** 2))) for g, v in enumerate(x_query)]
        return out, se


def logits_net(net: Net, x: np.ndarray) -> np.ndarray:
    """The raw output ``[B, n, C']`` of ``net`` (an offset for a second fit)."""
    return _forward(net, x)[0]


__all__ = ["CeilingEstimator", "Net", "expected_excess", "fit_net", "logits_net",
           "predict_net", "val_loss"]
