"""Prior-fitted network: a small transformer that does few-shot inference in one forward pass.

Müller et al. (2022), "Transformers Can Do Bayesian Inference", ICLR; Hollmann et al. (2025),
"Accurate predictions on small data with a tabular foundation model" (TabPFN), Nature. Each
support respondent is one token, ``embed_x(x) + embed_y(y)``; each query respondent is a token
``embed_x(x)`` without a label. Every layer is a pre-norm transformer block whose attention
follows the PFN mask: **support tokens attend to the support tokens, query tokens attend to the
support tokens only** (not to each other, nor to themselves), so each query's prediction
depends on the support set and its own x alone, and a query set of any size gives the same
per-respondent predictions. Meta-trained on many tasks to maximise the query log-likelihood,
the network approximates the posterior predictive of the task family it was trained on (the
PFN result); adaptation is reading the support set: no gradient steps, so ``adapt`` returns
the same prediction for every requested step count (step counts do not apply).

Choices for survey tasks (not in the papers):

* Survey weights enter the attention as log-weight biases: the attention of any token on
  support respondent i is ``softmax_i(q.k_i / sqrt(d) + log w_i)``, i.e. proportional to
  ``w_i exp(q.k_i / sqrt(d))``: unit weights give plain attention, a zero weight (padding of a
  ragged support set) removes the respondent exactly, and scaling all of a task's weights
  changes nothing. The query log-likelihood is weighted by the query weights.
* The output head and likelihood are those of ``learners.cnp`` (Bernoulli, categorical, or a
  Gaussian with learned sd for regression; PFNs use a binned "Riemann" distribution for
  regression, which a Gaussian replaces here to keep the contract's prediction the mean).
* No positional encoding (respondents are exchangeable), no dropout; group memory
  (``memory`` > 0) appends a group's past respondents as down-weighted support tokens.

Batched over tasks with padding masks (``[B, K + Q, d]`` tokens, one attention call per
layer) and trained in the shared episodic loop with Adam.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from simlab.learners import nets
from simlab.learners.base import Choice, Float, Int, SearchSpace, check, check_int, check_widths
from simlab.learners.cnp import InContext, head_width, y_width
from simlab.learners.memory import MEMORY_SPACE


def support_bias(w: torch.Tensor) -> torch.Tensor:
    """``[B, K]`` weights to additive attention biases ``log w`` (``-inf`` where w = 0). A task
    without any positive weight gets 0 everywhere (uniform attention) rather than NaN."""
    bias = torch.where(w > 0, w.clamp_min(1e-30).log(), -torch.inf)
    return torch.where((w > 0).any(-1, keepdim=True), bias, torch.zeros_like(bias))


class Block(nn.Module):
    """Pre-norm transformer block whose keys and values are the first K tokens only."""

    def __init__(self, d: int, heads: int, ff: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))

    def forward(self, h: torch.Tensor, k: int, bias: torch.Tensor) -> torch.Tensor:
        """``h [B, N, d]`` (support tokens first), ``bias [B, 1, 1, K]``."""
        b, n, d = h.shape
        q, key, v = self.qkv(self.norm1(h)).split(d, -1)
        split = lambda t: t.reshape(b, -1, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        # explicit softmax attention: for these few tokens it is cheaper than the fused
        # CPU kernel (measured: its backward took half of a meta-iteration)
        q, key, v = split(q), split(key[:, :k]), split(v[:, :k])
        scores = q @ key.transpose(-1, -2) * (d // self.heads) ** -0.5 + bias
        att = torch.softmax(scores, -1) @ v                            # [B, H, N, d / H]
        h = h + self.out(att.transpose(1, 2).reshape(b, n, d))
        return h + self.ff(self.norm2(h))


class PFNNet(nn.Module):
    """Token embeddings, ``layers`` PFN-masked blocks, and an MLP head on the query tokens."""

    def __init__(self, n_features: int, y_dim: int, d: int, heads: int, layers: int, ff: int,
                 head: nn.Module) -> None:
        super().__init__()
        self.embed_x, self.embed_y = nn.Linear(n_features, d), nn.Linear(y_dim, d)
        self.blocks = nn.ModuleList(Block(d, heads, ff) for _ in range(layers))
        self.norm, self.head = nn.LayerNorm(d), head

    def forward(self, xs: torch.Tensor, ys: torch.Tensor, ws: torch.Tensor, xq: torch.Tensor
                ) -> torch.Tensor:
        k = xs.shape[1]
        h = torch.cat((self.embed_x(xs) + self.embed_y(ys), self.embed_x(xq)), 1)
        bias = support_bias(ws)[:, None, None, :].to(h.dtype)
        for block in self.blocks:
            h = block(h, k, bias)
        return self.head(self.norm(h[:, k:]))


def _seeded(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-draw every Linear of ``module`` from ``generator`` (nn.Linear's own Kaiming-uniform
    bounds), so that the initialisation depends on the learner's seed only."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Linear):
                bound = 1.0 / m.in_features ** 0.5
                m.weight.copy_(torch.empty_like(m.weight).uniform_(-bound, bound,
                                                                   generator=generator))
                m.bias.copy_(torch.empty_like(m.bias).uniform_(-bound, bound,
                                                               generator=generator))
    return module


@dataclass
class PFN(InContext):
    """Prior-fitted transformer (Müller et al. 2022, TabPFN-style attention mask); see the
    module docstring."""

    name: ClassVar[str] = "pfn"
    search_space: ClassVar[SearchSpace] = {
        "d_model": Choice((16, 32, 64)), "layers": Int(1, 4),
        "meta_lr": Float(1e-4, 1e-2, log=True), **MEMORY_SPACE}

    d_model: int = 32                      # token width
    heads: int = 4                         # attention heads (must divide d_model)
    layers: int = 2                        # transformer blocks
    ff: int = 64                           # feed-forward width of a block
    head_hidden: tuple[int, ...] = (32,)   # output MLP hidden widths
    grad_clip: float | None = 1.0          # transformers train more stably with a cap

    def validate(self) -> None:
        super().validate()
        n = self.name
        check_int(n, "d_model", self.d_model, 1)
        check_int(n, "heads", self.heads, 1)
        check(self.d_model % self.heads == 0, n, "heads", self.heads,
              f"it must divide d_model={self.d_model}, e.g. heads=4 with d_model=32")
        check_int(n, "layers", self.layers, 1)
        check_int(n, "ff", self.ff, 1)
        check_widths(n, "head_hidden", self.head_hidden)

    def make_net(self) -> nn.Module:
        spec, g = self.spec, self.generator
        head = nets.mlp([self.d_model, *self.head_hidden, head_width(spec)], g)
        net = PFNNet(spec.n_features, y_width(spec), self.d_model, self.heads, self.layers,
                     self.ff, head)
        for name, m in net.named_children():
            if name != "head":
                _seeded(m, g)
        return net.to(self.device)


__all__ = ["PFN", "PFNNet", "support_bias"]
