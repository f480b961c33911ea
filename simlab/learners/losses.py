"""Losses and output links shared by every learner (one place for the target kinds)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from simlab.tasks.task import TargetKind


def task_loss(out: torch.Tensor, y: torch.Tensor, target: TargetKind,
              w: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean loss of raw outputs ``out`` against ``y`` over the last sample axis.

    ``out`` is ``[..., N, 1]`` or ``[..., N]`` (binary logit / regression mean) or
    ``[..., N, C]`` (multiclass logits); ``w`` ``[..., N]`` are weights (0 masks a respondent).
    Binary: log loss; multiclass: cross-entropy; regression: squared error.
    """
    if target == "multiclass":
        per = F.cross_entropy(out.movedim(-1, 1) if out.dim() > 2 else out, y.long(),
                              reduction="none")
    else:
        out = out.squeeze(-1) if out.dim() == y.dim() + 1 else out
        if target == "binary":
            per = F.binary_cross_entropy_with_logits(out, y.to(out.dtype), reduction="none")
        else:
            per = (out - y.to(out.dtype)) ** 2
    if w is None:
        return per.mean(-1)
    return (per * w).sum(-1) / w.sum(-1).clamp_min(1e-12)


def to_prediction(out: torch.Tensor, target: TargetKind) -> torch.Tensor:
    """Raw outputs to the contract's predictions: P(y=1), class probabilities, or E[y]."""
    if target == "multiclass":
        return torch.softmax(out, dim=-1)
    out = out.squeeze(-1) if out.shape[-1] == 1 else out
    return torch.sigmoid(out) if target == "binary" else out
