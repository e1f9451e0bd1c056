"""MiB's unbiased losses: background absorbs the classes the other model lacks.

At step t the labels call "background" every pixel that is not a new class, including pixels of
old classes, while the teacher's background channel also covers the new classes.
Both losses therefore compare merged distributions:

* **unbiased cross-entropy**: the student's probability of "background" is the sum of its
  background and OLD-class probabilities, ``log q̃_0 = LSE_{c<C_old}(z) − LSE(z)``;
* **unbiased distillation**: the student's probability of the teacher's "background" is the sum of
  its background and NEW-class probabilities, ``log p̂_0 = LSE_{c∈{0}∪new}(z) − LSE(z)``.

Merged probabilities are always log-sum-exps of logits (never ``log Σ softmax``), computed in
float32 with autocast disabled, so half-precision logits of any magnitude give finite losses.
Neither function modifies its inputs; the teacher's logits are detached.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geociss.data.classes import IGNORE_INDEX
from geociss.losses.ce import Reduction, reduce_pixels

PixelReduction = Literal["mean", "none"]


def _fp32(t: Tensor) -> Tensor:
    return t if t.dtype == torch.float64 else t.float()


def unbiased_log_probs(logits: Tensor, old_channels: int) -> Tensor:
    """Log-probabilities of [background ∪ old classes, new class 1, ..., new class n] (float32).

    Args:
        logits: (B, C, H, W) student logits; channels ``< old_channels`` are background and the
            old classes, the others are the new classes.
        old_channels: C_old ≥ 1, the teacher's number of channels.

    Returns:
        (B, 1 + C − C_old, H, W): channel 0 is ``log q̃_0``, channel k ≥ 1 is new channel
        ``C_old + k − 1``.
    """
    if not 1 <= old_channels <= logits.shape[1]:
        raise ValueError(
            f"old_channels must be in [1, {logits.shape[1]}] for {logits.shape[1]} channels, "
            f"got {old_channels}"
        )
    with torch.autocast(logits.device.type, enabled=False):
        x = _fp32(logits)
        total = torch.logsumexp(x, dim=1, keepdim=True)
        merged = torch.logsumexp(x[:, :old_channels], dim=1, keepdim=True)
        return torch.cat([merged, x[:, old_channels:]], dim=1) - total


def unbiased_cross_entropy(
    logits: Tensor,
    target: Tensor,
    old_channels: int,
    reduction: Reduction = "all",
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """MiB's unbiased cross-entropy ``−log q̃_y``.

    Labels below ``old_channels`` are read as background (0) first, on a copy: ``target`` is not
    modified. Ignored pixels contribute 0.

    Args:
        logits: (B, C, H, W) student logits.
        target: (B, H, W) labels in the step's channels, or ``ignore_index``.
        old_channels: C_old ≥ 1 (background included).
        reduction: ``"all"`` (default, the MiB trainer: mean over every pixel, ignored ones in
            the denominator) or ``"valid"`` (mean over labelled pixels); see
            :func:`~geociss.losses.ce.reduce_pixels`.
        ignore_index: label of pixels that carry no loss.

    Returns:
        A float32 scalar.
    """
    log_q = unbiased_log_probs(logits, old_channels)
    valid = target != ignore_index
    merged = torch.where(
        target < old_channels, torch.zeros_like(target), target - (old_channels - 1)
    )
    merged = torch.where(valid, merged, torch.full_like(target, ignore_index))
    loss = F.nll_loss(log_q, merged, ignore_index=ignore_index, reduction="none")
    return reduce_pixels(loss, valid, reduction)


def unbiased_kd(
    logits: Tensor,
    old_logits: Tensor,
    alpha: float = 1.0,
    mask: Tensor | None = None,
    reduction: PixelReduction = "mean",
) -> Tensor:
    """MiB's unbiased knowledge distillation.

    ``ℓ_i = −(1/C_old) Σ_{c<C_old} q̄_c log p̂_c`` with ``q̄ = softmax(α z̄)`` from the teacher,
    ``log p̂_0 = LSE_{c∈{0}∪new}(z) − LSE(z)`` and ``log p̂_c = z_c − LSE(z)`` for old classes.
    The 1/C_old factor is MiB's code (the paper's formula omits it): each class weighs λ/C_old,
    so the same λ weighs more on a dataset with few old classes.

    Args:
        logits: (B, C, H, W) student logits, C ≥ C_old.
        old_logits: (B, C_old, H, W) teacher logits (detached here).
        alpha: scale of the teacher's logits before its softmax.
        mask: optional (B, H, W) per-pixel weight (bool or float) multiplying the loss; masked
            pixels still count in the mean's denominator, as in MiB.
        reduction: ``"mean"`` over all B·H·W pixels (no label used), or ``"none"`` for the
            (B, H, W) map.

    Returns:
        A float32 scalar, or the per-pixel map.
    """
    old_channels = old_logits.shape[1]
    if logits.shape[1] < old_channels:
        raise ValueError(
            f"student has {logits.shape[1]} channels, fewer than the teacher's {old_channels}"
        )
    with torch.autocast(logits.device.type, enabled=False):
        x = _fp32(logits)
        total = torch.logsumexp(x, dim=1, keepdim=True)
        bg = torch.logsumexp(torch.cat([x[:, :1], x[:, old_channels:]], dim=1), 1, keepdim=True)
        log_p = torch.cat([bg, x[:, 1:old_channels]], dim=1) - total
        teacher = torch.softmax(_fp32(old_logits.detach()) * alpha, dim=1)
        loss = -(teacher * log_p).sum(dim=1) / old_channels
        if mask is not None:
            loss = loss * mask.to(loss.dtype)
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"unknown reduction {reduction!r}; use 'mean' or 'none'")


class UnbiasedCrossEntropy(nn.Module):
    """Module form of :func:`unbiased_cross_entropy` with a fixed C_old and reduction."""

    def __init__(
        self, old_channels: int, reduction: Reduction = "all", ignore_index: int = IGNORE_INDEX
    ) -> None:
        super().__init__()
        self.old_channels = old_channels
        self.reduction: Reduction = reduction
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """See :func:`unbiased_cross_entropy`."""
        return unbiased_cross_entropy(
            logits, target, self.old_channels, self.reduction, self.ignore_index
        )


class UnbiasedKD(nn.Module):
    """Module form of :func:`unbiased_kd` with a fixed ``alpha``."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, logits: Tensor, old_logits: Tensor, mask: Tensor | None = None) -> Tensor:
        """See :func:`unbiased_kd`."""
        return unbiased_kd(logits, old_logits, self.alpha, mask)


__all__ = [
    "UnbiasedCrossEntropy",
    "UnbiasedKD",
    "unbiased_cross_entropy",
    "unbiased_kd",
    "unbiased_log_probs",
]
