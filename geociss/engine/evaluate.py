"""Full-tile evaluation with sliding windows (never centre crops).

Each tile is covered by an integer grid of windows (last window clamped inside the raster,
tiles smaller than a window reflect-padded, as ``predict`` pads its tiles; invalid pixels enter
the model as the band mean, :mod:`geociss.data.normalise`), so that on a tile no larger than the
window the confusion matrix equals the one of the class raster ``predict`` writes with a tile
of the same size. Neighbouring windows overlap, and every pixel is
*owned* by exactly one window: the boundary between two windows lies in the middle of their
overlap, so each pixel is scored from the window where it is farthest from an edge, and no
pixel is counted twice in the confusion matrix.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from geociss.data.classes import IGNORE_INDEX, ClassSchema
from geociss.data.dataset import Collate, WindowDataset
from geociss.data.normalise import input_columns, normalise
from geociss.data.records import TileRecord, Window
from geociss.data.samplers import grid_origins
from geociss.data.scaling import Clip
from geociss.evaluation.confusion import ConfusionAccumulator


@dataclass(frozen=True)
class OwnedWindow:
    """A grid window and the part of it (rows r0:r1, cols c0:c1, window-relative) it scores."""

    window: Window
    own: tuple[int, int, int, int]


def owned_spans(n: int, size: int, overlap: int) -> list[tuple[int, int, int]]:
    """``(origin, own_start, own_stop)`` per window along one axis of ``n`` pixels."""
    if n <= size:
        return [(0, 0, n)]
    origins = grid_origins(n, size, size - overlap)
    bounds = [0] + [(a + size + b) // 2 for a, b in itertools.pairwise(origins)] + [n]
    return [(o, bounds[i] - o, bounds[i + 1] - o) for i, o in enumerate(origins)]


def owned_grid(tiles: Sequence[TileRecord], size: int, overlap: int) -> list[OwnedWindow]:
    """Sliding windows over every tile, each with the region it owns."""
    out = []
    for t, rec in enumerate(tiles):
        for r, r0, r1 in owned_spans(rec.height, size, overlap):
            for c, c0, c1 in owned_spans(rec.width, size, overlap):
                out.append(OwnedWindow(Window(t, r, c, size, size), (r0, r1, c0, c1)))
    return out


def _batches(items: Sequence[OwnedWindow], batch_size: int) -> Iterator[list[OwnedWindow]]:
    for i in range(0, len(items), batch_size):
        yield list(items[i : i + batch_size])


def evaluate_tiles(
    model: torch.nn.Module,
    predict: Callable[[Tensor], Tensor],
    tiles: Sequence[TileRecord],
    schema: ClassSchema,
    lut: np.ndarray,
    num_channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    size: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    bands: Sequence[int] | None = None,
    progress: Callable[[int], None] | None = None,
    clip: Clip | None = None,
) -> np.ndarray:
    """Confusion matrix (rows: ground truth) of a model over whole tiles.

    Args:
        model: returns a ModelOutput with ``logits`` for a normalised batch.
        predict: logits → channel index per pixel (the method's inference rule).
        tiles: the evaluation tiles (with labels).
        schema: class schema of the labels.
        lut: class id → evaluation channel (the scenario's ``eval_lut``).
        num_channels: channels of the model.
        mean: per-band normalisation mean.
        std: per-band normalisation std.
        size: window size.
        overlap: overlap of neighbouring windows.
        batch_size: windows per forward pass.
        num_workers: DataLoader workers reading windows.
        device: where the model runs.
        bands: 1-based image bands to read.
        progress: called with the number of windows done after each batch.
        clip: per-band ``(low, high)`` clip bounds before normalising (the bundle's), or None.
    """
    device = torch.device(device)
    # one process evaluates the whole set: no cross-process reduction, even under DDP
    acc = ConfusionAccumulator(num_channels, device=device, sync=False)
    was_training = model.training
    model.eval()
    autocast = device.type == "cuda"
    batches = owned_batches(
        tiles, schema, lut, mean, std, size=size, overlap=overlap, batch_size=batch_size,
        num_workers=num_workers, device=device, bands=bands, clip=clip,
    )  # fmt: skip
    try:
        with torch.inference_mode():
            for chunk, x, target in batches:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    logits = model(x).logits
                acc.update(predict(logits.float()), target)
                if progress is not None:
                    progress(len(chunk))
    finally:
        model.train(was_training)
    return acc.compute()


def owned_batches(
    tiles: Sequence[TileRecord],
    schema: ClassSchema,
    lut: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    size: int,
    overlap: int,
    batch_size: int,
    device: torch.device,
    num_workers: int = 0,
    bands: Sequence[int] | None = None,
    clip: Clip | None = None,
) -> Iterator[tuple[list[OwnedWindow], Tensor, Tensor]]:
    """``(windows, normalised images, owned targets)`` per batch of the tiles' owned grid.

    Labels go through ``lut``; every pixel outside a window's owned part is 255 in its
    target, so each pixel of the tiles is scored exactly once. The workers hand over raw band
    values and uint8 masks; the float conversion and normalisation run here, on ``device``
    (targets are int64 there). Iterate under ``torch.inference_mode()`` (images are normalised
    in place).
    """
    grid = owned_grid(tiles, size, overlap)
    loader = DataLoader(
        WindowDataset(tiles, schema, bands=bands),
        batch_size=batch_size,
        sampler=[g.window for g in grid],  # type: ignore[arg-type]
        collate_fn=Collate(lut),
        num_workers=num_workers,
    )
    m, inv, low, high = input_columns(mean, std, clip, device)
    for chunk, batch in zip(_batches(grid, batch_size), loader, strict=True):
        x = normalise(
            batch["image"].to(device, non_blocking=True),
            m,
            inv,
            inplace=True,
            low=low,
            high=high,
            nodata=batch["nodata"],
        )
        yield chunk, x, owned_target(batch["mask"], chunk).to(device).long()


def owned_target(mask: Tensor, chunk: Sequence[OwnedWindow]) -> Tensor:
    """``mask`` with every pixel outside each window's owned part set to ignore (255)."""
    target = torch.full_like(mask, IGNORE_INDEX)
    for i, item in enumerate(chunk):
        r0, r1, c0, c1 = item.own
        target[i, r0:r1, c0:c1] = mask[i, r0:r1, c0:c1]
    return target
