"""The attainable floor on a ``peak`` response: the exact Bayes predictor given the support set.

On a stream whose response is ``[response] kind = "peak"`` (:mod:`simlab.society.response`),
every task t answers ``P(y = 1 | x) = sigmoid(o_t + a_t * exp(-((x_j - l_t) / w)^2 / 2))`` on
one trait column j, with the task's latent ``(o_t, a_t, l_t)`` drawn independently from
known normals. A learner that knows the form and the prior can do no better, on average over
tasks, than the posterior predictive given the task's K support respondents::

    p(y* = 1 | x*, S) = E[ sigmoid(o + a * bump(x*; l)) | S ],
    post(o, a, l | S) ~ N(o; .) N(a; .) N(l; .) prod_k Bernoulli(y_k | x_k; o, a, l).

:class:`Floor` computes this expectation by quadrature on a product grid: Gauss-Hermite
nodes for the offset and the amplitude (their posteriors stay broad, close to Gaussian, at a
few respondents), and equally spaced nodes over +-``span`` prior sds for the location, whose
posterior can be narrow and multimodal (the trapezoid rule; for smooth, Gaussian-tailed
integrands its error falls exponentially with the node count). ``tests/test_controls.py``
checks it against a Monte Carlo posterior. It is batched over tasks in
torch (float64) and chunked so that one call holds at most ``CHUNK_ELEMENTS`` numbers.

It is a *reference*, like the oracle, not a method a survey analyst could run: it is told the
generating form and prior, which travel in ``stream.meta["response_prior"]`` (written by
``society.run.generate_stream``) and reach the learner through ``Learner.observe_stream``.
It sees nothing else a learner may not (no ``oracle_query``, no query labels): its excess loss
is what is *attainable* from K respondents, the floor every learner is read against, while the
oracle's (zero) is what is attainable from infinitely many. It is exact when the answer is the
peak alone: ``linear = 0`` in the response, ``survey.noise_sd = 0``, a family that adds no
state term (the opinion family with ``opinion_effect = 0``, as in ``control_positive``), and no
shock to ``response.strength`` (the prior is recorded once per stream).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from numpy.polynomial.hermite_e import hermegauss

from simlab.errors import LearnerError
from simlab.learners.base import (Adapted, Budget, Learner, SearchSpace, check, check_int,
                                  check_number)
from simlab.learners.episodes import check_steps
from simlab.learners.roles import Role
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task

CHUNK_ELEMENTS = 4_000_000
"""Most grid x respondent numbers one quadrature pass holds (a chunk of tasks)."""
LATENTS: tuple[str, ...] = ("offset", "amplitude", "location")


@dataclass
class Floor(Learner):
    """Exact posterior predictive of a ``peak`` response by quadrature: the attainable floor.

    Knows the response's form and the prior of each task's latent parameters (from
    ``stream.meta["response_prior"]``, or ``prior`` given directly) and nothing a learner may
    not see; a reference, never a baseline or a meta-learner.
    """

    name: ClassVar[str] = "floor"
    role: ClassVar[Role] = "reference"
    search_space: ClassVar[SearchSpace] = {}      # nothing to tune: a reference
    nodes: int = 10               # Gauss-Hermite nodes for the offset and the amplitude
    location_nodes: int = 64      # equally spaced nodes for the location (sharpest posterior)
    span: float = 4.5             # the location grid covers +- span prior sds
    prior: dict[str, Any] | None = None    # None: read from the stream's metadata

    def validate(self) -> None:
        check_int(self.name, "nodes", self.nodes, 2)
        check_int(self.name, "location_nodes", self.location_nodes, 2)
        check_number(self.name, "span", self.span, 1.0, hint=" (prior sds covered by the grid)")
        if self.prior is not None:
            _check_prior(self.prior)

    def observe_stream(self, meta: Mapping[str, Any]) -> None:
        """Take the response prior and the feature names from the stream's metadata (a
        ``prior`` given to the constructor wins)."""
        found = meta.get("response_prior")
        if found is None and self.prior is None:
            raise LearnerError(
                f"floor: the stream declares no response prior (response = "
                f"{meta.get('response', 'unknown')!r}); the floor reference exists only for a "
                "simulated stream with [response] kind = \"peak\" (e.g. "
                "scenarios/control_positive.toml): drop 'floor' from the learners here")
        self._stream_prior: dict[str, Any] | None = None if found is None else dict(found)
        names = meta.get("feature_names")
        self._names: list[str] | None = None if names is None else list(names)
        self._grid: tuple[Any, ...] | None = None

    def build(self) -> None:
        """Nothing to build: the grid is made on the first ``adapt`` (it needs the prior)."""
        if self.spec.target != "binary":
            raise LearnerError(f"floor: the peak response is binary, got a {self.spec.target} "
                               "stream; drop 'floor' from the learners here")
        self._grid = None
        self._stream_prior = None
        self._names = None

    def meta_fit(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        return {"tasks": float(len(tasks)), "seconds": 0.0}

    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> Adapted:
        prior = self._prior()
        grid = self.grid(support.x_support.device)
        col = self._column(prior, support.n_features)
        x = support.x_support[..., col].double()
        y = support.y_support.double()
        w = support.w_support.double()
        log_post = []
        for a, b in _chunks(support.size, support.shots * grid[0].numel()):
            logit = _logits(x[a:b], grid, prior["width"])          # [b, K, N]
            ll = y[a:b, :, None] * torch.nn.functional.logsigmoid(logit) + \
                (1.0 - y[a:b, :, None]) * torch.nn.functional.logsigmoid(-logit)
            log_post.append(grid[3] + (w[a:b, :, None] * ll).sum(1))
        post = torch.softmax(torch.cat(log_post), dim=-1)             # [B, N]
        return FloorAdapted(check_steps(steps, self.name), post, grid, col, prior["width"])

    def grid(self, device: torch.device | str = "cpu") -> tuple[Any, ...]:
        """The product grid: offset, amplitude, location ``[N]`` (location fastest), log prior
        weights ``[N]`` (normalised) and the number of location nodes L; N = nodes^2 * L (a
        latent with sd 0 gets one node)."""
        if self._grid is None:
            prior = self._prior()
            axes, logw = [], []
            for name in LATENTS:
                mean, sd = (float(v) for v in prior[name])
                if sd == 0.0:
                    z, lw = np.zeros(1), np.zeros(1)
                elif name == "location":
                    z = np.linspace(-self.span, self.span, self.location_nodes)
                    lw = -0.5 * z * z
                else:
                    z, w = hermegauss(self.nodes)
                    lw = np.log(w)
                axes.append(torch.as_tensor(mean + sd * z, dtype=torch.float64))
                logw.append(torch.as_tensor(lw, dtype=torch.float64))
            o, a, loc = torch.meshgrid(*axes, indexing="ij")
            lp = logw[0][:, None, None] + logw[1][None, :, None] + logw[2][None, None, :]
            lp = (lp - torch.logsumexp(lp.ravel(), 0)).ravel()
            self._grid = (o.ravel(), a.ravel(), loc.ravel(), lp, len(axes[2]))
        return tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in self._grid)

    def _prior(self) -> dict[str, Any]:
        prior = self.prior if self.prior is not None else self._stream_prior
        if prior is None:
            raise LearnerError("floor: no response prior; run it through the protocol on a "
                               "stream with [response] kind = \"peak\" (its metadata carries "
                               "the prior) or give prior = {...} (see PeakSpec.prior)")
        _check_prior(prior)
        return prior

    def _column(self, prior: Mapping[str, Any], n_features: int) -> int:
        """The support's column of the peak's trait (``prior["column"]`` where given, else
        the trait's position among the stream's feature names)."""
        if "column" in prior:
            col = int(prior["column"])
            check(0 <= col < n_features, self.name, "prior['column']", col,
                  f"the batch has feature columns 0..{n_features - 1}")
            return col
        names = self._names
        trait = prior["trait"]
        if names is None or trait not in names:
            raise LearnerError(f"floor: the peak lies on {trait!r}, which is not among the "
                               f"survey's features ({names}); ask it in survey.features")
        col = names.index(trait)
        check(col < n_features, self.name, "feature names", names,
              f"the batch has only {n_features} feature columns")
        return col


class FloorAdapted(Adapted):
    """Posterior weights over the grid per task; predicts the posterior mean probability."""

    def __init__(self, steps: tuple[int, ...], post: torch.Tensor,
                 grid: tuple[Any, ...], col: int, width: float) -> None:
        self.steps, self.post, self.grid, self.col, self.width = steps, post, grid, col, width

    def predict(self, query: TaskBatch) -> torch.Tensor:
        x = query.x_query[..., self.col].double()
        out = []
        for a, b in _chunks(query.size, x.shape[1] * self.grid[0].numel()):
            p = torch.sigmoid(_logits(x[a:b], self.grid, self.width))   # [b, Q, N]
            out.append(torch.einsum("bqn,bn->bq", p, self.post[a:b]))
        pred = torch.cat(out).to(torch.float32)
        return pred.unsqueeze(0).expand(len(self.steps), *pred.shape)


def _logits(x: torch.Tensor, grid: tuple[Any, ...], width: float) -> torch.Tensor:
    """``o + a * exp(-((x - l) / width)^2 / 2)`` at every grid node: ``[b, n]`` -> ``[b, n, N]``.
    The bump is evaluated once per location node and broadcast over the (offset, amplitude)
    pairs (the grid is their product, location fastest)."""
    o, a, loc = grid[:3]
    n_loc = grid[4]
    u = (x[..., None] - loc[:n_loc]) / width                      # [b, n, L]
    bump = torch.exp(-0.5 * u * u)
    pairs = o.numel() // n_loc
    z = o.view(pairs, n_loc)[:, 0, None] + a.view(pairs, n_loc)[:, 0, None] * bump[..., None, :]
    return z.reshape(*x.shape, -1)


def _chunks(n_tasks: int, per_task: int) -> list[tuple[int, int]]:
    """Task ranges holding at most ``CHUNK_ELEMENTS`` numbers each (at least one task)."""
    size = max(1, CHUNK_ELEMENTS // max(per_task, 1))
    return [(a, min(a + size, n_tasks)) for a in range(0, n_tasks, size)]


def _check_prior(prior: Mapping[str, Any]) -> None:
    """The prior a ``peak`` response declares: one clear error for anything else."""
    if prior.get("kind") != "peak":
        raise LearnerError(f"floor: response prior of kind {prior.get('kind')!r}; the floor "
                           "reference knows only [response] kind = \"peak\"")
    missing = [k for k in (*LATENTS, "width", "trait") if k not in prior]
    if missing:
        raise LearnerError(f"floor: the response prior lacks {missing}; give every field of "
                           "PeakSpec.prior()")
    for name in LATENTS:
        mean, sd = prior[name]
        if not float(sd) >= 0.0:
            raise LearnerError(f"floor: prior {name} sd = {sd!r} must be >= 0")
    if not float(prior["width"]) > 0.0:
        raise LearnerError(f"floor: prior width = {prior['width']!r} must be > 0")
    for name, why in (("linear", "response.linear"), ("noise_sd", "survey.noise_sd")):
        if float(prior.get(name, 0.0)) != 0.0:
            raise LearnerError(f"floor: {why} = {prior[name]} makes the answer more than the "
                               f"peak, so the floor would not be exact; set {why} = 0 for a "
                               "control with a floor, or drop 'floor' from the learners")


__all__ = ["Floor", "FloorAdapted"]
