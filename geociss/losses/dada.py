"""IDEC's DADA: dense distillation of multi-level features, driven by class-specific pseudo-labels.

IDEC (Zhao, Yuan, Shi, TPAMI 2023) distils "all aspects" of the frozen
previous-step model: intermediate features and output logits (the logit part is MiB's unbiased
distillation, :func:`geociss.losses.unbiased.unbiased_kd`), driven by "a dynamic class-specific
pseudo-labelling strategy". This module holds the two pieces specific to IDEC:

* **Feature distillation** (:func:`channel_softmax_kd`, :func:`dense_distillation`): IDEC's
  ``KD_loss``. At every pixel the feature vector is read as logits over its ``C`` channels;
  ``D(F, F̄) = −(1/C) Σ_c softmax(α F̄)_c · log softmax(F)_c``, averaged over all pixels, with the
  teacher sharpened by ``α = 2`` (as IDEC's code defines it: the teacher's features are
  multiplied by α, the student's are not). Levels are weighted ``0.5 / 1 / 2 / 1`` for
  (encoder stage 1, stage 2, stage 3, ASPP output): deeper, more semantic levels count more
  ("more emphasis on semantic-invariant knowledge"). IDEC's schedule ``λ(e) = lamb^(e/E)`` has
  ``lamb = 1`` in every script, so the weights here are constant over the epochs.
* **Class-specific confidence pseudo-labels** (:class:`ConfidenceHistogram`,
  :func:`confidence_pseudo_labels`). Before the step, the teacher makes one pass over the step's
  data; on background pixels (label < C_old, which hide the old classes under the background
  shift) its confidence ``max_c softmax(z̄)_c`` is histogrammed per predicted class. Class ``c``'s
  threshold is the ``q``-quantile of its confidences, floored: ``τ_c = max(Q_c(q), floor)``, so
  every class keeps about the same share ``1 − q`` of its pixels whether the teacher finds it easy
  or hard (a single global threshold, as in IDEC's code, starves the hard classes). Thresholds
  are data-driven per step (the "dynamic" part). PLOP's entropy histogram does not fit here: its
  normalised entropy lives in [0, 1/(C_old·log|Y^t|)], a few of its 100 bins, so its thresholds
  are coarsely quantised; and IDEC's code thresholds a confidence, not an entropy.

All arithmetic runs in float32 with autocast off; the teacher's tensors are detached and no input
is modified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from geociss.data.classes import IGNORE_INDEX
from geociss.losses.pseudo import check_teacher_labels

DEFAULT_LAYER_WEIGHTS = (0.5, 1.0, 2.0, 1.0)
"""IDEC's weights of (stage 1, stage 2, stage 3, ASPP output)."""
DEFAULT_ALPHA = 2.0
"""IDEC's factor on the teacher's features before the channel softmax."""
DEFAULT_QUANTILE = 0.5
"""Per-class confidence quantile: the more confident half of each class is pseudo-labelled."""
DEFAULT_MIN_CONFIDENCE = 0.5
"""Lowest threshold: the teacher must give its class more than all the others together."""
DEFAULT_CONFIDENCE_BINS = 1000
"""Histogram bins on [0, 1]: thresholds are exact to 0.001."""


def channel_softmax_kd(
    features: Tensor, old_features: Tensor, alpha: float = DEFAULT_ALPHA
) -> Tensor:
    """IDEC's feature KD ``−(1/C) Σ_c softmax(α F̄)_c log softmax(F)_c``, mean over pixels.

    The teacher's distribution is computed as ``softmax(α (F̄ − max F̄))`` (the same value), so
    any finite input stays finite; channels where the teacher's probability is 0 contribute 0.

    Args:
        features: (B, C, h, w) student features; gradient flows.
        old_features: (B, C, h, w) teacher features (detached here).
        alpha: factor on the teacher's features (IDEC: 2, a sharpening).

    Returns:
        A float32 scalar.

    Raises:
        ValueError: the shapes differ or are not 4-D.
    """
    if features.ndim != 4 or features.shape != old_features.shape:
        raise ValueError(
            f"student and teacher features must have equal (B, C, h, w) shapes, got "
            f"{tuple(features.shape)} and {tuple(old_features.shape)}"
        )
    with torch.autocast(features.device.type, enabled=False):
        log_p = torch.log_softmax(features.float(), dim=1)
        old = old_features.detach().float()
        old = old - old.amax(dim=1, keepdim=True)
        q = torch.softmax(alpha * old, dim=1)
        terms = torch.where(q > 0, q * log_p, torch.zeros_like(log_p))
        return -terms.sum(dim=1).mean() / features.shape[1]


def dense_distillation(
    features: Sequence[Tensor],
    old_features: Sequence[Tensor],
    weights: Sequence[float] = DEFAULT_LAYER_WEIGHTS,
    alpha: float = DEFAULT_ALPHA,
) -> Tensor:
    """DADA's feature part: ``Σ_l w_l · channel_softmax_kd(F_l, F̄_l, α)`` (no normalisation).

    Args:
        features: student maps, shallow to deep (IDEC: stages 1-3 and the ASPP output).
        old_features: the teacher's maps, same order and shapes.
        weights: one weight per level; levels of weight 0 are skipped.
        alpha: factor on the teacher's features.

    Returns:
        A float32 scalar.

    Raises:
        ValueError: the three sequences differ in length, or a level's shapes differ.
    """
    if not len(features) == len(old_features) == len(weights):
        raise ValueError(
            f"need one weight per level: {len(features)} student maps, {len(old_features)} "
            f"teacher maps, {len(weights)} weights"
        )
    if not features:
        raise ValueError("dense_distillation needs at least one level")
    total = features[0].new_zeros((), dtype=torch.float32)
    for weight, student, teacher in zip(weights, features, old_features, strict=True):
        if weight:
            total = total + weight * channel_softmax_kd(student, teacher, alpha)
    return total


class ConfidenceHistogram:
    """Per-class histograms of the teacher's confidence on background pixels (pre-pass).

    Args:
        old_channels: teacher channels (C_old ≥ 2); one histogram per predicted class.
        bins: bins on [0, 1] (a confidence of exactly 1 falls in the last bin).
    """

    def __init__(self, old_channels: int, bins: int = DEFAULT_CONFIDENCE_BINS) -> None:
        if old_channels < 2 or bins < 1:
            raise ValueError(f"need old_channels ≥ 2 and bins ≥ 1, got {old_channels}, {bins}")
        self.old_channels = old_channels
        self.bins = bins
        self.counts = torch.zeros(old_channels, bins, dtype=torch.int64)

    def update(self, old_logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX) -> None:
        """Add one batch: teacher logits at label resolution and the step's labels.

        Pixels with a label below C_old (background under the background shift) are counted
        under the class the teacher predicts; new-class and ignored pixels are not.

        Raises:
            ValueError: the shapes disagree with each other or with ``old_channels``.
        """
        check_teacher_labels(old_logits, target, self.old_channels)
        with torch.no_grad():
            background = (target < self.old_channels) & (target != ignore_index)
            confidence, predicted = _confidence(old_logits)
            index = (confidence[background] * self.bins).long().clamp(0, self.bins - 1)
            flat = predicted[background] * self.bins + index
            hist = torch.bincount(flat, minlength=self.old_channels * self.bins)
        self.counts += hist.view(self.old_channels, self.bins).cpu()

    def thresholds(
        self, quantile: float = DEFAULT_QUANTILE, floor: float = DEFAULT_MIN_CONFIDENCE
    ) -> Tensor:
        """Per-class thresholds ``τ_c = max(Q_c(quantile), floor)``, (C_old,) float32.

        ``Q_c(q)`` is the lower border of the first bin where the cumulative count of class
        ``c`` reaches ``q`` times its total (so at least a share ``1 − q`` of its pixels passes);
        classes never predicted on background get ``floor``.

        Raises:
            ValueError: ``quantile`` or ``floor`` outside [0, 1].
        """
        if not (0.0 <= quantile <= 1.0 and 0.0 <= floor <= 1.0):
            raise ValueError(f"quantile and floor must be in [0, 1], got {quantile}, {floor}")
        values = []
        for row in self.counts:
            total = int(row.sum())
            if total == 0:
                values.append(floor)
                continue
            reached = torch.cumsum(row, 0) >= quantile * total
            values.append(max(int(reached.nonzero()[0]) / self.bins, floor))
        return torch.tensor(values, dtype=torch.float32)


@dataclass(frozen=True)
class ConfidencePseudoLabels:
    """Result of :func:`confidence_pseudo_labels`.

    Attributes:
        target: (B, H, W) labels: background pixels where the teacher is confident replaced by
            its class (possibly 0 = background), every other pixel as given.
        confident: (B, H, W) background pixels that got a pseudo-label.
        unresolved: (B, H, W) background pixels that did not (they keep their label).
    """

    target: Tensor
    confident: Tensor
    unresolved: Tensor


def confidence_pseudo_labels(
    target: Tensor, old_logits: Tensor, thresholds: Tensor, ignore_index: int = IGNORE_INDEX
) -> ConfidencePseudoLabels:
    """Pseudo-label the background pixels the teacher is confident about (input not modified).

    On pixels with ``target < C_old``: ``ŷ = argmax softmax(z̄)`` where
    ``max softmax(z̄) ≥ thresholds[ŷ]``; other pixels are unchanged.

    Args:
        target: (B, H, W) step labels.
        old_logits: (B, C_old, H, W) teacher logits at the labels' resolution.
        thresholds: (C_old,) per-class thresholds (:meth:`ConfidenceHistogram.thresholds`).
        ignore_index: label of ignored pixels.

    Raises:
        ValueError: shapes disagree.
    """
    old_channels = old_logits.shape[1]
    check_teacher_labels(old_logits, target, old_channels)
    if thresholds.shape != (old_channels,):
        raise ValueError(f"expected {old_channels} thresholds, got shape {tuple(thresholds.shape)}")
    with torch.no_grad():
        background = (target < old_channels) & (target != ignore_index)
        confidence, predicted = _confidence(old_logits)
        passed = confidence >= thresholds.to(confidence.device)[predicted]
        confident = background & passed
        labels = torch.where(confident, predicted.to(target.dtype), target)
    return ConfidencePseudoLabels(labels, confident, background & ~confident)


def _confidence(old_logits: Tensor) -> tuple[Tensor, Tensor]:
    """Teacher's top softmax probability and class per pixel (float32, autocast off)."""
    with torch.autocast(old_logits.device.type, enabled=False):
        probs = torch.softmax(old_logits.detach().float(), dim=1)
        return probs.max(dim=1)


__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_CONFIDENCE_BINS",
    "DEFAULT_LAYER_WEIGHTS",
    "DEFAULT_MIN_CONFIDENCE",
    "DEFAULT_QUANTILE",
    "ConfidenceHistogram",
    "ConfidencePseudoLabels",
    "channel_softmax_kd",
    "confidence_pseudo_labels",
    "dense_distillation",
]
