"""Plain distillation terms used by ILT: logits KD and feature MSE.

* :func:`knowledge_distillation`: the KD of the MiB/PLOP/UCD re-implementation of ILT (and of
  LwF): the student's logits are truncated to the teacher's C_old channels BEFORE the softmax,
  the soft cross-entropy is averaged over the C_old classes (the 1/C_old factor) and over all
  pixels.
* :func:`output_distillation`: ILT's original output-layer distillation L'_D: the student's
  softmax runs over ALL its channels, the soft cross-entropy is summed over the teacher's
  classes and averaged over the pixels that a selection mask keeps.
* :func:`feature_distillation`: ILT's L''_D / L_DE, the mean squared difference of two feature
  maps over all elements.

Everything is computed in float32 with autocast disabled; the teacher's tensors are detached and
no input is modified.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

PixelReduction = Literal["mean", "none"]


def _fp32(t: Tensor) -> Tensor:
    return t if t.dtype == torch.float64 else t.float()


def _soft_cross_entropy(log_p: Tensor, old_logits: Tensor, alpha: float) -> Tensor:
    """Per-pixel ``−Σ_c softmax(α z̄)_c · log_p_c`` over the teacher's channels (float32)."""
    teacher = torch.softmax(_fp32(old_logits.detach()) * alpha, dim=1)
    return -(teacher * log_p[:, : old_logits.shape[1]]).sum(dim=1)


def _check_channels(logits: Tensor, old_logits: Tensor) -> int:
    old_channels = old_logits.shape[1]
    if logits.shape[1] < old_channels:
        raise ValueError(
            f"student has {logits.shape[1]} channels, fewer than the teacher's {old_channels}"
        )
    return old_channels


def knowledge_distillation(
    logits: Tensor,
    old_logits: Tensor,
    alpha: float = 1.0,
    mask: Tensor | None = None,
    reduction: PixelReduction = "mean",
) -> Tensor:
    """KD on the old channels: ``ℓ_i = −(1/C_old) Σ_{c<C_old} q̄_c log softmax(z_{<C_old})_c``.

    Args:
        logits: (B, C, H, W) student logits, C ≥ C_old; only the first C_old channels are used.
        old_logits: (B, C_old, H, W) teacher logits; ``q̄ = softmax(α z̄)``.
        alpha: scale of the teacher's logits before its softmax.
        mask: optional (B, H, W) per-pixel weight; masked pixels still count in the mean.
        reduction: ``"mean"`` over all B·H·W pixels, or ``"none"`` for the (B, H, W) map.

    Returns:
        A float32 scalar, or the per-pixel map.
    """
    old_channels = _check_channels(logits, old_logits)
    with torch.autocast(logits.device.type, enabled=False):
        log_p = torch.log_softmax(_fp32(logits[:, :old_channels]), dim=1)
        loss = _soft_cross_entropy(log_p, old_logits, alpha) / old_channels
        if mask is not None:
            loss = loss * mask.to(loss.dtype)
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"unknown reduction {reduction!r}; use 'mean' or 'none'")


def output_distillation(
    logits: Tensor, old_logits: Tensor, select: Tensor | None = None, alpha: float = 1.0
) -> Tensor:
    """ILT's L'_D: ``ℓ_i = −Σ_{c<C_old} q̄_c log softmax(z)_c``, softmax over ALL student channels.

    The mean runs over the selected pixels only (ILT's ``distill_loss_applied_to``); an empty
    selection gives 0 (the original's NaN → 0).

    Args:
        logits: (B, C, H, W) student logits, C ≥ C_old.
        old_logits: (B, C_old, H, W) teacher logits; ``q̄ = softmax(α z̄)``.
        select: optional (B, H, W) bool mask of the pixels to distil (default: every pixel).
        alpha: scale of the teacher's logits before its softmax (ILT: temperature 1).

    Returns:
        A float32 scalar.
    """
    _check_channels(logits, old_logits)
    with torch.autocast(logits.device.type, enabled=False):
        log_p = torch.log_softmax(_fp32(logits), dim=1)
        loss = _soft_cross_entropy(log_p, old_logits, alpha)
        if select is None:
            return loss.mean()
        keep = select.to(torch.bool)
        return torch.where(keep, loss, torch.zeros_like(loss)).sum() / keep.sum().clamp_min(1)


def feature_distillation(features: Tensor, old_features: Tensor) -> Tensor:
    """Mean squared difference over all elements (TF ``mean_squared_error``), in float32.

    Args:
        features: student features, any shape.
        old_features: teacher features of the same shape (detached here).

    Returns:
        A float32 scalar.
    """
    if features.shape != old_features.shape:
        raise ValueError(
            f"feature shapes differ: student {tuple(features.shape)}, "
            f"teacher {tuple(old_features.shape)}"
        )
    with torch.autocast(features.device.type, enabled=False):
        diff = _fp32(features) - _fp32(old_features.detach())
        return diff.square().mean()


class KnowledgeDistillation(nn.Module):
    """Module form of :func:`knowledge_distillation` with a fixed ``alpha``."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, logits: Tensor, old_logits: Tensor, mask: Tensor | None = None) -> Tensor:
        """See :func:`knowledge_distillation`."""
        return knowledge_distillation(logits, old_logits, self.alpha, mask)


__all__ = [
    "KnowledgeDistillation",
    "feature_distillation",
    "knowledge_distillation",
    "output_distillation",
]
