"""Scan one image raster and its label raster: validate the pair, then read it block by block.

The scan reads every pixel once, in bands of rows, so that a 6000 x 6000 tile never has to sit in
memory and a truncated file (which GDAL often opens fine and only fails on when a block is read)
is found here rather than in the middle of training. It produces the tile's class histogram
(whole tile and per chip region) and per-band statistics over valid pixels.

Valid pixels: an image pixel is invalid when GDAL's dataset mask says so (alpha band, internal
mask, or all bands equal to the nodata value) or, for float images, when a band is NaN. Invalid
image pixels count as ignored (255) in the label histogram and are left out of band statistics.
A label raster's nodata value, when it is not a class value of the schema, also means ignore.

Georeferencing: rasters without a CRS are used in pixel space (``crs=None``, identity
transform). When image and label both have a CRS they must agree in CRS and transform; a label
without georeferencing next to a georeferenced image of the same size is accepted (label tools
often drop the geotags), and so is the reverse.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window as RioWindow

from geociss.data.classes import IGNORE_INDEX, ClassSchema
from geociss.data.records import BandStats, Region, TileRecord, Window
from geociss.errors import DataError

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
"""Affine coefficients ``(a, b, c, d, e, f)`` of a raster in pixel space."""


@dataclass(frozen=True)
class ScanOptions:
    """How tiles are scanned (the same for every tile of a catalogue).

    Attributes:
        bands: 1-based image bands to use, or None for all bands except alpha.
        expected_bands: number of non-alpha bands every image must have, or None.
        chip_size: side of the square chip regions, or None for one region per tile.
        band_rows: rows read at once (bounds memory: rows x width x bands values).
    """

    bands: tuple[int, ...] | None = None
    expected_bands: int | None = None
    chip_size: int | None = None
    band_rows: int = 1024


@contextlib.contextmanager
def raster_errors(path: Path, action: str = "cannot read") -> Iterator[None]:
    """Turn GDAL/rasterio failures inside the block into a :class:`DataError` naming ``path``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            yield
    except (RasterioError, CPLE_BaseError, OSError) as err:
        detail = " ".join(str(err).split()) or type(err).__name__
        raise DataError(path, f"{action} (corrupt or truncated file?): {detail}") from None


@contextlib.contextmanager
def open_raster(path: Path) -> Iterator[Any]:
    """Open a raster for reading; unreadable files raise a :class:`DataError` naming them."""
    with raster_errors(path, "cannot open as a raster"):
        src = rasterio.open(path)
    try:
        yield src
    finally:
        src.close()


def crs_name(wkt_or_crs: Any) -> str:
    """Short display name of a CRS (``EPSG:32632`` when it has an authority code)."""
    crs = rasterio.crs.CRS.from_wkt(wkt_or_crs) if isinstance(wkt_or_crs, str) else wkt_or_crs
    text = crs.to_string()
    return text if len(text) < 60 else text[:57] + "..."


def same_grid(a: tuple[float, ...], b: tuple[float, ...], width: int, height: int) -> bool:
    """True when two transforms put the corners of a ``width`` x ``height`` grid within 1/100 px."""
    ta, tb = rasterio.Affine(*a[:6]), rasterio.Affine(*b[:6])
    px = max(abs(ta.a), abs(ta.b), abs(ta.d), abs(ta.e), 1e-12)
    for col, row in ((0, 0), (width, 0), (0, height), (width, height)):
        xa, ya = ta * (col, row)
        xb, yb = tb * (col, row)
        if max(abs(xa - xb), abs(ya - yb)) > 0.01 * px:
            return False
    return True


@dataclass(frozen=True)
class _ImageInfo:
    indexes: list[int]
    dtype: str
    crs: str | None
    transform: tuple[float, float, float, float, float, float]
    nodata: float | None
    has_mask: bool


def _image_info(src: Any, path: Path, options: ScanOptions) -> _ImageInfo:
    alpha = [i + 1 for i, ci in enumerate(src.colorinterp) if ci == ColorInterp.alpha]
    plain = [i for i in range(1, src.count + 1) if i not in alpha]
    if options.expected_bands is not None and len(plain) != options.expected_bands:
        extra = " plus an alpha band" if alpha else ""
        raise DataError(
            path, f"has {len(plain)} band(s){extra}, expected {options.expected_bands}"
        )
    indexes = list(options.bands) if options.bands else plain
    for b in indexes:
        if b > src.count:
            raise DataError(path, f"has {src.count} band(s); band {b} was requested")
        if b in alpha:
            raise DataError(path, f"band {b} is the alpha band (validity mask), not image data")
    dtypes = {src.dtypes[b - 1] for b in indexes}
    if len(dtypes) > 1:
        raise DataError(path, f"bands have different data types ({', '.join(sorted(dtypes))})")
    has_mask = any(MaskFlags.per_dataset in flags for flags in src.mask_flag_enums)
    crs = src.crs.to_wkt() if src.crs else None
    transform = tuple(float(v) for v in src.transform[:6]) if crs else IDENTITY
    nodata = None if src.nodata is None else float(src.nodata)
    return _ImageInfo(indexes, dtypes.pop(), crs, transform, nodata, has_mask)  # type: ignore[arg-type]


def _check_label(
    lsrc: Any, label: Path, src: Any, image: Path, schema: ClassSchema, encoded: bool
) -> None:
    bands = 1 if encoded else schema.label_bands
    if lsrc.count != bands:
        raise DataError(
            label,
            f"has {lsrc.count} band(s); the class schema {schema.name!r} uses "
            f"{schema.encoding} labels with {bands} band(s)",
        )
    if np.dtype(lsrc.dtypes[0]).kind not in "iu":
        raise DataError(label, f"has data type {lsrc.dtypes[0]}; label rasters must hold integers")
    if (lsrc.width, lsrc.height) != (src.width, src.height):
        raise DataError(
            label,
            f"is {lsrc.width}x{lsrc.height} pixels but {image} is {src.width}x{src.height}",
        )
    if lsrc.crs and src.crs:
        if lsrc.crs != src.crs:
            raise DataError(
                label, f"CRS {crs_name(lsrc.crs)} differs from {crs_name(src.crs)} of {image}"
            )
        if not same_grid(tuple(lsrc.transform), tuple(src.transform), src.width, src.height):
            raise DataError(
                label,
                f"transform differs from {image} (origin {lsrc.transform.c:.3f}, "
                f"{lsrc.transform.f:.3f} vs {src.transform.c:.3f}, {src.transform.f:.3f}; pixel "
                f"{lsrc.transform.a:g} vs {src.transform.a:g})",
            )


def _nodata_fill(lsrc: Any, schema: ClassSchema) -> tuple[int, np.ndarray] | None:
    """(nodata, replacement class value) when the label nodata value must become ignore."""
    nd = lsrc.nodata
    if nd is None or not float(nd).is_integer():
        return None
    nd = int(nd)
    values = [v for c in schema.classes for v in (c.values or [])]
    if schema.encoding == "index":
        if nd in values:
            return None
        return nd, np.asarray([values[0]])
    if (nd, nd, nd) in [tuple(v) for v in values]:  # type: ignore[arg-type]
        return None
    return nd, np.asarray(values[0])


class _Histograms:
    """Class counts of the whole tile and of each chip region, filled band by band."""

    def __init__(self, height: int, width: int, chip: int | None) -> None:
        self.rows = chip_spans(height, chip) if chip else [(0, height)]
        self.cols = chip_spans(width, chip) if chip else [(0, width)]
        self.chipped = chip is not None
        self.total = np.zeros(256, dtype=np.int64)
        self.chips = np.zeros((len(self.rows), len(self.cols), 256), dtype=np.int64)

    def add(self, ids: np.ndarray, r0: int) -> None:
        self.total += np.bincount(ids.ravel(), minlength=256)
        if not self.chipped:
            return
        r1 = r0 + ids.shape[0]
        for i, (start, size) in enumerate(self.rows):
            lo, hi = max(start, r0), min(start + size, r1)
            if lo >= hi:
                continue
            for j, (c0, w) in enumerate(self.cols):
                block = ids[lo - r0 : hi - r0, c0 : c0 + w]
                self.chips[i, j] += np.bincount(block.ravel(), minlength=256)

    def regions(self, n: int) -> list[Region]:
        if not self.chipped:
            counts = self.total
            win = Window(0, 0, 0, self.rows[0][1], self.cols[0][1])
            return [Region(win, counts[:n].copy(), int(counts[IGNORE_INDEX]))]
        return [
            Region(Window(0, r, c, h, w), self.chips[i, j, :n].copy(), int(self.chips[i, j, 255]))
            for i, (r, h) in enumerate(self.rows)
            for j, (c, w) in enumerate(self.cols)
        ]


def chip_spans(length: int, chip: int) -> list[tuple[int, int]]:
    """``(start, size)`` of the chips along one axis: an integer grid, the last chip clamped inside.

    A raster shorter than a chip gives one span covering it.
    """
    if length <= chip:
        return [(0, length)]
    n = -(-length // chip)
    return [(min(i * chip, length - chip), chip) for i in range(n)]


class _Moments:
    """Per-band count, sum, sum of squares, min and max over valid pixels (float64)."""

    def __init__(self, bands: int) -> None:
        self.count = 0
        self.sum = np.zeros(bands)
        self.sumsq = np.zeros(bands)
        self.min = np.full(bands, np.inf)
        self.max = np.full(bands, -np.inf)

    def add(self, data: np.ndarray, valid: np.ndarray | None) -> None:
        for b in range(data.shape[0]):
            values = data[b].ravel() if valid is None else data[b][valid]
            if values.size == 0:
                return
            if values.dtype in (np.uint8, np.uint16):
                counts = np.bincount(values)
                levels = np.arange(counts.size, dtype=np.float64)
                present = np.flatnonzero(counts)
                s, ss = counts @ levels, counts @ (levels * levels)
                lo, hi = float(present[0]), float(present[-1])
            else:
                v = values.astype(np.float64)
                s, ss, lo, hi = v.sum(), v @ v, v.min(), v.max()
            self.sum[b] += s
            self.sumsq[b] += ss
            self.min[b] = min(self.min[b], lo)
            self.max[b] = max(self.max[b], hi)
            if b == 0:
                self.count += values.size

    def stats(self) -> BandStats:
        if self.count == 0:
            zero = tuple(0.0 for _ in self.sum)
            return BandStats(0, zero, zero, zero, zero)
        return BandStats(
            self.count, tuple(self.sum.tolist()), tuple(self.sumsq.tolist()),
            tuple(self.min.tolist()), tuple(self.max.tolist()),
        )


def _read_labels(
    lsrc: Any, label: Path, schema: ClassSchema, win: RioWindow, encoded: bool,
    fill: tuple[int, np.ndarray] | None,
) -> np.ndarray:
    with raster_errors(label):
        raw = lsrc.read(window=win)
    if encoded:
        return raw[0].astype(np.uint8, copy=False)
    nd_mask = None
    if fill is not None:
        nd_mask = (raw == fill[0]).all(axis=0)
        if nd_mask.any():
            raw[:, nd_mask] = fill[1].astype(raw.dtype)[:, None]
    ids = schema.encode(raw if schema.encoding == "rgb" else raw[0], path=label)
    if nd_mask is not None:
        ids[nd_mask] = IGNORE_INDEX
    return ids


def scan_tile(
    image: Path, label: Path | None, stem: str, schema: ClassSchema, options: ScanOptions,
    *, label_encoded: bool = False,
) -> TileRecord:
    """Validate one image/label pair and compute its histograms and band statistics.

    Args:
        image: image raster.
        label: label raster on the same grid, or None (no histograms).
        stem: the pair's name in the catalogue.
        schema: maps raw label values to class ids.
        options: band selection, expected band count, chip size, read band height.
        label_encoded: the label raster already holds class ids (rasterised vector labels).

    Returns:
        The tile's record; regions carry tile index 0 (the catalogue re-indexes them).

    Raises:
        DataError: unreadable file, mismatched pair, wrong bands, unknown label values.
    """
    n = schema.num_classes
    with open_raster(image) as src:
        info = _image_info(src, image, options)
        ctx = open_raster(label) if label is not None else contextlib.nullcontext(None)
        with ctx as lsrc:
            if lsrc is not None:
                _check_label(lsrc, label, src, image, schema, label_encoded)  # type: ignore[arg-type]
                fill = None if label_encoded else _nodata_fill(lsrc, schema)
            hists = _Histograms(src.height, src.width, options.chip_size)
            moments = _Moments(len(info.indexes))
            masked = info.has_mask or info.nodata is not None
            floating = np.dtype(info.dtype).kind == "f"
            for r0 in range(0, src.height, options.band_rows):
                win = RioWindow(0, r0, src.width, min(options.band_rows, src.height - r0))
                with raster_errors(image):
                    data = src.read(info.indexes, window=win)
                    valid = src.dataset_mask(window=win) > 0 if masked else None
                if floating:
                    finite = ~np.isnan(data).any(axis=0)
                    valid = finite if valid is None else valid & finite
                moments.add(data, valid)
                if lsrc is not None:
                    ids = _read_labels(lsrc, label, schema, win, label_encoded, fill)  # type: ignore[arg-type]
                    if valid is not None:
                        ids[~valid] = IGNORE_INDEX
                    hists.add(ids, r0)
        regions = hists.regions(n)
        return TileRecord(
            stem=stem, image=image, label=label, label_encoded=label_encoded,
            width=src.width, height=src.height, bands=len(info.indexes), dtype=info.dtype,
            crs=info.crs, transform=info.transform, nodata=info.nodata, has_mask=info.has_mask,
            hist=hists.total[:n].copy(), ignored=int(hists.total[IGNORE_INDEX]),
            stats=moments.stats(), regions=regions,
        )
