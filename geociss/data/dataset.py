"""A dataset indexed by :class:`Window`, and the collate that remaps labels to step channels.

The samplers (:mod:`geociss.data.samplers`) yield windows; a ``DataLoader`` hands each one to
:class:`WindowDataset`, whose sample dict follows torchgeo's keys (DESIGN §3)::

    image      float32 tensor (C, H, W)
    mask       int64 tensor (H, W), class ids of the schema, 255 = ignore
    tile       int, index of the tile
    window     (row, col, height, width)
    transform  (a, b, c, d, e, f) affine coefficients of the window's first pixel
    crs        CRS as WKT, or None for rasters in pixel space

:class:`Collate` stacks samples into a batch and applies the step's label look-up table, so
labels are remapped to step channels exactly once, in the loader's worker processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from geociss.data.classes import ClassSchema
from geociss.data.reader import WindowReader
from geociss.data.records import TileRecord, Window

Sample = dict[str, Any]


class WindowDataset(Dataset[Sample]):
    """Sample dicts of pixel windows of catalogue tiles.

    The dataset is indexed by :class:`Window` (``ds[Window(tile, row, col, h, w)]``) and has
    no length of its own: the sampler decides which windows an epoch reads. It is safe in
    ``DataLoader`` worker processes (see :class:`WindowReader`).

    Args:
        tiles: catalogue tiles; ``Window.tile`` indexes this sequence.
        schema: class schema used to encode raw label values.
        bands: 1-based image band indexes to read (default: every band but alpha).
        max_open: most raster handles kept open per process.
    """

    def __init__(
        self,
        tiles: Sequence[TileRecord],
        schema: ClassSchema,
        bands: Sequence[int] | None = None,
        max_open: int = 128,
    ) -> None:
        self.tiles = list(tiles)
        self.schema = schema
        self.reader = WindowReader(self.tiles, schema, bands=bands, max_open=max_open)

    def __getitem__(self, window: Window) -> Sample:
        """Read one window as a sample dict (keys in the module docstring)."""
        image, mask, _ = self.reader.read(window)
        t = self.reader.transform(window)
        return {
            "image": torch.from_numpy(image),
            "mask": torch.from_numpy(mask.astype(np.int64)),
            "tile": window.tile,
            "window": (window.row, window.col, window.height, window.width),
            "transform": (t.a, t.b, t.c, t.d, t.e, t.f),
            "crs": self.tiles[window.tile].crs,
        }


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Stack, straight into shared memory inside a worker (saves the copy on the way back)."""
    if get_worker_info() is None:
        return torch.stack(tensors)
    first = tensors[0]
    numel = first.numel() * len(tensors)
    storage = first._typed_storage()._new_shared(numel, device=first.device)
    out = first.new(storage).resize_(len(tensors), *first.shape)
    return torch.stack(tensors, out=out)


def check_lut(lut: np.ndarray) -> np.ndarray:
    """Validate a label look-up table and return it as a 256-entry int64 array.

    Args:
        lut: ``lut[v]`` is the step channel of class id ``v`` (or 255 = ignore); 256 entries.

    Raises:
        ValueError: wrong shape, non-integer entries or values outside 0-255.
    """
    arr = np.asarray(lut)
    if arr.shape != (256,):
        raise ValueError(f"label look-up table must have 256 entries, got shape {arr.shape}")
    if arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() > 255:
        raise ValueError("label look-up table must hold integers 0-255 (255 = ignore)")
    return arr.astype(np.int64)


def collate_windows(samples: Sequence[Sample], label_lut: np.ndarray | None = None) -> Sample:
    """Stack sample dicts into a batch and remap the labels with ``label_lut``.

    Args:
        samples: sample dicts of :class:`WindowDataset`, all of the same window size.
        label_lut: 256-entry table, class id (or 255) -> step channel (or 255); None keeps ids.

    Returns:
        ``image`` (B, C, H, W) float32, ``mask`` (B, H, W) int64, and ``tile``, ``window``,
        ``transform``, ``crs`` as lists of the samples' values.

    Raises:
        ValueError: an empty batch, or an invalid look-up table.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    lut = None if label_lut is None else torch.from_numpy(check_lut(label_lut))
    return _collate(samples, lut)


def _collate(samples: Sequence[Sample], lut: torch.Tensor | None) -> Sample:
    batch: Sample = {
        "image": _stack([s["image"] for s in samples]),
        "mask": _stack([s["mask"] for s in samples]),
    }
    if lut is not None:
        batch["mask"] = lut[batch["mask"]]
    for key in samples[0]:
        if key not in batch:
            batch[key] = [s[key] for s in samples]
    return batch


class Collate:
    """Picklable ``collate_fn`` for a ``DataLoader``: :func:`collate_windows` with a fixed table.

    Args:
        label_lut: 256-entry table, class id (or 255) -> step channel (or 255); None keeps ids.

    Raises:
        ValueError: an invalid look-up table.
    """

    def __init__(self, label_lut: np.ndarray | None = None) -> None:
        self.label_lut = None if label_lut is None else check_lut(label_lut)
        self._lut = None if self.label_lut is None else torch.from_numpy(self.label_lut)

    def __call__(self, samples: Sequence[Sample]) -> Sample:
        """Collate one batch."""
        if not samples:
            raise ValueError("cannot collate an empty batch")
        return _collate(samples, self._lut)
