"""Local POD: PLOP's pooled-output distillation of intermediate feature maps.

For a pair of maps (teacher x̄, student x) of one layer, both are squared element-wise, then
embedded by :func:`pod_embedding` (width- and height-pooled strips of every region of a 1×1,
2×2 and 4×4 grid), and the layer's distance is the batch mean of the plain L2 norm of the
difference of the embeddings. The total is ``(1/L) Σ_l w_l d_l`` over the ``L`` layers
(:func:`local_pod`), with PLOP's layer weights (0.01 for features, 0.0005 for logits) times
:func:`pod_schedule` ``= sqrt(|Y^t| / |C^t|)`` applied by the caller.

Logits are the one layer whose channels differ between the models: the student's extra (new
class) logits are summed into its background logit (:func:`merge_new_logits`), a sum of raw
logits, not of probabilities, as in PLOP's code.

Everything is computed in float32, whatever the input precision: squaring an fp16 activation of
a few hundred already overflows fp16's range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

DEFAULT_SCALES: tuple[int, ...] = (1, 2, 4)
"""PLOP's grid sizes: the whole map, then 2×2 and 4×4 regions."""


def merge_new_logits(logits: Tensor, old_channels: int) -> Tensor:
    """Reduce a student logit map to the teacher's channels (PLOP's ``extra_channels: sum``).

    Channel 0 becomes ``z_0 + Σ_{c ≥ old_channels} z_c``; channels ``1 .. old_channels - 1`` are
    kept; the new channels disappear into the background.

    Args:
        logits: (B, C, h, w) student logits, ``C ≥ old_channels``.
        old_channels: channels of the teacher (C_old, background included).

    Returns:
        (B, old_channels, h, w) logits, same dtype as the input.

    Raises:
        ValueError: ``old_channels`` is not in ``1 .. C``.
    """
    channels = logits.shape[1]
    if not 1 <= old_channels <= channels:
        raise ValueError(f"old_channels must be in 1..{channels}, got {old_channels}")
    background = logits[:, :1] + logits[:, old_channels:].sum(1, keepdim=True)
    return torch.cat([background, logits[:, 1:old_channels]], dim=1)


def pod_embedding(x: Tensor, scales: Sequence[int] = DEFAULT_SCALES) -> Tensor:
    """Local POD embedding Φ(x) of a (B, C, H, W) map: one flat vector per image.

    For every scale ``s`` the map is cut into an ``s × s`` grid of regions of ``H // s`` rows and
    ``W // s`` columns (remainder rows/columns are dropped, as PLOP does). Each region
    contributes its width-pooled strip (mean over the columns: C × rows values) followed by its
    height-pooled strip (mean over the rows: C × columns values); regions come in raster order,
    scales in the given order. No L2 normalisation (PLOP forces it off).

    PLOP's code takes the region size from the WIDTH for both axes, which assumes square maps
    (its crops are 512 × 512). Here each axis uses its own size: identical on square maps, and
    on rectangular maps every row is covered instead of slicing past the height or dropping it.
    Scales larger than the map's shorter side would give empty regions and are skipped.

    Args:
        x: (B, C, H, W) map (already pre-processed, e.g. squared).
        scales: grid sizes.

    Returns:
        (B, D) tensor. On a square map whose side ``W`` is divisible by every scale, a region
        of scale ``s`` gives ``2 · C · W / s`` values and there are ``s²`` of them, so
        ``D = 2 · C · W · Σ_s s`` (``14 · C · W`` for the default scales).

    Raises:
        ValueError: ``x`` is not 4-D, or no scale fits the map.
    """
    if x.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) map, got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    parts: list[Tensor] = []
    for s in scales:
        rows, cols = h // s, w // s
        if rows == 0 or cols == 0:
            continue
        grid = x[:, :, : s * rows, : s * cols].reshape(b, c, s, rows, s, cols)
        width_pooled = grid.mean(5).permute(0, 2, 4, 1, 3).reshape(b, s, s, c * rows)
        height_pooled = grid.mean(3).permute(0, 2, 3, 1, 4).reshape(b, s, s, c * cols)
        parts.append(torch.cat([width_pooled, height_pooled], dim=3).reshape(b, -1))
    if not parts:
        raise ValueError(f"map of {h}×{w} pixels is smaller than every POD scale {tuple(scales)}")
    return torch.cat(parts, dim=1)


def pod_distance(
    student: Tensor, teacher: Tensor, scales: Sequence[int] = DEFAULT_SCALES
) -> Tensor:
    """One layer's POD distance: batch mean of ``||Φ(x̄²) − Φ(x²)||₂`` (not squared).

    A student map with more channels than the teacher's is a logit map: its extra channels
    are merged into channel 0 by :func:`merge_new_logits` first. The teacher map is detached.

    Args:
        student: (B, C', H, W) student map (gradient flows).
        teacher: (B, C, H, W) teacher map, ``C ≤ C'``.
        scales: grid sizes of :func:`pod_embedding`.

    Returns:
        A float32 scalar.

    Raises:
        ValueError: batch/spatial shapes differ or the student has fewer channels.
    """
    if student.shape[0] != teacher.shape[0] or student.shape[2:] != teacher.shape[2:]:
        raise ValueError(
            f"POD maps differ in shape: student {tuple(student.shape)}, "
            f"teacher {tuple(teacher.shape)}"
        )
    if student.shape[1] < teacher.shape[1]:
        raise ValueError(
            f"student map has {student.shape[1]} channels, fewer than the teacher's "
            f"{teacher.shape[1]}"
        )
    x = student.float()
    if x.shape[1] > teacher.shape[1]:
        x = merge_new_logits(x, teacher.shape[1])
    old = teacher.detach().float()
    diff = pod_embedding(old.pow(2), scales) - pod_embedding(x.pow(2), scales)
    return torch.linalg.vector_norm(diff, dim=1).mean()


def local_pod(
    student: Sequence[Tensor],
    teacher: Sequence[Tensor],
    weights: Sequence[float],
    scales: Sequence[int] = DEFAULT_SCALES,
) -> Tensor:
    """PLOP's local POD over ``L`` layers: ``(1/L) Σ_l w_l · pod_distance(x_l, x̄_l)``.

    Args:
        student: the student's maps, shallow to deep (logits last, if distilled).
        teacher: the teacher's maps, same order.
        weights: one weight per layer (PLOP: 0.01 per feature map, 0.0005 for logits, each
            times :func:`pod_schedule`); a layer of weight 0 is not computed but still counts
            in ``L``.
        scales: grid sizes of :func:`pod_embedding`.

    Returns:
        A float32 scalar (0 when student and teacher maps are equal).

    Raises:
        ValueError: the three sequences differ in length or are empty.
    """
    if not len(student) == len(teacher) == len(weights) or not student:
        raise ValueError(
            f"local POD needs as many student maps ({len(student)}), teacher maps "
            f"({len(teacher)}) and weights ({len(weights)}), at least one"
        )
    total = torch.zeros((), device=student[0].device)
    for s, t, w in zip(student, teacher, weights, strict=True):
        if w != 0:
            total = total + w * pod_distance(s, t, scales)
    return total / len(student)


def pod_schedule(num_channels: int, num_new: int) -> float:
    """PLOP's "pod schedule" factor ``sqrt(|Y^t| / |C^t|)`` (seen channels over new ones).

    Raises:
        ValueError: ``num_new`` is not positive or exceeds ``num_channels``.
    """
    if not 0 < num_new <= num_channels:
        raise ValueError(f"need 0 < num_new ≤ num_channels, got {num_new} and {num_channels}")
    return math.sqrt(num_channels / num_new)


__all__ = [
    "DEFAULT_SCALES",
    "local_pod",
    "merge_new_logits",
    "pod_distance",
    "pod_embedding",
    "pod_schedule",
]
