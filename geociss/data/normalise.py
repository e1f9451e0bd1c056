"""Input normalisation: one rule for training, evaluation, ``extend``'s scores and ``predict``.

The readers (:class:`geociss.data.reader.WindowReader` for training and evaluation,
:class:`geociss.inference.source.TileDataset` for ``predict``) hand over raw band values with
every invalid pixel (nodata, NaN, masked by an alpha band or an internal mask, outside the
raster) set to NaN, or, in the training and evaluation loaders
(:class:`geociss.data.dataset.WindowDataset`), in the raster's own dtype with the invalid pixels
in a ``nodata`` mask, which :func:`normalise` fills exactly as it fills NaN, in the main process.
:func:`normalise` clips the bands to the model's clip bounds, if any
(``data.clip_percentiles``), scales them, ``(x - mean) / std`` (with ``data.normalization:
fixed`` the mean is the offset and the std the scale, :mod:`geociss.data.scaling`), and turns
NaN into 0: an invalid pixel enters the network as the band mean of the training data, the most
neutral value there is, instead of a raw 0 that is several standard deviations away (about -6
sigma for uint16 reflectance) and changes the class of valid pixels far around it. Labels ignore
invalid pixels (255) and every output of ``predict`` writes nodata there.

Windows that run past the raster edge (an image smaller than the window or tile) are
reflect-padded by both readers, after the invalid pixels were set to NaN, so ``evaluate`` scores
exactly the map ``predict`` writes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from geociss.data.scaling import Clip


def band_column(values: Sequence[float], device: str | torch.device = "cpu") -> Tensor:
    """Per-band values as a float32 ``(1, C, 1, 1)`` tensor on ``device``."""
    return torch.tensor([float(v) for v in values], dtype=torch.float32, device=device).view(
        1, -1, 1, 1
    )


def input_columns(
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    clip: Clip | None = None,
    device: str | torch.device = "cpu",
) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """``(mean, inv_std, low, high)`` columns for :func:`normalise` (None where not given)."""
    m = None if mean is None else band_column(mean, device)
    inv = None if std is None else band_column(std, device).reciprocal()
    if clip is None:
        return m, inv, None, None
    return m, inv, band_column(clip[0], device), band_column(clip[1], device)


def normalise(
    image: Tensor,
    mean: Tensor | None,
    inv_std: Tensor | None,
    *,
    inplace: bool = False,
    low: Tensor | None = None,
    high: Tensor | None = None,
    nodata: Tensor | None = None,
) -> Tensor:
    """``(clip(image, low, high) - mean) * inv_std`` in float32, with NaN (invalid) set to 0.

    Args:
        image: ``(B, C, H, W)`` raw band values: float32 with NaN at invalid pixels, or an
            integer type (which holds no NaN: nothing to fill).
        mean: :func:`band_column` of the per-band mean (None: 0).
        inv_std: :func:`band_column` of the reciprocal per-band standard deviation (None: 1).
            A reciprocal, multiplied, so that every caller rounds the same way.
        inplace: ``image`` may be overwritten when it is float32.
        low: :func:`band_column` of the per-band lower clip bound (None: no clipping).
        high: the upper clip bound (given with ``low``). NaN stays NaN.
        nodata: ``(B, H, W)`` bool, True at invalid pixels (any device): they are set to 0 in
            every band, as NaN is, so that a raw batch with this mask gives bit for bit what
            the same batch as float32 with NaN there gives.

    Returns:
        The normalised float32 batch (``image`` itself when ``inplace`` and float32).
    """
    own = inplace and image.dtype == torch.float32
    x = image if image.dtype == torch.float32 else image.float()
    own = own or x is not image
    if low is not None and high is not None:
        x = x.clamp_(low, high) if own else torch.clamp(x, low, high)
        own = True
    if mean is not None:
        x = x.sub_(mean) if own else x - mean
        own = True
    if inv_std is not None:
        x = x.mul_(inv_std) if own else x * inv_std
        own = True
    if image.is_floating_point():
        x = torch.nan_to_num_(x, nan=0.0) if own else torch.nan_to_num(x, nan=0.0)
        own = True
    if nodata is not None:
        x = x if own else x.clone()
        x.masked_fill_(nodata.to(x.device, non_blocking=True).unsqueeze(1), 0.0)
    return x


__all__ = ["band_column", "input_columns", "normalise"]
