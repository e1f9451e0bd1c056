"""A dataset indexed by :class:`Window`, and the collate that remaps labels to step channels.

The samplers (:mod:`geociss.data.samplers`) yield windows; a ``DataLoader`` hands each one to
:class:`WindowDataset`, whose sample dict follows torchgeo's keys::

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

import math
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
        image, mask, _ = self.reader.read_pair(window)
        mask64 = torch.from_numpy(mask.astype(np.int64))
        return self._sample(window, torch.from_numpy(image), mask64)

    def __getitems__(self, windows: Sequence[Window]) -> list[Sample]:
        """Read a batch of windows (the ``DataLoader`` calls this instead of ``__getitem__``).

        Windows of one size and band count are read straight into one batch tensor (images in
        shared memory inside a worker), and the samples are its consecutive slices, which
        :class:`Collate` then returns without stacking: one conversion per pixel, no copy.
        """
        windows = list(windows)
        if not windows:
            return []
        h, w = windows[0].height, windows[0].width
        channels = {self.reader.channels(x.tile) for x in windows}
        if len(channels) > 1 or any((x.height, x.width) != (h, w) for x in windows):
            return [self[x] for x in windows]
        images = _empty((len(windows), channels.pop(), h, w), torch.float32)
        # Not in shared memory: a look-up table in the collate writes a new mask batch anyway.
        masks = torch.empty((len(windows), h, w), dtype=torch.int64)
        image_np, mask_np = images.numpy(), masks.numpy()
        for i, window in enumerate(windows):
            _, mask, _ = self.reader.read_pair(window, out=image_np[i])
            mask_np[i] = mask
        return [self._sample(x, images[i], masks[i]) for i, x in enumerate(windows)]

    def _sample(self, window: Window, image: torch.Tensor, mask: torch.Tensor) -> Sample:
        t = self.reader.transform(window)
        return {
            "image": image,
            "mask": mask,
            "tile": window.tile,
            "window": (window.row, window.col, window.height, window.width),
            "transform": (t.a, t.b, t.c, t.d, t.e, t.f),
            "crs": self.tiles[window.tile].crs,
        }


def _empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An empty tensor; in shared memory inside a DataLoader worker.

    Allocating a batch where the worker has to put it anyway saves one copy of every batch
    on its way back to the main process (the same trick as PyTorch's default collate).
    """
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    proto = torch.empty(0, dtype=dtype)
    storage = proto._typed_storage()._new_shared(math.prod(shape), device=proto.device)
    return proto.new(storage).view(shape)


def _batch_of(tensors: list[torch.Tensor]) -> torch.Tensor | None:
    """The batch tensor that ``tensors`` are consecutive slices of, if they are (else None).

    True for the samples of :meth:`WindowDataset.__getitems__`: they tile one storage exactly.
    """
    first = tensors[0]
    storage = first.untyped_storage()
    size = first.nbytes
    if first.storage_offset() != 0 or storage.nbytes() != size * len(tensors):
        return None
    base = storage.data_ptr()
    for i, t in enumerate(tensors):
        if (
            t.dtype != first.dtype
            or t.shape != first.shape
            or not t.is_contiguous()
            or t.untyped_storage().data_ptr() != base
            or t.data_ptr() != base + i * size
        ):
            return None
    return first.new_empty(0).set_(storage, 0, (len(tensors), *first.shape))


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
    return _collate(samples, None if label_lut is None else check_lut(label_lut))


def _collate(samples: Sequence[Sample], lut: np.ndarray | None) -> Sample:
    # Copies run in numpy, single-threaded: torch's multi-threaded stack/take were 1.3-3x
    # slower here on 2 busy cores, and DataLoader workers run one thread each anyway.
    images = [s["image"] for s in samples]
    image = _batch_of(images)
    if image is None:
        image = _empty((len(images), *images[0].shape), images[0].dtype)
        np.stack([t.numpy() for t in images], out=image.numpy())
    masks = [s["mask"] for s in samples]
    stacked = _batch_of(masks)
    if lut is None and stacked is not None:
        mask = stacked
    else:
        mask = _empty((len(masks), *masks[0].shape), torch.int64)
        out = mask.numpy()
        if lut is None:
            np.stack([m.numpy() for m in masks], out=out)
        elif stacked is not None:
            np.take(lut, stacked.numpy(), out=out, mode="clip")  # ids are 0-255: no clipping
        else:
            for i, m in enumerate(masks):
                np.take(lut, m.numpy(), out=out[i], mode="clip")
    batch: Sample = {"image": image, "mask": mask}
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

    def __call__(self, samples: Sequence[Sample]) -> Sample:
        """Collate one batch."""
        if not samples:
            raise ValueError("cannot collate an empty batch")
        return _collate(samples, self.label_lut)
