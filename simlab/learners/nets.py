"""Functional networks: parameters as a dict of tensors, so learners can vmap/grad over them."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call


def mlp(sizes: Sequence[int], generator: torch.Generator, device: str | torch.device = "cpu"
        ) -> nn.Sequential:
    """ReLU MLP ``sizes[0] -> ... -> sizes[-1]``, initialised from ``generator`` (Kaiming-uniform
    weights and biases as in ``nn.Linear``, drawn from the explicit generator)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        bound = 1.0 / a ** 0.5
        with torch.no_grad():
            lin.weight.copy_(torch.empty(b, a).uniform_(-bound, bound, generator=generator))
            lin.bias.copy_(torch.empty(b).uniform_(-bound, bound, generator=generator))
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).to(device)


def params_of(module: nn.Module) -> dict[str, torch.Tensor]:
    """Detached leaf copies of a module's parameters (the learner owns these tensors)."""
    return {k: v.detach().clone().requires_grad_(True) for k, v in module.named_parameters()}


def forward(module: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Run ``module`` with ``params`` instead of its own (``torch.func.functional_call``)."""
    return functional_call(module, params, (x,))
