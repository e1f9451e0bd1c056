"""A dataset indexed by :class:`Window`, and the collate that remaps labels to step channels.

The samplers (:mod:`geociss.data.samplers`) yield windows; a ``DataLoader`` hands each one to
:class:`WindowDataset`, whose sample dict follows torchgeo's keys (plus ``nodata``)::

    image      tensor (C, H, W) of raw band values in the raster's own dtype (:func:`wire_dtype`)
    nodata     bool tensor (H, W), True at invalid image pixels, or None when there are none
    mask       uint8 tensor (H, W), class ids of the schema, 255 = ignore
    tile       int, index of the tile
    window     (row, col, height, width)
    transform  (a, b, c, d, e, f) affine coefficients of the window's first pixel
    crs        CRS as WKT, or None for rasters in pixel space

:class:`Collate` stacks samples into a batch and applies the step's label look-up table, so
labels are remapped to step channels exactly once, in the loader's worker processes.

What crosses the process boundary from a worker is therefore the raster's bytes (uint8 RGB: 3
bytes a pixel), the uint8 mask (1) and, only for batches that hold invalid pixels, the bool
``nodata`` (1), in shared memory, instead of float32 images (12) and int64 masks (8). The
float conversion, nodata filling and normalisation run in the main process, on the device the
batch goes to: :func:`geociss.data.normalise.normalise` with ``nodata=batch["nodata"]`` gives
exactly the float32 input of :meth:`geociss.data.reader.WindowReader.read` normalised (the
image with NaN at invalid pixels: nodata → band mean → 0). Look-up tables hold 0-255, so the
remapped masks always fit in uint8.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import DTypeLike
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
        image, mask, nodata = self.reader.read_raw(window)
        image = image.astype(wire_dtype(image.dtype), copy=False)
        flags = None if nodata is None else torch.from_numpy(nodata)
        return self._sample(window, torch.from_numpy(image), torch.from_numpy(mask), flags)

    def __getitems__(self, windows: Sequence[Window]) -> list[Sample]:
        """Read a batch of windows (the ``DataLoader`` calls this instead of ``__getitem__``).

        Windows of one size and band count are read straight into one batch tensor of their
        :func:`wire_dtype` (in shared memory inside a worker, as is the ``nodata`` batch, made
        only when a window has invalid pixels), and the samples are its consecutive slices,
        which :class:`Collate` then returns without stacking: no copy, no conversion.
        """
        windows = list(windows)
        if not windows:
            return []
        n, h, w = len(windows), windows[0].height, windows[0].width
        channels = {self.reader.channels(x.tile) for x in windows}
        if len(channels) > 1 or any((x.height, x.width) != (h, w) for x in windows):
            return [self[x] for x in windows]
        dtype = wire_dtype(np.result_type(*{self.reader.dtype(x.tile) for x in windows}))
        images = _empty((n, channels.pop(), h, w), _torch_dtype(dtype))
        # Not in shared memory: a look-up table in the collate writes a new mask batch anyway.
        masks = torch.empty((n, h, w), dtype=torch.uint8)
        nodata: torch.Tensor | None = None
        image_np, mask_np = images.numpy(), masks.numpy()
        for i, window in enumerate(windows):
            _, mask, flags = self.reader.read_raw(window, out=image_np[i])
            mask_np[i] = mask
            if flags is not None:
                if nodata is None:
                    nodata = _empty((n, h, w), torch.bool)
                    nodata.numpy().fill(False)
                nodata.numpy()[i] = flags
        return [
            self._sample(x, images[i], masks[i], None if nodata is None else nodata[i])
            for i, x in enumerate(windows)
        ]

    def _sample(
        self, window: Window, image: torch.Tensor, mask: torch.Tensor, nodata: torch.Tensor | None
    ) -> Sample:
        t = self.reader.transform(window)
        return {
            "image": image,
            "nodata": nodata,
            "mask": mask,
            "tile": window.tile,
            "window": (window.row, window.col, window.height, window.width),
            "transform": (t.a, t.b, t.c, t.d, t.e, t.f),
            "crs": self.tiles[window.tile].crs,
        }


def wire_dtype(dtype: DTypeLike) -> np.dtype:
    """The dtype in which images of raster dtype ``dtype`` cross the process boundary.

    The raster's own dtype (uint8, int8, uint16, int16, uint32, int32, int64, float16,
    float32), except float64, uint64 and complex, which go as float32: the float32 conversion
    of the main process would round them to exactly these values anyway, with half the bytes.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "c" or dtype in (np.dtype(np.float64), np.dtype(np.uint64)):
        return np.dtype(np.float32)
    return dtype


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype)).dtype


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
    """Validate a label look-up table and return it as a 256-entry uint8 array.

    Entries are limited to 0-255, so remapped masks always fit in uint8 (no wider mask dtype
    is ever needed across the process boundary).

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
    return arr.astype(np.uint8)


def collate_windows(samples: Sequence[Sample], label_lut: np.ndarray | None = None) -> Sample:
    """Stack sample dicts into a batch and remap the labels with ``label_lut``.

    Args:
        samples: sample dicts of :class:`WindowDataset`, all of the same window size.
        label_lut: 256-entry table, class id (or 255) -> step channel (or 255); None keeps ids.

    Returns:
        ``image`` (B, C, H, W) raw band values (the samples' :func:`wire_dtype`), ``nodata``
        (B, H, W) bool or None, ``mask`` (B, H, W) uint8, and ``tile``, ``window``,
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
        dtype = wire_dtype(np.result_type(*{t.numpy().dtype for t in images}))
        image = _empty((len(images), *images[0].shape), _torch_dtype(dtype))
        np.stack([t.numpy() for t in images], out=image.numpy(), casting="unsafe")
    masks = [s["mask"] for s in samples]
    stacked = _batch_of(masks)
    if lut is None and stacked is not None and stacked.dtype == torch.uint8:
        mask = stacked
    else:
        mask = _empty((len(masks), *masks[0].shape), torch.uint8)
        out = mask.numpy()
        if lut is None:
            np.stack([m.numpy() for m in masks], out=out, casting="unsafe")
        elif stacked is not None:
            np.take(lut, stacked.numpy(), out=out, mode="clip")  # ids are 0-255: no clipping
        else:
            for i, m in enumerate(masks):
                np.take(lut, m.numpy(), out=out[i], mode="clip")
    batch: Sample = {"image": image, "nodata": _collate_nodata(samples), "mask": mask}
    for key in samples[0]:
        if key not in batch:
            batch[key] = [s[key] for s in samples]
    return batch


def _collate_nodata(samples: Sequence[Sample]) -> torch.Tensor | None:
    """The samples' ``nodata`` as one (B, H, W) bool batch; None when no sample has any."""
    flags = [s.get("nodata") for s in samples]
    present = [f for f in flags if f is not None]
    if not present:
        return None
    if len(present) == len(flags) and (batch := _batch_of(present)) is not None:
        return batch
    h, w = samples[0]["mask"].shape
    out = _empty((len(flags), h, w), torch.bool)
    arr = out.numpy()
    arr.fill(False)
    for i, f in enumerate(flags):
        if f is not None:
            arr[i] = f.numpy()
    return out


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
