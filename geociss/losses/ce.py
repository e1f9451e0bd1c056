"""Cross-entropy with an explicit choice of reduction."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from geociss.data.classes import IGNORE_INDEX

Reduction = Literal["valid", "all"]


def reduce_pixels(loss: Tensor, valid: Tensor, reduction: Reduction) -> Tensor:
    """Average a per-pixel loss map.

    Args:
        loss: per-pixel loss (B, H, W), zero where ``valid`` is False.
        valid: mask of pixels that carry a label (B, H, W).
        reduction: ``"valid"``: mean over labelled pixels (``CrossEntropyLoss(ignore_index)``;
            0 when no pixel is labelled); ``"all"``: mean over every pixel, ignored pixels
            counting in the denominator (the MiB/PLOP/UCD trainers).
    """
    if reduction == "all":
        return loss.sum() / max(loss.numel(), 1)
    if reduction == "valid":
        return loss.sum() / valid.sum().clamp_min(1)
    raise ValueError(f"unknown reduction {reduction!r}; use 'valid' or 'all'")


def cross_entropy(
    logits: Tensor,
    target: Tensor,
    reduction: Reduction = "valid",
    ignore_index: int = IGNORE_INDEX,
    weight: Tensor | None = None,
) -> Tensor:
    """Softmax cross-entropy over channels, computed in float32.

    Args:
        logits: (B, C, H, W).
        target: (B, H, W) channel indices or ``ignore_index``.
        reduction: see :func:`reduce_pixels`.
        ignore_index: label of pixels that contribute no loss.
        weight: optional per-pixel weight (B, H, W) multiplying the loss (PLOP's factor).
    """
    valid = target != ignore_index
    loss = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
    if weight is not None:
        loss = loss * weight
    return reduce_pixels(loss, valid, reduction)


__all__ = ["Reduction", "cross_entropy", "reduce_pixels"]
