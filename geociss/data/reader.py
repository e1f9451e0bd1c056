"""Read integer pixel windows of catalogue tiles: image, class mask and validity.

One :class:`WindowReader` serves a whole training or evaluation run. It keeps rasterio handles
open (one per image/label file, least recently used closed beyond ``max_open``), opened lazily
and keyed by process id: a DataLoader worker forked from a parent that already read something
never touches the parent's handles (their file offsets are shared across ``fork``), it opens
its own. Pickling (the ``spawn`` start method) drops the handles.

Invalid pixels (nodata, NaN, masked) are NaN in the float image of :meth:`WindowReader.read`,
and flagged in a ``nodata`` array next to the raw band values of :meth:`WindowReader.read_raw`
(what DataLoader workers hand over); :func:`geociss.data.normalise.normalise` turns either into
the band mean (0 after normalisation). They are 255 in the labels. Windows that run past the
raster edge are read as the part inside the raster, reflect-padded to the window (as
``predict`` pads its tiles, so that ``evaluate`` scores the map ``predict`` writes); the padding
is invalid (label 255) and its image pixels are NaN where they mirror an invalid pixel. This is
what a boundless read means here; it avoids rasterio's ``boundless=True``, which builds a
virtual warped dataset on every call (slow), and windows inside the raster take the plain fast
path. A window that misses the raster entirely is all NaN.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import RasterioError
from rasterio.windows import Window as RioWindow

from geociss.cli.main import GDAL_DEFAULTS
from geociss.data.classes import IGNORE_INDEX, ClassSchema
from geociss.data.pixel_values import ids_only, is_identity, is_nodata, nodata_maps_to_ignore
from geociss.data.records import TileRecord, Window
from geociss.errors import DataError, error_detail

for _key, _value in GDAL_DEFAULTS.items():
    os.environ.setdefault(_key, _value)

Pixels = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``(image float32 (C, H, W), NaN where invalid; mask uint8 (H, W); valid bool (H, W))``."""
Raw = tuple[np.ndarray, np.ndarray, np.ndarray | None]
"""``(image (C, H, W) raw band values; mask uint8 (H, W); nodata bool (H, W) or None)``."""


class _Source:
    """An open raster plus what the reader needs to know about it, computed once per open.

    Attributes:
        read_indexes: ``indexes``, or None when they are all bands in order (rasterio's
            all-band read is about a third faster than the same bands listed).
        nodata: the nodata value whose pixels must be found, or None when there is none or
            (labels) the class schema already maps it to ignore.
    """

    __slots__ = (
        "dtype", "height", "indexes", "masked", "nodata", "read_indexes", "src", "transform",
        "width",
    )

    def __init__(self, src: Any, indexes: list[int], nodata: float | None) -> None:
        self.src = src
        self.indexes = indexes
        self.read_indexes = None if indexes == list(range(1, src.count + 1)) else indexes
        self.height = int(src.height)
        self.width = int(src.width)
        self.transform = src.transform
        self.nodata = nodata
        self.dtype = np.dtype(src.dtypes[indexes[0] - 1])
        flags = src.mask_flag_enums[indexes[0] - 1]
        self.masked = MaskFlags.per_dataset in flags or MaskFlags.alpha in flags


class WindowReader:
    """Read windows of catalogue tiles as arrays, with per-process cached raster handles.

    Args:
        tiles: the catalogue tiles; a :class:`Window`'s ``tile`` indexes this sequence.
        schema: class schema that encodes raw label values (tiles with ``label_encoded`` False).
        bands: 1-based image band indexes to read (default: every band but alpha).
        max_open: most raster handles kept open per process (image and label count apart).

    Raises:
        ValueError: ``bands`` is empty or holds an index below 1, or ``max_open`` < 2.
    """

    def __init__(
        self,
        tiles: Sequence[TileRecord],
        schema: ClassSchema,
        bands: Sequence[int] | None = None,
        max_open: int = 128,
    ) -> None:
        if bands is not None and (len(bands) == 0 or min(bands) < 1):
            raise ValueError(f"bands must be 1-based band indexes, got {list(bands)}")
        if max_open < 2:
            raise ValueError(f"max_open must be at least 2, got {max_open}")
        self.tiles = list(tiles)
        self.schema = schema
        self.bands = None if bands is None else [int(b) for b in bands]
        self.max_open = max_open
        self._classes = schema.num_classes
        # Index labels that already hold class ids (0..N-1, 255 = ignore) need no table look-up:
        # checking that no other value occurs is about 10x cheaper than ClassSchema.encode.
        self._identity = is_identity(schema)
        self._pid: int | None = None
        self._open: OrderedDict[tuple[int, bool], _Source] = OrderedDict()

    # ------------------------------------------------------------------ handles

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pid"] = None
        state["_open"] = OrderedDict()
        return state

    def _source(self, tile: int, label: bool) -> _Source:
        pid = os.getpid()
        if pid != self._pid:
            # Handles inherited through fork share file offsets with the parent: never read
            # through them; drop them and open this process's own.
            self._open = OrderedDict()
            self._pid = pid
        key = (tile, label)
        source = self._open.get(key)
        if source is not None:
            self._open.move_to_end(key)
            return source
        source = self._open_source(tile, label)
        self._open[key] = source
        while len(self._open) > self.max_open:
            _, old = self._open.popitem(last=False)
            old.src.close()
        return source

    def _open_source(self, tile: int, label: bool) -> _Source:
        record = self.tiles[tile]
        path = record.label if label else record.image
        if path is None:
            raise DataError(record.image, "has no label raster")
        try:
            src = rasterio.open(path)
        except RasterioError as err:
            raise DataError(path, f"cannot open raster ({error_detail(err)})") from None
        if label:
            need = 1 if record.label_encoded else self.schema.label_bands
            if src.count < need:
                src.close()
                raise DataError(path, f"label raster has {src.count} band(s), needs {need}")
            nodata = src.nodata
            encoded = record.label_encoded
            if nodata is not None and nodata_maps_to_ignore(self.schema, nodata, need, encoded):
                nodata = None
            return _Source(src, list(range(1, need + 1)), nodata)
        nodata = record.nodata if src.nodata is None else src.nodata  # --nodata for untagged
        if self.bands is not None:
            if max(self.bands) > src.count:
                src.close()
                raise DataError(path, f"has {src.count} band(s); bands {self.bands} requested")
            return _Source(src, self.bands, nodata)
        indexes = [i + 1 for i, ci in enumerate(src.colorinterp) if ci != ColorInterp.alpha]
        return _Source(src, indexes or [1], nodata)

    def close(self) -> None:
        """Close the handles this process opened (they reopen on the next read)."""
        if self._pid == os.getpid():
            for source in self._open.values():
                source.src.close()
        self._open = OrderedDict()

    # ------------------------------------------------------------------ reads

    def shape(self, tile: int) -> tuple[int, int]:
        """``(height, width)`` of a tile's image raster."""
        source = self._source(tile, False)
        return source.height, source.width

    def transform(self, window: Window) -> Affine:
        """Affine transform of the window: the raster's transform shifted to its first pixel.

        Equal to rasterio's ``src.window_transform``, composed with ``@`` in integer offsets.
        """
        return self._source(window.tile, False).transform @ Affine.translation(
            window.col, window.row
        )

    def read(self, window: Window) -> Pixels:
        """Read the image, class mask and validity of one window.

        Pixels outside the raster, nodata pixels (all read bands equal nodata), NaN pixels and
        pixels masked by an alpha band or an internal mask are invalid: label 255, image NaN
        inside the raster and reflect padding outside it (module docstring). Label nodata is
        label 255 too. Tiles without a label raster give an all-255 mask.

        Args:
            window: the window; it may run past the raster edge (it is padded).

        Returns:
            ``(image float32 (C, H, W), mask uint8 (H, W), valid bool (H, W))``.

        Raises:
            DataError: a raster cannot be read.
            UnknownLabelValueError: a raw label value is not in the class schema.
        """
        image, mask, invalid = self.read_pair(window)
        valid = np.ones(mask.shape, bool) if invalid is None else ~invalid
        return image, mask, valid

    def read_pair(
        self, window: Window, out: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Like :meth:`read`, with the invalid pixels instead of the valid ones (the fast path).

        Args:
            window: the window; it may run past the raster edge (it is padded).
            out: optional float32 (C, H, W) array the image is written into (and returned).

        Returns:
            ``(image, mask, invalid)`` where ``invalid`` is a bool (H, W) array, or None when
            every pixel of the window is valid.

        Raises:
            ValueError: ``out`` has the wrong shape or dtype.
        """
        if out is not None and out.dtype != np.float32:
            raise ValueError(f"out must be a float32 array, got {out.dtype}")
        image, nodata, invalid = self._read_image(window, out)
        image = image.astype(np.float32, copy=False)  # a fresh array (or ``out``) either way
        if nodata is not None:
            image[:, nodata] = np.nan
        return image, self._label(window, invalid), invalid

    def read_raw(self, window: Window, out: np.ndarray | None = None) -> Raw:
        """Raw band values, class mask and nodata pixels of one window (what workers hand over).

        The image holds the raster's own values (its dtype, or ``out``'s), reflect-padded past
        the raster edge like :meth:`read`; ``nodata`` marks the pixels that :meth:`read` sets to
        NaN (0 in a window that misses the raster). ``read``'s image is exactly this image as
        float32 with NaN at ``nodata``.

        Args:
            window: the window; it may run past the raster edge (it is padded).
            out: optional (C, H, W) array the image is written into (cast to its dtype).

        Returns:
            ``(image, mask uint8 (H, W), nodata bool (H, W) or None when no pixel is)``.

        Raises:
            ValueError: ``out`` has the wrong shape.
        """
        image, nodata, invalid = self._read_image(window, out)
        return image, self._label(window, invalid), nodata

    def channels(self, tile: int) -> int:
        """Number of image bands read from a tile."""
        return len(self._source(tile, False).indexes)

    def dtype(self, tile: int) -> np.dtype:
        """Data type of the image bands read from a tile."""
        return self._source(tile, False).dtype

    def _label(self, window: Window, invalid: np.ndarray | None) -> np.ndarray:
        mask = self._read_label(window)
        if invalid is not None:
            mask[invalid] = IGNORE_INDEX
        return mask

    def _read_image(
        self, window: Window, out: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``(raw image, nodata, invalid)`` of a window, the image padded past the raster edge.

        ``nodata``: the image pixels to treat as NaN; ``invalid``: those the labels ignore
        (nodata plus the padding outside the raster); None where there are none.
        """
        source = self._source(window.tile, False)
        shape = (len(source.indexes), window.height, window.width)
        if out is not None and out.shape != shape:
            raise ValueError(f"out must have the shape {shape}, got {out.shape}")
        inner, dst = _clip(window, source.height, source.width)
        if inner is None:
            image = np.zeros(shape, source.dtype) if out is None else out
            image.fill(0)
            return image, np.ones(shape[1:], bool), np.ones(shape[1:], bool)
        raw = _read(source, inner)
        nodata = invalid = self._invalid(source, raw, inner)
        if dst is not None:
            (r0, r1), (c0, c1) = (dst[0].start, dst[0].stop), (dst[1].start, dst[1].stop)
            pads = ((r0, shape[1] - r1), (c0, shape[2] - c1))
            raw = np.pad(raw, ((0, 0), *pads), mode="reflect")  # as predict pads its tiles
            nodata = None if invalid is None else np.pad(invalid, pads, mode="reflect")
            invalid = np.ones(shape[1:], bool)
            invalid[dst] = False if nodata is None else nodata[dst]
        if out is None:
            return raw, nodata, invalid
        np.copyto(out, raw, casting="unsafe")
        return out, nodata, invalid

    @staticmethod
    def _invalid(source: _Source, raw: np.ndarray, inner: RioWindow) -> np.ndarray | None:
        """Invalid pixels of a read block, or None when every pixel is valid."""
        invalid: np.ndarray | None = None
        if source.masked:
            try:
                invalid = source.src.read_masks(source.indexes[0], window=inner) == 0
            except RasterioError as err:
                raise DataError(
                    source.src.name, f"cannot read mask ({error_detail(err)})"
                ) from None
        elif source.nodata is not None:
            invalid = is_nodata(raw, source.nodata)
        if raw.dtype.kind == "f":
            nan = np.isnan(raw).any(axis=0)
            invalid = nan if invalid is None else invalid | nan
        if invalid is not None and not invalid.any():
            return None
        return invalid

    def _read_label(self, window: Window) -> np.ndarray:
        record = self.tiles[window.tile]
        h, w = window.height, window.width
        if record.label is None:
            return np.full((h, w), IGNORE_INDEX, np.uint8)
        source = self._source(window.tile, True)
        inner, dst = _clip(window, source.height, source.width)
        if inner is None:
            return np.full((h, w), IGNORE_INDEX, np.uint8)
        raw = _read(source, inner)
        labels = self._encode(raw, source, record.label_encoded)
        if dst is None:
            return labels
        full = np.full((h, w), IGNORE_INDEX, np.uint8)
        full[dst] = labels
        return full

    def _encode(self, raw: np.ndarray, source: _Source, encoded: bool) -> np.ndarray:
        """Class ids of a raw label block; label nodata becomes 255."""
        nodata = None if source.nodata is None else is_nodata(raw, source.nodata)
        if nodata is not None and not nodata.any():
            nodata = None
        if encoded:
            labels = raw[0] if raw.dtype == np.uint8 else raw[0].astype(np.uint8)
            if nodata is not None:
                labels = labels.copy()
                labels[nodata] = IGNORE_INDEX
            return labels
        path = source.src.name
        if nodata is None:
            if self._identity and raw.dtype == np.uint8 and ids_only(raw[0], self._classes):
                return raw[0]
            return self.schema.encode(raw if raw.shape[0] > 1 else raw[0], path)
        labels = np.full(raw.shape[1:], IGNORE_INDEX, np.uint8)
        keep = ~nodata
        values = raw[:, keep][:, :, None]  # (bands, N, 1): encode takes 2-D index or 3-D rgb
        labels[keep] = self.schema.encode(values if values.shape[0] > 1 else values[0], path)[:, 0]
        return labels


def _clip(
    window: Window, height: int, width: int
) -> tuple[RioWindow | None, tuple[slice, slice] | None]:
    """The part of ``window`` inside the raster and where it goes in the window's array.

    Returns ``(None, None)`` when the window misses the raster, ``(inner, None)`` when it lies
    entirely inside, else ``(inner, (row_slice, col_slice))``.
    """
    r0, c0 = max(window.row, 0), max(window.col, 0)
    r1 = min(window.row + window.height, height)
    c1 = min(window.col + window.width, width)
    if r0 >= r1 or c0 >= c1:
        return None, None
    inner = RioWindow(c0, r0, c1 - c0, r1 - r0)
    if (r0, c0, r1, c1) == (window.row, window.col, window.row + window.height,
                            window.col + window.width):
        return inner, None
    dst = (slice(r0 - window.row, r1 - window.row), slice(c0 - window.col, c1 - window.col))
    return inner, dst


def _read(source: _Source, window: RioWindow) -> np.ndarray:
    try:
        return source.src.read(source.read_indexes, window=window)
    except RasterioError as err:
        raise DataError(
            source.src.name, f"cannot read window {window} ({error_detail(err)})"
        ) from None
