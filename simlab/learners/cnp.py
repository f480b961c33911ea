"""Conditional Neural Process: an amortised, in-context few-shot learner.

Garnelo et al. (2018), "Conditional Neural Processes", ICML. A deterministic encoder
``h([x_i, y_i]) -> r_i`` reads every support respondent, the representations are averaged into
one task representation ``r`` (permutation-invariant, any support size), and a decoder
``g([x, r])`` gives the predictive distribution of each query respondent. Meta-training
maximises the query log-likelihood over many tasks (the paper's objective; the support set is
the paper's "context", the query set its "targets"). Adaptation is one forward pass: no
gradient steps, so ``adapt(support, steps)`` returns the same prediction for every requested
step count (the adaptation curve is flat by construction; step counts do not apply).

Likelihood by target kind (the paper's Gaussian for regression, as in DeepMind's reference
code, ``sigma = min_sigma + (1 - min_sigma) softplus(raw)`` with ``min_sigma = 0.1``):

* binary: Bernoulli with logit ``g(...)``; multiclass: categorical with C logits;
* regression: Gaussian with mean and standard deviation (heteroscedastic); the contract's
  prediction is the mean, the training loss the Gaussian negative log-likelihood.

Choices for survey tasks (not in the paper):

* ``y`` enters the encoder one-hot for classification (C columns; binary: 2) and as a scalar
  for regression.
* Survey weights weight the aggregation, ``r = sum_i w_i r_i / sum_i w_i`` (unit weights: the
  paper's mean; a zero weight, e.g. padding of a ragged support set, is exactly a missing
  respondent; scaling all weights changes nothing) and the query log-likelihood.
* Group memory (``memory`` > 0, ``learners.memory``): a group's past respondents join its
  support set as down-weighted context rows.

The shared pieces (y encoding, likelihoods, Adapted state) live here; ``learners.pfn`` reuses
them. Everything is batched over tasks with padding masks (the MLPs act on ``[B, N, ...]``)
and trained in the shared episodic loop (``episodes.fit_loop``) with Adam.
"""
from __future__ import annotations

from abc import abstractmethod

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch.func import functional_call

from simlab.learners import nets
from simlab.learners.base import (Adapted, Budget, Float, Int, Learner, SearchSpace,
                                  TaskSpec, check_int, check_number, check_widths)
from simlab.learners.episodes import Params, fit_episodes, make_adam, query_weights
from simlab.learners.losses import task_loss
from simlab.learners.memory import MEMORY_SPACE, GroupMemoryOption
from simlab.learners.relation import MetricAdapted
from simlab.tasks.batch import TaskBatch
from simlab.tasks.task import Task

# ------------------------------------------------------------ shared by the in-context learners


def y_width(spec: TaskSpec) -> int:
    """Columns of the encoded label: C one-hot columns for classification (binary: 2), 1 for
    regression."""
    if spec.target == "regression":
        return 1
    return spec.n_classes if spec.target == "multiclass" else 2


def encode_y(y: torch.Tensor, spec: TaskSpec) -> torch.Tensor:
    """``[B, K] -> [B, K, y_width]``: one-hot classes, or the value itself for regression."""
    if spec.target == "regression":
        return y.unsqueeze(-1).to(torch.float32)
    return F.one_hot(y.long().clamp_min(0), y_width(spec)).to(torch.float32)


def head_width(spec: TaskSpec) -> int:
    """Decoder outputs: 1 logit (binary), C logits (multiclass), mean and raw sigma
    (regression)."""
    return 2 if spec.target == "regression" else spec.out_dim


def gaussian_sigma(raw: torch.Tensor, min_sigma: float) -> torch.Tensor:
    """The reference code's bounded standard deviation ``min + (1 - min) softplus(raw)``."""
    return min_sigma + (1.0 - min_sigma) * F.softplus(raw)


def query_nll(out: torch.Tensor, batch: TaskBatch, spec: TaskSpec, min_sigma: float
              ) -> torch.Tensor:
    """Mean over tasks of the weighted query negative log-likelihood of raw outputs
    ``out [B, Q, head_width]`` (padding masked by ``q_mask``)."""
    w = query_weights(batch)
    if spec.target != "regression":
        return task_loss(out, batch.y_query, spec.target, w).mean()
    mean, sigma = out[..., 0], gaussian_sigma(out[..., 1], min_sigma)
    y = torch.where(batch.q_mask, batch.y_query, mean.detach())  # padding: finite, weight 0
    per = 0.5 * math.log(2 * math.pi) + sigma.log() + 0.5 * ((y - mean) / sigma) ** 2
    return ((per * w).sum(-1) / w.sum(-1).clamp_min(1e-12)).mean()


def contract_prediction(out: torch.Tensor, spec: TaskSpec) -> torch.Tensor:
    """Raw outputs to the contract: P(y=1), class probabilities, or the Gaussian mean."""
    if spec.target == "regression":
        return out[..., 0]
    if spec.target == "multiclass":
        return torch.softmax(out, -1)
    return torch.sigmoid(out[..., 0])


@dataclass
class InContext(GroupMemoryOption, Learner):
    """Shared parts of the amortised learners: Adam on a functional network, episodic
    training of the query log-likelihood, adaptation = reading the support set.

    ``adapt`` takes no gradient steps: every requested step count gets the same prediction,
    so it declares no step count of its own (``Learner.scored_steps`` stays None)."""

    name: ClassVar[str] = "incontext"
    #: ``[evaluation.pretrain]`` may meta-fit it on simulated tasks first (evaluation.pretrain)
    pretrainable: ClassVar[bool] = True

    meta_lr: float = 1e-3                  # Adam step
    grad_clip: float | None = None         # meta-gradient norm cap; None disables
    min_sigma: float = 0.1                 # regression: floor of the predictive sd

    def validate(self) -> None:
        n = self.name
        check_number(n, "meta_lr", self.meta_lr, hint=", e.g. 1e-3")
        check_number(n, "grad_clip", self.grad_clip, optional=True, hint=" (None: no clipping)")
        check_number(n, "min_sigma", self.min_sigma, hint=" (the reference code's 0.1)")

    def build(self) -> None:
        self._net = self.make_net()
        self.params: Params = nets.params_of(self._net)
        self._opt = make_adam(self.params.values(), self.meta_lr)

    @abstractmethod
    def make_net(self) -> torch.nn.Module:
        """The network (its parameters are copied out into ``self.params``)."""

    def outputs(self, params: Params, support: TaskBatch, x_query: torch.Tensor
                ) -> torch.Tensor:
        """Raw outputs ``[B, Q, head_width]`` for ``x_query`` given the support set."""
        return functional_call(self._net, params, (support.x_support,
                                                   encode_y(support.y_support, self.spec),
                                                   support.w_support, x_query))

    def predictions(self, params: Params, support: TaskBatch, x_query: torch.Tensor
                    ) -> torch.Tensor:
        """Contract predictions ``[B, Q]`` or ``[B, Q, C]``."""
        return contract_prediction(self.outputs(params, support, x_query), self.spec)

    def episode_loss(self, batch: TaskBatch) -> torch.Tensor:
        """Weighted query negative log-likelihood given the support set (mean over tasks)."""
        out = self.outputs(self.params, batch, batch.x_query)
        return query_nll(out, batch, self.spec, self.min_sigma)

    def meta_fit(self, tasks: Sequence[Task], budget: Budget) -> dict[str, float]:
        """Episodic training (``episodes.fit_loop``): each meta-iteration scores the queries of
        a meta-batch of freshly split tasks given their support sets; one Adam step."""
        return fit_episodes(self, tasks, budget)

    def adapt(self, support: TaskBatch, steps: Sequence[int]) -> Adapted:
        """Encode the support set (no inner loop): the same prediction for every step count."""
        return MetricAdapted.of(self, support, steps)


# ----------------------------------------------------------------------------- the CNP itself

class CNPNet(torch.nn.Module):
    """Encoder MLP on ``[x, y]``, weighted mean aggregation, decoder MLP on ``[x, r]``."""

    def __init__(self, encoder: torch.nn.Module, decoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, xs: torch.Tensor, ys: torch.Tensor, ws: torch.Tensor, xq: torch.Tensor
                ) -> torch.Tensor:
        r_i = self.encoder(torch.cat((xs, ys), -1))                           # [B, K, R]
        r = (ws.unsqueeze(-1) * r_i).sum(1) / ws.sum(1, keepdim=True).clamp_min(1e-12)
        r = r.unsqueeze(1).expand(-1, xq.shape[1], -1)                        # [B, Q, R]
        return self.decoder(torch.cat((xq, r), -1))


@dataclass
class CNP(InContext):
    """Conditional Neural Process (Garnelo et al., 2018); see the module docstring."""

    name: ClassVar[str] = "cnp"
    search_space: ClassVar[SearchSpace] = {
        "r_dim": Int(8, 128, log=True), "meta_lr": Float(1e-4, 1e-2, log=True),
        "min_sigma": Float(0.01, 0.5, log=True), **MEMORY_SPACE}

    encoder_hidden: tuple[int, ...] = (64, 64)   # h hidden widths (reference code: 128 x 3)
    r_dim: int = 64                              # representation size
    decoder_hidden: tuple[int, ...] = (64, 64)   # g hidden widths

    def validate(self) -> None:
        super().validate()
        check_widths(self.name, "encoder_hidden", self.encoder_hidden)
        check_int(self.name, "r_dim", self.r_dim, 1)
        check_widths(self.name, "decoder_hidden", self.decoder_hidden)

    def make_net(self) -> torch.nn.Module:
        spec, g, dev = self.spec, self.generator, self.device
        enc = nets.mlp([spec.n_features + y_width(spec), *self.encoder_hidden, self.r_dim],
                       g, dev)
        dec = nets.mlp([spec.n_features + self.r_dim, *self.decoder_hidden, head_width(spec)],
                       g, dev)
        return CNPNet(enc, dec)


__all__ = ["CNP", "InContext", "contract_prediction", "encode_y", "query_nll"]
