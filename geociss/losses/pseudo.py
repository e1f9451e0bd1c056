"""PLOP's entropy-based pseudo-labels of the background (Douillard et al., CVPR 2021).

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

Thresholds (:func:`histogram_median`, ``median=`` below; the histogram counts the teacher's
predicted class ``c`` and entropy bin ``b = min(⌊h · B⌋, B − 1)`` of every pixel labelled 0, with
``B`` bins of width ``1/B``; ``n_b`` is the count of bin ``b``, ``half = Σ_b n_b / 2``):

* ``"repository"`` (default) computes exactly what PLOP's code (``find_median`` in its
  ``train.py``) computes; the published PLOP numbers, including the ISPRS numbers of IDEC's
  Table 3 that were re-run with PLOP's code, come from it. The bins are scanned in order with a
  running sum ``r`` that starts at 0 and grows by the bin's INDEX, not its count (so ``r`` before
  bin ``b`` is ``b(b − 1)/2``); the scan stops at the first bin with ``r ≤ half ≤ r + n_b`` and
  interpolates inside it: ``u = b/B + (half − r) / n_b · 1/B``. Because the indices of 100 bins
  sum to 4950 only, a class with many pixels stops only at a bin that alone holds about half of
  them. When no bin qualifies the scan runs past the last bin (``r`` then holds the sum of all
  indices, ``B(B − 1)/2``) and the same formula is applied with the last bin:
  ``u = (B − 1)/B + (half − B(B − 1)/2) / n_{B−1} · 1/B``. With an empty last bin that is
  ``−inf`` for a class with few pixels (``half < B(B − 1)/2``, e.g. under 9900 pixels with 100
  bins), which the floor turns into 0.001; with a non-empty last bin it is a number below
  ``(B − 1)/B``, usually negative (floored) for few pixels; for many pixels it is ``+inf`` or
  above ``(B − 1)/B``: every pixel of the class passes. A stop at an EMPTY bin
  (``half = r``, ``n_b = 0``, e.g. a class of 2 pixels both beyond the third bin) gives
  ``0/0 = NaN``, which PLOP's floor (Python's ``max(τ, floor)``) leaves as NaN: no pixel of that
  class passes. The code's own float steps are kept too: the bin read at step ``b`` is
  ``int(b/B · B)``, which with 100 bins reads bin 28 at step 29 and bins 56, 57 at steps 57, 58;
  ``half`` and the comparisons are float32, as with PLOP's tensors.
* ``"true"`` (a geociss variant, the paper's intent): the running sum adds the bin's COUNT, so
  the scan stops at the bin holding the median entropy of the class; the threshold is that bin's
  lower border ``b/B``, not interpolated (a finer histogram, e.g. 1000 bins, makes it closer).
* ``"geociss-legacy"`` (a geociss variant, what geociss computed as "repository" before it was
  corrected): PLOP's stopping rule with exact integer indices, but the threshold is the stopping
  bin's lower border ``b/B`` (no interpolation), and ``(B − 1)/B`` when no bin qualifies (every
  pixel of the class passes). Kept to reproduce earlier geociss numbers.

In every mode ``τ_c = max(u_c, floor)`` with PLOP's ``threshold`` 0.001 as the floor (a NaN stays
NaN, as in PLOP), and a class the teacher never predicts on background gets the floor. A pixel is
pseudo-labelled when its normalised entropy is strictly BELOW ``τ_ĉ``: a higher threshold accepts
more pixels; the floor 0.001 keeps only almost one-hot teacher outputs. The normalised entropy
never exceeds ``1 / (C_old · log |Y^t|)``, so any threshold above that accepts every pixel.
PLOP builds the histogram on each GPU from that GPU's share of the data (no reduction across
GPUs); geociss builds one histogram over the whole step's data, as PLOP on one GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from geociss.data.classes import IGNORE_INDEX

Median = Literal["repository", "true", "geociss-legacy"]
MEDIANS: tuple[str, ...] = ("repository", "true", "geociss-legacy")
"""The accepted ``median`` modes of :func:`histogram_median`."""

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


def _repository_median(counts: list[int]) -> float:
    """PLOP's ``find_median`` value for one class (module docstring), NaN and ±inf included."""
    bins = len(counts)
    half = torch.tensor(sum(counts), dtype=torch.float32) / 2
    running = 0.0  # a Python float, as PLOP's; grows by the (float) bin index
    for step in range(bins):
        border = step / bins
        count = torch.tensor(counts[int(border * bins)])
        if bool(half >= running) and bool(half <= running + count):
            break
        running += border * bins
    # after a full scan (no break) ``border``, ``count`` are the last step's and ``running`` the
    # sum of every index; a zero count then gives ±inf, or NaN when ``half == running``
    return float(border + (half - running) / count * (1 / bins))


def histogram_median(counts: Tensor, median: Median = "repository") -> float:
    """Per-class threshold before the floor, from one class's histogram (see module docstring).

    Args:
        counts: (bins,) pixel counts of one class.
        median: ``"repository"`` (PLOP's code: index running sum, interpolation inside the
            stopping bin, its ``±inf``/NaN cases included), ``"true"`` (geociss: lower border of
            the bin holding the median) or ``"geociss-legacy"`` (geociss's earlier reading:
            PLOP's stopping bin's lower border, ``(bins − 1)/bins`` if none).

    Returns:
        The value ``u`` (``"repository"`` may give a value below 0, above 1, ``±inf`` or NaN);
        0.0 for an empty histogram.
    """
    if median not in MEDIANS:
        raise ValueError(f"unknown median {median!r}; use one of {', '.join(MEDIANS)}")
    values = [int(v) for v in counts.tolist()]
    if sum(values) <= 0:
        return 0.0
    if median == "repository":
        return _repository_median(values)
    bins = len(values)
    half = sum(values) / 2
    running = 0
    for b, count in enumerate(values):
        if running <= half <= running + count:
            return b / bins
        running += b if median == "geociss-legacy" else count
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
        """Per-class thresholds ``τ_c = max(u_c, floor)`` (C_old,) float32.

        Python's ``max``, as PLOP's: ``−inf`` and values under the floor become the floor,
        ``+inf`` stays (every pixel passes) and NaN stays NaN (no pixel passes).

        Args:
            median: ``"repository"`` (default, PLOP's code), ``"true"`` or
                ``"geociss-legacy"``; see :func:`histogram_median`.
            floor: lowest threshold (PLOP's ``threshold``, 0.001), also that of classes the
                teacher never predicts on background.
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
    "MEDIANS",
    "EntropyHistogram",
    "Median",
    "PseudoLabels",
    "check_teacher_labels",
    "entropy_pseudo_labels",
    "histogram_median",
    "normalised_entropy",
    "plop_entropy",
]
