"""PLOP's entropy-based pseudo-labels of the background (METHODS.md §2.5, §5.10).

Before a step ``t ≥ 1`` the frozen teacher runs once over the step's training data
(:class:`EntropyHistogram`): for every background pixel (label 0, which holds the old classes
under the background shift) its normalised entropy is binned, per class the teacher predicts,
into a 100-bin histogram on [0, 1]. A per-class threshold ``τ_c`` is read from each histogram
(:meth:`EntropyHistogram.thresholds`). During training (:func:`entropy_pseudo_labels`) a
background pixel whose teacher prediction ``ĉ`` has entropy below ``τ_ĉ`` is relabelled ``ĉ``
(possibly 0 = background); the others are ignored. Each image's loss is scaled by the share of
its background pixels that received a pseudo-label (the adaptive factor).

Entropy (PLOP's definition, :func:`plop_entropy`): ``−(1/log C) · (1/C) Σ_c p_c log(p_c + 1e-8)``
over the teacher's ``C = C_old`` channels, a MEAN over classes; :func:`normalised_entropy` divides
it again by ``log |Y^t|`` (current channels, background included), as PLOP compares it with the
thresholds.

Threshold "median": PLOP's repository reads the bin where a running sum passes half of the
class's pixel count, but adds the bin INDEX to the running sum instead of the bin's count.
``median="repository"`` (the default) reproduces that: the published PLOP numbers, including the
ISPRS numbers of IDEC's Table 3 that were re-run with PLOP's code, come from it. Since the
indices of 100 bins sum to at most 4950, on a real pre-pass (millions of pixels) it stops only at
a bin that alone holds about half of the class's pixels (bin 0 when most are very confident, which
gives the floor), and otherwise runs to the last bin (0.99): a permissive threshold, since the
normalised entropy never exceeds ``1 / (C_old · log |Y^t|)``. ``median="true"`` is the paper's
intent (the bin containing the median entropy). Either way the threshold is the bin's lower
border, floored at 0.001 (PLOP's ``threshold``); classes the teacher never predicts on
background get the floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from geociss.data.classes import IGNORE_INDEX

Median = Literal["repository", "true"]

ENTROPY_EPS = 1e-8
"""Added inside PLOP's ``log(p + eps)``."""
DEFAULT_BINS = 100
"""Histogram bins on [0, 1]."""
DEFAULT_FLOOR = 0.001
"""PLOP's base ``threshold``: the lowest threshold of any class."""
FACTOR_EPS = 1e-6
"""Added to the background-pixel count in the adaptive factor's denominator."""


def plop_entropy(logits: Tensor) -> Tensor:
    """PLOP's entropy of ``softmax(logits)`` per pixel, computed in float32.

    ``H = −(1/log C) · (1/C) Σ_c p_c log(p_c + 1e-8)``: because of the mean over classes its
    range is [0, 1/C], not [0, 1].

    Args:
        logits: (B, C, H, W) teacher logits, ``C ≥ 2``.

    Returns:
        (B, H, W) float32 entropies.

    Raises:
        ValueError: fewer than two channels (the entropy is undefined).
    """
    channels = logits.shape[1]
    if channels < 2:
        raise ValueError(f"entropy needs at least 2 channels, got {channels}")
    p = torch.softmax(logits.float(), dim=1)
    return -(p * torch.log(p + ENTROPY_EPS)).mean(1) / math.log(channels)


def normalised_entropy(logits: Tensor, num_channels: int) -> Tensor:
    """:func:`plop_entropy` divided by ``log(num_channels)`` (PLOP's ``max_entropy``).

    Args:
        logits: (B, C_old, H, W) teacher logits.
        num_channels: channels of the current model (|Y^t|, background included), ``≥ 2``.
    """
    if num_channels < 2:
        raise ValueError(f"num_channels must be ≥ 2, got {num_channels}")
    return plop_entropy(logits) / math.log(num_channels)


def _entropy_bins(entropy: Tensor, bins: int) -> Tensor:
    """Bin index of each entropy on [0, 1] (values ≥ 1 in the last bin)."""
    return (entropy * bins).long().clamp(0, bins - 1)


def histogram_median(counts: Tensor, median: Median = "repository") -> float:
    """Lower border of the "median" bin of one class's histogram (see module docstring).

    Scans the bins in order and stops at the first bin ``b`` with
    ``running ≤ total/2 ≤ running + counts[b]``, where ``running`` is the count of the bins
    before ``b`` (``"true"``) or the sum of their INDICES (``"repository"``, PLOP's quirk). If no
    bin qualifies the last bin's border is returned, as PLOP's loop leaves it.

    Args:
        counts: (bins,) pixel counts of one class.
        median: ``"repository"`` or ``"true"``.

    Returns:
        ``b / bins``; 0.0 for an empty histogram.
    """
    if median not in ("repository", "true"):
        raise ValueError(f"unknown median {median!r}; use 'repository' or 'true'")
    values = [float(v) for v in counts.tolist()]
    bins = len(values)
    half = sum(values) / 2
    if half <= 0:
        return 0.0
    running = 0.0
    for b, count in enumerate(values):
        if running <= half <= running + count:
            return b / bins
        running += b if median == "repository" else count
    return (bins - 1) / bins


class EntropyHistogram:
    """Per-class histograms of the teacher's normalised entropy on background pixels.

    Args:
        old_channels: teacher channels (C_old); rows of the histogram.
        num_channels: current channels (|Y^t|), for :func:`normalised_entropy`.
        bins: histogram bins on [0, 1].
    """

    def __init__(self, old_channels: int, num_channels: int, bins: int = DEFAULT_BINS) -> None:
        if old_channels < 2 or num_channels <= old_channels or bins < 1:
            raise ValueError(
                f"need 2 ≤ old_channels < num_channels and bins ≥ 1, got {old_channels}, "
                f"{num_channels}, {bins}"
            )
        self.old_channels = old_channels
        self.num_channels = num_channels
        self.bins = bins
        self.counts = torch.zeros(old_channels, bins, dtype=torch.int64)

    def update(self, old_logits: Tensor, target: Tensor) -> None:
        """Add one batch: teacher logits at label resolution and the step's labels.

        Args:
            old_logits: (B, C_old, H, W) teacher logits (upsampled to the labels' size).
            target: (B, H, W) step labels; pixels with label 0 are counted.

        Raises:
            ValueError: the shapes disagree with each other or with ``old_channels``.
        """
        check_teacher_labels(old_logits, target, self.old_channels)
        with torch.no_grad():
            background = target == 0
            predicted = old_logits.argmax(1)[background]
            entropy = normalised_entropy(old_logits, self.num_channels)[background]
            flat = predicted * self.bins + _entropy_bins(entropy, self.bins)
            hist = torch.bincount(flat, minlength=self.old_channels * self.bins)
        self.counts += hist.view(self.old_channels, self.bins).cpu()

    def thresholds(self, median: Median = "repository", floor: float = DEFAULT_FLOOR) -> Tensor:
        """Per-class thresholds ``τ_c = max(median_c, floor)`` (C_old,) float32.

        Args:
            median: ``"repository"`` (default, PLOP's numbers) or ``"true"``; see
                :func:`histogram_median`.
            floor: lowest threshold (PLOP: 0.001), also used for never-predicted classes.
        """
        values = [max(histogram_median(row, median), floor) for row in self.counts]
        return torch.tensor(values, dtype=torch.float32)


@dataclass(frozen=True)
class PseudoLabels:
    """Result of :func:`entropy_pseudo_labels`.

    Attributes:
        target: (B, H, W) labels: new-class and ignored pixels as given, background pixels
            replaced by the teacher's class where confident, ``ignore_index`` elsewhere.
        factor: (B,) share of each image's background pixels that got a pseudo-label.
        confident: (B, H, W) background pixels that got a pseudo-label.
    """

    target: Tensor
    factor: Tensor
    confident: Tensor


def entropy_pseudo_labels(
    target: Tensor,
    old_logits: Tensor,
    thresholds: Tensor,
    num_channels: int,
    ignore_index: int = IGNORE_INDEX,
) -> PseudoLabels:
    """PLOP's pseudo-labels and adaptive factor for one batch (the input is not modified).

    On pixels with ``target < C_old`` (background under the background shift):
    ``ŷ = argmax p̄`` if ``normalised_entropy < thresholds[ŷ]``, else ``ignore_index``.
    ``factor_b = #confident_b / (#background_b + 1e-6)``; an image without background pixels
    gets factor 0, so its whole loss (new-class pixels too) vanishes, as in PLOP.

    Args:
        target: (B, H, W) step labels.
        old_logits: (B, C_old, H, W) teacher logits at the labels' resolution.
        thresholds: (C_old,) per-class thresholds from :class:`EntropyHistogram`.
        num_channels: current channels (|Y^t|).
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
        predicted = old_logits.argmax(1)
        entropy = normalised_entropy(old_logits, num_channels)
        confident = background & (entropy < thresholds.to(entropy.device)[predicted])
        labels = target.clone()
        labels[background] = ignore_index
        labels[confident] = predicted[confident]
        factor = confident.sum((1, 2)).float() / (background.sum((1, 2)).float() + FACTOR_EPS)
    return PseudoLabels(labels, factor, confident)


def check_teacher_labels(old_logits: Tensor, target: Tensor, old_channels: int) -> None:
    """Raise ValueError unless teacher logits are (B, old_channels, H, W) and labels (B, H, W)."""
    if old_logits.ndim != 4 or old_logits.shape[1] != old_channels:
        raise ValueError(
            f"expected (B, {old_channels}, H, W) teacher logits, got {tuple(old_logits.shape)}"
        )
    if target.shape != (old_logits.shape[0], *old_logits.shape[2:]):
        raise ValueError(
            f"labels of shape {tuple(target.shape)} do not match teacher logits "
            f"{tuple(old_logits.shape)}"
        )


__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_FLOOR",
    "EntropyHistogram",
    "Median",
    "PseudoLabels",
    "check_teacher_labels",
    "entropy_pseudo_labels",
    "histogram_median",
    "normalised_entropy",
    "plop_entropy",
]
