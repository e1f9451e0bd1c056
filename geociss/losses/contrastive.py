"""UCD's uncertainty-aware contrastive distillation (Yang et al., TPAMI 2022).

At feature resolution (the ASPP output, 1/16), every pixel of the mini-batch gets a "mixed"
label ``m``: its ground truth where it is a new class, the teacher's prediction where the step's
label is background (old classes hide there under the background shift). Pixels with ``m > 0``
are anchors (student features, L2-normalised, gradient flows). The contrast set is the anchors
again (detached) plus, for anchors whose label came from the teacher, the teacher's features of
the same pixels. For anchor ``i`` and contrast pixel ``j`` (``s_ij = a_i · c_j / τ``):

* positives: same label, except the anchor's own detached copy; negatives: different label;
* ``N_i = Σ_{neg j} exp(s_ij)``;
* uncertainty weight ``P_ij = softmax(z̄_i) · softmax(z̄_j)`` (the teacher's probability that both
  pixels share a class), set to 1 when both labels are new classes;
* ``ℓ_i = −(1/|Pos_i|) Σ_{j∈Pos_i} P_ij [s_ij − log(exp(s_ij) + N_i)]``, averaged over the anchors
  that have at least one positive.

Differences from UCD's code, on purpose:

* labels are down-sampled by NEAREST neighbour (UCD interpolates them bilinearly, which mixes
  class ids at boundaries and turns 255 into background); ignored pixels are neither anchors nor
  contrast pixels (UCD's cast makes them background);
* the bracket is computed as ``−softplus(log N_i − s_ij)``, exact and overflow-free. UCD's code
  max-shifts ``s_ij`` but not ``N_i``, i.e. multiplies the negatives by ``e^{M_i}`` with
  ``M_i = max_j s_ij`` (≈ ``e^{1/τ}``); ``original_shift=True`` reproduces that (numbers only).

Memory: the similarity matrix is anchors × contrast pixels (up to 2 × anchors). ``max_pixels``
caps the anchors by a uniform random subset drawn with the given ``torch.Generator`` (the global
one by default), so the result is deterministic given the generator's state. The default, 4096
anchors, bounds each float32 matrix to 4096 × 8192 × 4 B = 134 MB: a batch of 8 crops of 512 px at
output stride 16 has 8192 feature pixels, so it is subsampled at most by half; ``None`` uses every
pixel as UCD does. All arithmetic runs in float32 with autocast off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from geociss.data.classes import IGNORE_INDEX

DEFAULT_TEMPERATURE = 0.07
"""UCD's τ."""
DEFAULT_MAX_PIXELS = 4096
"""Default cap on the number of anchors (see the module docstring)."""


def nearest_downsample(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize a (B, H, W) integer label map to ``size`` by nearest neighbour (never bilinear).

    Returns:
        (B, h, w) labels of the input's dtype; every value is one of the input's values.
    """
    if labels.ndim != 3:
        raise ValueError(f"expected (B, H, W) labels, got shape {tuple(labels.shape)}")
    if tuple(labels.shape[1:]) == tuple(size):
        return labels
    resized = F.interpolate(labels[:, None].float(), size=size, mode="nearest")
    return resized[:, 0].round().to(labels.dtype)


def _pixels(x: Tensor) -> Tensor:
    """(B, C, h, w) → (B·h·w, C), pixels in raster order (b, y, x)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _select_anchors(
    candidates: Tensor, max_pixels: int | None, generator: torch.Generator | None
) -> Tensor:
    """Indices of the anchors: all candidates, or a sorted uniform subset of ``max_pixels``."""
    index = candidates.nonzero().squeeze(1)
    if max_pixels is None or index.numel() <= max_pixels:
        return index
    device = generator.device if generator is not None else torch.device("cpu")
    keep = torch.randperm(index.numel(), generator=generator, device=device)[:max_pixels]
    return index[keep.sort().values.to(index.device)]


def contrastive_terms(
    anchors: Tensor,
    contrast: Tensor,
    anchor_labels: Tensor,
    contrast_labels: Tensor,
    weights: Tensor,
    temperature: float = DEFAULT_TEMPERATURE,
    original_shift: bool = False,
) -> tuple[Tensor, Tensor]:
    """Per-anchor UCD loss ``ℓ_i`` for given anchors and contrast set (float32).

    The first ``len(anchors)`` contrast rows must be the anchors themselves (their own column
    is excluded from the positives).

    Args:
        anchors: (A, D) normalised anchor features.
        contrast: (N, D) normalised contrast features, ``N ≥ A``.
        anchor_labels: (A,) labels.
        contrast_labels: (N,) labels.
        weights: (A, N) uncertainty weights ``P``.
        temperature: τ.
        original_shift: reproduce UCD's mixed shifted/unshifted bracket.

    Returns:
        ``(losses, has_positive)``: (A,) per-anchor losses (0 for anchors without positives)
        and the (A,) mask of anchors that have at least one positive.
    """
    a = anchors.shape[0]
    sim = anchors @ contrast.T / temperature
    same = anchor_labels[:, None] == contrast_labels[None, :]
    self_pair = torch.zeros_like(same)
    self_pair[:, :a] = torch.eye(a, dtype=torch.bool, device=same.device)
    positive = same & ~self_pair
    log_neg = torch.logsumexp(sim.masked_fill(same, float("-inf")), dim=1, keepdim=True)
    if original_shift:
        log_neg = log_neg + sim.max(dim=1, keepdim=True).values.detach()
    bracket = -F.softplus(log_neg - sim)
    weighted = torch.where(positive, weights * bracket, torch.zeros_like(bracket))
    count = positive.sum(1)
    return -weighted.sum(1) / count.clamp_min(1), count > 0


def uncertainty_contrastive_loss(
    features: Tensor,
    old_features: Tensor,
    old_logits: Tensor,
    target: Tensor,
    temperature: float = DEFAULT_TEMPERATURE,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    original_shift: bool = False,
    ignore_index: int = IGNORE_INDEX,
    generator: torch.Generator | None = None,
) -> Tensor:
    """UCD's contrastive distillation over the pixels of a mini-batch (module docstring).

    Args:
        features: (B, D, h, w) student features (the ASPP output); gradient flows.
        old_features: (B, D, h, w) teacher features (detached here).
        old_logits: (B, C_old, h, w) teacher logits at feature resolution (detached here).
        target: (B, H, W) step labels at full resolution (not modified).
        temperature: τ (UCD: 0.07).
        max_pixels: cap on the anchors, or None for every pixel.
        original_shift: reproduce UCD's shifted/unshifted bracket (matching numbers only).
        ignore_index: label of ignored pixels.
        generator: random generator of the anchor subsample (global RNG if None).

    Returns:
        A float32 scalar; 0 (still attached to ``features``) when no anchor has a positive.

    Raises:
        ValueError: shapes disagree, or ``temperature``/``max_pixels`` are not positive.
    """
    _check_inputs(features, old_features, old_logits, target, temperature, max_pixels)
    old_channels = old_logits.shape[1]
    with torch.autocast(features.device.type, enabled=False):
        feats = _pixels(features.float())
        old_feats = _pixels(old_features.detach().float())
        old_probs = torch.softmax(_pixels(old_logits.detach().float()), dim=1)
        label = nearest_downsample(target, tuple(features.shape[2:])).reshape(-1)
        label = label.to(features.device).long()
        mixed = torch.where(label == 0, old_probs.argmax(1), label)
        index = _select_anchors((mixed > 0) & (label != ignore_index), max_pixels, generator)
        if index.numel() == 0:
            return feats.sum() * 0.0
        anchors = F.normalize(feats[index], dim=1)
        from_teacher = label[index] == 0
        contrast = torch.cat([anchors.detach(), F.normalize(old_feats[index[from_teacher]], dim=1)])
        labels_a = mixed[index]
        labels_c = torch.cat([labels_a, labels_a[from_teacher]])
        probs_a = old_probs[index]
        weights = probs_a @ torch.cat([probs_a, probs_a[from_teacher]]).T
        both_new = (labels_a[:, None] >= old_channels) & (labels_c[None, :] >= old_channels)
        weights = torch.where(both_new, torch.ones_like(weights), weights)
        losses, has_positive = contrastive_terms(
            anchors, contrast, labels_a, labels_c, weights, temperature, original_shift
        )
        if not bool(has_positive.any()):
            return feats.sum() * 0.0
        return losses[has_positive].mean()


def _check_inputs(
    features: Tensor,
    old_features: Tensor,
    old_logits: Tensor,
    target: Tensor,
    temperature: float,
    max_pixels: int | None,
) -> None:
    if features.ndim != 4 or features.shape != old_features.shape:
        raise ValueError(
            f"student and teacher features must be equal (B, D, h, w) shapes, got "
            f"{tuple(features.shape)} and {tuple(old_features.shape)}"
        )
    b, _, h, w = features.shape
    if old_logits.ndim != 4 or (old_logits.shape[0], *old_logits.shape[2:]) != (b, h, w):
        raise ValueError(
            f"teacher logits {tuple(old_logits.shape)} do not match features "
            f"{tuple(features.shape)}"
        )
    if target.ndim != 3 or target.shape[0] != b:
        raise ValueError(f"expected ({b}, H, W) labels, got shape {tuple(target.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be positive or None, got {max_pixels}")


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_TEMPERATURE",
    "contrastive_terms",
    "nearest_downsample",
    "uncertainty_contrastive_loss",
]
