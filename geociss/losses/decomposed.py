"""DKD's loss terms (Baek et al., NeurIPS 2022): sigmoid classes, decomposed KD.

DKD scores every class with its own sigmoid (multi-label), so every term is a binary
cross-entropy with logits ``BCE(z, t) = −[t · log σ(z) + (1 − t) · log(1 − σ(z))]``:

* :func:`multilabel_bce` (L_mbce): ``Σ_{k} mean_{pixels} BCE(z_k, 1[y = k]; pos_weight)`` over the
  channels being learned, on full-resolution logits. By default the ignore label is a negative
  for every channel, as DKD does; ``ignore="ignore"`` drops those pixels instead.
* :func:`sigmoid_kd` (L_kd): ``Σ_{c ∈ old} mean BCE(z_c, σ(z̄_c))``, soft targets from the teacher.
* :func:`decompose` / :func:`decomposed_kd` (L_dkd_pos, L_dkd_neg): with non-negative features
  ``x`` (the post-ReLU ASPP output, 1/16 resolution) and classifier rows ``w_c`` (bias
  excluded), ``pos_c = Σ_d max(w_cd, 0) x_d`` and ``neg_c = Σ_d min(w_cd, 0) x_d``, so that
  ``z_c = pos_c + neg_c + b_c``; each part of the student is distilled towards the sigmoid of
  the same part computed by the teacher from its own features and weights.
* :func:`auxiliary_loss` (L_ac): ``mean BCE(z_aux, 0)`` of the auxiliary classifier.

Every term is computed in float32 with autocast disabled: PyTorch's
``binary_cross_entropy_with_logits`` is the stable ``max(z, 0) − z·t + log(1 + e^(−|z|))`` form,
so half-precision logits of any magnitude give finite losses. The teacher's tensors are
detached and no input is modified.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from geociss.data.classes import IGNORE_INDEX
from geociss.losses.ce import Reduction, reduce_pixels

IgnoreMode = Literal["negative", "ignore"]


def _fp32(t: Tensor) -> Tensor:
    return t if t.dtype == torch.float64 else t.float()


def _channel_index(channels: Sequence[int], total: int, device: torch.device) -> Tensor:
    index = torch.as_tensor(list(channels), dtype=torch.long, device=device)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= total):
        raise ValueError(f"channels {list(channels)} out of range for {total} channels")
    return index


def _soft_bce_sum(logits: Tensor, targets: Tensor) -> Tensor:
    """``Σ_c mean_{B,H,W} BCE(logits_c, targets_c)`` for (B, K, H, W) maps (0 when K = 0)."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return loss.sum(dim=1).mean() if loss.shape[1] else loss.sum()


def multilabel_bce(
    logits: Tensor,
    target: Tensor,
    channels: Sequence[int],
    pos_weight: float = 2.0,
    ignore: IgnoreMode = "negative",
    reduction: Reduction = "valid",
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """DKD's multi-label BCE: ``Σ_{k ∈ channels} mean BCE(z_k, 1[y = k]; pos_weight)``.

    Args:
        logits: (B, C, H, W) student logits at the label resolution.
        target: (B, H, W) labels in the step's channels, or ``ignore_index``.
        channels: the channels that receive a one-hot target (the classes being learned).
        pos_weight: weight of the positive part of every BCE (DKD on VOC: 2 at step 0, 1 at
            the incremental steps; on ADE: 35 at every step).
        ignore: ``"negative"`` (DKD): ignored pixels are negatives for every channel and the
            mean runs over all B·H·W pixels; ``"ignore"``: they contribute nothing and the
            per-pixel sums are averaged with ``reduction``.
        reduction: ``"valid"`` or ``"all"`` (see :func:`~geociss.losses.ce.reduce_pixels`);
            only used with ``ignore="ignore"``.
        ignore_index: label of ignored pixels.

    Returns:
        A float32 scalar (0 when ``channels`` is empty).
    """
    if ignore not in ("negative", "ignore"):
        raise ValueError(f"unknown ignore mode {ignore!r}; use 'negative' or 'ignore'")
    index = _channel_index(channels, logits.shape[1], logits.device)
    with torch.autocast(logits.device.type, enabled=False):
        x = _fp32(logits).index_select(1, index)
        onehot = (target.unsqueeze(1) == index.view(1, -1, 1, 1)).to(x.dtype)
        weight = torch.tensor(pos_weight, dtype=x.dtype, device=x.device)
        loss = F.binary_cross_entropy_with_logits(x, onehot, pos_weight=weight, reduction="none")
        per_pixel = loss.sum(dim=1)
        if ignore == "negative":
            return per_pixel.mean()
        valid = target != ignore_index
        return reduce_pixels(per_pixel * valid.to(x.dtype), valid, reduction)


def sigmoid_kd(logits: Tensor, old_logits: Tensor, channels: Sequence[int]) -> Tensor:
    """DKD's output distillation: ``Σ_{c ∈ channels} mean BCE(z_c, σ(z̄_c))``.

    Args:
        logits: (B, C, H, W) student logits.
        old_logits: (B, C_old, H, W) teacher logits (detached here), same spatial size.
        channels: the old channels to distil (indices valid in both tensors).

    Returns:
        A float32 scalar (0 when ``channels`` is empty).
    """
    total = min(logits.shape[1], old_logits.shape[1])
    index = _channel_index(channels, total, logits.device)
    with torch.autocast(logits.device.type, enabled=False):
        student = _fp32(logits).index_select(1, index)
        teacher = torch.sigmoid(_fp32(old_logits.detach()).index_select(1, index))
        return _soft_bce_sum(student, teacher)


def decompose(features: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Positive and negative parts of the logits of a 1×1 classifier (float32).

    Args:
        features: (B, D, h, w) classifier input (DKD: the post-ReLU ASPP output, ≥ 0).
        weight: (K, D) or (K, D, 1, 1) classifier rows; the bias is not part of either term.

    Returns:
        ``(pos, neg)``, each (B, K, h, w): ``pos_k = Σ_d max(w_kd, 0) x_d`` and
        ``neg_k = Σ_d min(w_kd, 0) x_d``, so ``pos + neg + b`` is the classifier's output.
    """
    w = weight.flatten(1)
    if w.shape[1] != features.shape[1]:
        raise ValueError(
            f"classifier rows have {w.shape[1]} inputs, the features {features.shape[1]} channels"
        )
    with torch.autocast(features.device.type, enabled=False):
        x, w = _fp32(features), _fp32(w)
        pos = torch.einsum("bdhw,kd->bkhw", x, w.clamp(min=0))
        neg = torch.einsum("bdhw,kd->bkhw", x, w.clamp(max=0))
    return pos, neg


def decomposed_kd(
    features: Tensor,
    weight: Tensor,
    old_features: Tensor,
    old_weight: Tensor,
    channels: Sequence[int],
) -> tuple[Tensor, Tensor]:
    """DKD's decomposed distillation ``(L_dkd_pos, L_dkd_neg)`` at feature resolution.

    ``L_dkd_pos = Σ_{c ∈ channels} mean BCE(pos_c, σ(pos̄_c))`` where ``pos`` comes from the
    student's features and rows and ``pos̄`` from the teacher's own features and rows;
    ``L_dkd_neg`` likewise with the negative parts.

    Args:
        features: (B, D, h, w) student ASPP output.
        weight: (C, D[, 1, 1]) student classifier rows (at least the distilled channels).
        old_features: (B, D, h, w) teacher ASPP output (detached here).
        old_weight: (C_old, D[, 1, 1]) teacher classifier rows (detached here).
        channels: the old channels to distil.

    Returns:
        Two float32 scalars (0 when ``channels`` is empty).
    """
    if features.shape != old_features.shape:
        raise ValueError(
            f"student features {tuple(features.shape)} and teacher features "
            f"{tuple(old_features.shape)} differ"
        )
    total = min(weight.shape[0], old_weight.shape[0])
    index = _channel_index(channels, total, features.device)
    pos, neg = decompose(features, weight.flatten(1).index_select(0, index))
    with torch.no_grad():
        old_w = old_weight.detach().flatten(1).index_select(0, index.to(old_weight.device))
        old_pos, old_neg = decompose(old_features.detach(), old_w.to(features.device))
    with torch.autocast(features.device.type, enabled=False):
        pos_loss = _soft_bce_sum(pos, torch.sigmoid(old_pos))
        neg_loss = _soft_bce_sum(neg, torch.sigmoid(old_neg))
    return pos_loss, neg_loss


def auxiliary_loss(aux_logits: Tensor) -> Tensor:
    """DKD's auxiliary-classifier loss ``mean BCE(z_aux, 0) = mean softplus(z_aux)`` (float32).

    Args:
        aux_logits: (B, 1, H, W) logits of the auxiliary classifier (any shape works).
    """
    with torch.autocast(aux_logits.device.type, enabled=False):
        return F.softplus(_fp32(aux_logits)).mean()


__all__ = [
    "IgnoreMode",
    "auxiliary_loss",
    "decompose",
    "decomposed_kd",
    "multilabel_bce",
    "sigmoid_kd",
]
