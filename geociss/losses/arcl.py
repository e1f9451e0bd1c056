"""IDEC's ARCL: asymmetric region-wise contrastive learning (Zhao, Yuan, Shi, TPAMI 2023).

The paper's Fig. 1(b): a class-aware mask cuts the latent space into region embeddings; the
ANCHOR comes from the frozen previous-step model, the POSITIVE and the NEGATIVES from the current
model, and a contrastive loss pulls the anchor to its positive and pushes it from the negatives.
IDEC's public code does not implement this (its "region embedding" is a list of at most 256 raw
activations fed to a triplet loss, behind frozen modules); this module follows the figure:

1. The labels (ground truth ∪ pseudo-labels, at image resolution) are down-sampled to the
   feature resolution by NEAREST neighbour (bilinear would mix class ids at boundaries); ignored
   pixels belong to no region.
2. A region is the set of pixels of one class in one image. Its embedding is the mean of the
   L2-normalised pixel features over the region, L2-normalised again (so similarities are
   cosines in [−1, 1]; [0, 1] for post-ReLU features).
3. Anchor ``a_r``: the teacher's embedding of region ``r`` (detached: no gradient reaches the
   teacher). Positive: the student's embedding ``s_r`` of the same region. Negatives: the
   student's embeddings ``s_j`` of every region of the batch with another label. Regions of the
   same class in other images are neither (the positive is "the same region"). Regions whose
   label is in ``negative_only`` (background and unknown pixels) are never anchors, only
   negatives: their content is not one semantic class.
4. InfoNCE, ``ℓ_r = −log [exp(a_r·s_r/τ) / (exp(a_r·s_r/τ) + Σ_j exp(a_r·s_j/τ))]``, averaged over
   the anchors that have at least one negative (an anchor without negatives carries no signal).
   It is computed as ``softplus(LSE_j(a_r·s_j/τ) − a_r·s_r/τ)``: exact, and precise when the
   positive dominates.

Temperature default τ = 0.1 (SimCLR's): region embeddings of post-ReLU features have cosines in
[0, 1], so 1/τ = 10 lets the softmax over the few tens of regions of a batch become sharp
without the saturation of UCD's 0.07 on pixel pairs.

Everything runs in float32 with autocast off. Pixel features are divided by their (detached)
largest magnitude before normalisation, which leaves the result unchanged but keeps the squared
norms finite for half-precision inputs of any magnitude.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from geociss.data.classes import IGNORE_INDEX
from geociss.losses.contrastive import nearest_downsample

DEFAULT_TEMPERATURE = 0.1
"""τ of the region InfoNCE (see the module docstring)."""


@dataclass(frozen=True)
class Regions:
    """The regions of a batch at feature resolution.

    Attributes:
        index: (B·h·w,) region of every pixel in raster order (b, y, x); −1 for ignored pixels.
        labels: (R,) class of each region.
        images: (R,) image of each region.
    """

    index: Tensor
    labels: Tensor
    images: Tensor

    @property
    def count(self) -> int:
        """Number of regions R."""
        return int(self.labels.numel())


def find_regions(labels: Tensor, ignore_index: int = IGNORE_INDEX) -> Regions:
    """Group the pixels of (B, h, w) labels into (image, class) regions, ordered by image, class.

    Raises:
        ValueError: labels are not (B, h, w) or hold negative values.
    """
    if labels.ndim != 3:
        raise ValueError(f"expected (B, h, w) labels, got shape {tuple(labels.shape)}")
    flat = labels.reshape(-1).long()
    valid = flat != ignore_index
    if bool((flat[valid] < 0).any()):
        raise ValueError("region labels must be non-negative class indices")
    b, h, w = labels.shape
    image = torch.arange(b, device=flat.device).repeat_interleave(h * w)
    span = int(flat[valid].max()) + 1 if bool(valid.any()) else 1
    keys, inverse = torch.unique(image[valid] * span + flat[valid], return_inverse=True)
    index = torch.full_like(flat, -1)
    index[valid] = inverse
    return Regions(index, keys % span, keys // span)


def unit(x: Tensor, dim: int = 1) -> Tensor:
    """L2-normalise ``x`` along ``dim`` in float32; zero vectors stay zero.

    ``x`` is first divided by its detached largest magnitude along ``dim`` (normalisation is
    scale-invariant, so value and gradient are unchanged) to keep the squared norm finite.
    """
    x = x.float()
    scale = x.detach().abs().amax(dim=dim, keepdim=True)
    scale = scale.clamp_min(torch.finfo(torch.float32).tiny)
    return F.normalize(x / scale, dim=dim)


def region_embeddings(features: Tensor, regions: Regions) -> Tensor:
    """(R, D) embeddings: mean of the unit pixel features of each region, normalised again.

    Args:
        features: (B, D, h, w) features at the resolution the regions were found at.
        regions: from :func:`find_regions`.
    """
    pixels = unit(features.float().permute(0, 2, 3, 1).reshape(-1, features.shape[1]))
    keep = regions.index >= 0
    index = regions.index[keep]
    sums = pixels.new_zeros(regions.count, pixels.shape[1]).index_add(0, index, pixels[keep])
    counts = torch.bincount(index, minlength=regions.count).clamp_min(1)
    return unit(sums / counts[:, None].to(sums.dtype))


def region_contrastive_loss(
    features: Tensor,
    old_features: Tensor,
    labels: Tensor,
    temperature: float = DEFAULT_TEMPERATURE,
    negative_only: Collection[int] = (0,),
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """ARCL: region InfoNCE with teacher anchors and student positives/negatives (module doc).

    Args:
        features: (B, D, h, w) student features (IDEC: the ASPP output); gradient flows.
        old_features: (B, D, h, w) teacher features (detached here).
        labels: (B, H, W) region labels at image resolution (ground truth ∪ pseudo-labels),
            down-sampled by nearest neighbour; not modified.
        temperature: τ.
        negative_only: labels whose regions are only negatives (background, unknown).
        ignore_index: label of pixels in no region.

    Returns:
        A float32 scalar; 0 (attached to ``features`` when a region exists) when no anchor has
        a negative.

    Raises:
        ValueError: shapes disagree or ``temperature`` is not positive.
    """
    if features.ndim != 4 or features.shape != old_features.shape:
        raise ValueError(
            f"student and teacher features must have equal (B, D, h, w) shapes, got "
            f"{tuple(features.shape)} and {tuple(old_features.shape)}"
        )
    if labels.ndim != 3 or labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"expected ({features.shape[0]}, H, W) labels, got shape {tuple(labels.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    with torch.autocast(features.device.type, enabled=False):
        small = nearest_downsample(labels, (features.shape[2], features.shape[3]))
        regions = find_regions(small.to(features.device), ignore_index)
        if regions.count == 0:
            return features.new_zeros((), dtype=torch.float32)
        student = region_embeddings(features, regions)
        teacher = region_embeddings(old_features.detach(), regions)
        is_anchor = ~torch.isin(
            regions.labels, torch.tensor(list(negative_only)).to(student.device)
        )
        anchor_ids = is_anchor.nonzero().squeeze(1)
        negative = regions.labels[anchor_ids][:, None] != regions.labels[None, :]
        has_negative = negative.any(dim=1)
        if not bool(has_negative.any()):
            return student.sum() * 0.0
        anchor_ids, negative = anchor_ids[has_negative], negative[has_negative]
        sim = teacher[anchor_ids] @ student.T / temperature
        positive = sim.gather(1, anchor_ids[:, None]).squeeze(1)
        log_negatives = torch.logsumexp(sim.masked_fill(~negative, float("-inf")), dim=1)
        return F.softplus(log_negatives - positive).mean()


__all__ = [
    "DEFAULT_TEMPERATURE",
    "Regions",
    "find_regions",
    "region_contrastive_loss",
    "region_embeddings",
    "unit",
]
