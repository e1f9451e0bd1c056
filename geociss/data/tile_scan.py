"""Scan one image raster and its label raster: validate the pair, then read it block by block.

The scan reads every pixel once, in bands of rows, so that a 6000 x 6000 tile never has to sit in
memory and a truncated file (which GDAL often opens fine and only fails on when a block is read)
is found here rather than in the middle of training. It produces the tile's class histogram
(whole tile and per chip region) and per-band statistics over valid pixels.

Valid pixels (:func:`valid_pixels`): an image pixel is invalid where the alpha band or an
internal mask is 0, where every band equals the nodata value, or (float images) where a band is
NaN. Invalid image pixels count as ignored (255) in the label histogram and are left out of band
statistics. A label raster's nodata value, when it is not a class value, also means ignore.

Alpha bands: a band tagged as alpha is a validity mask, not image data, and is not counted in
``bands``, unless (a) it is asked for in ``bands``, (b) ``expected_bands`` equals the file's band
count, or (c) it holds values other than 0 and the type's maximum. Rule (c) matters: GDAL
writes every 4-band uint8 GeoTIFF as RGBA unless told otherwise, so an RGB+NIR orthophoto often
arrives with its NIR band tagged as alpha. :attr:`TileRecord.band_indexes` records the outcome.

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
from geociss.data.records import TileRecord
from geociss.data.tile_stats import Histograms, Moments
from geociss.errors import DataError, error_detail

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
"""Affine coefficients ``(a, b, c, d, e, f)`` of a raster in pixel space."""


@dataclass(frozen=True)
class ScanOptions:
    """How tiles are scanned (the same for every tile of a catalogue).

    Attributes:
        bands: 1-based image bands to use, or None for all bands except alpha.
        expected_bands: number of image bands every image must have, or None (an alpha-tagged
            band counts as an image band when this equals the file's band count).
        chip_size: side of the square chip regions, or None for one region per tile.
        band_rows: rows read at once (bounds memory: rows x width x bands values).
        nodata: nodata value of images whose file declares none (``--nodata``,
            ``data.nodata``); a nodata tag in the file wins.
    """

    bands: tuple[int, ...] | None = None
    expected_bands: int | None = None
    chip_size: int | None = None
    band_rows: int = 1024
    nodata: float | None = None


@contextlib.contextmanager
def raster_errors(path: Path, action: str = "cannot read") -> Iterator[None]:
    """Turn GDAL/rasterio failures inside the block into a :class:`DataError` naming ``path``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            yield
    except (RasterioError, CPLE_BaseError, OSError) as err:
        raise DataError(
            path, f"{action} (corrupt or truncated file?): {error_detail(err)}"
        ) from None


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
        xa, ya = ta @ (col, row)
        xb, yb = tb @ (col, row)
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
    alpha: list[int]
    internal_mask: bool

    @property
    def has_mask(self) -> bool:
        return bool(self.alpha) or self.internal_mask


class _AlphaIsData(Exception):
    """An alpha-tagged band holds values other than 0 and the maximum: it is image data."""


def _image_info(src: Any, path: Path, options: ScanOptions, alpha_as_data: bool) -> _ImageInfo:
    tagged = [i + 1 for i, ci in enumerate(src.colorinterp) if ci == ColorInterp.alpha]
    wanted = set(options.bands or ())
    if alpha_as_data or wanted & set(tagged) or options.expected_bands == src.count:
        tagged = []
    plain = [i for i in range(1, src.count + 1) if i not in tagged]
    if options.expected_bands is not None and len(plain) != options.expected_bands:
        extra = " plus an alpha band" if tagged else ""
        raise DataError(
            path, f"has {len(plain)} band(s){extra}, expected {options.expected_bands}"
        )
    indexes = list(options.bands) if options.bands else plain
    for b in indexes:
        if b > src.count:
            raise DataError(path, f"has {src.count} band(s); band {b} was requested")
    dtypes = {src.dtypes[b - 1] for b in indexes}
    if len(dtypes) > 1:
        raise DataError(path, f"bands have different data types ({', '.join(sorted(dtypes))})")
    internal = any(
        MaskFlags.per_dataset in f and MaskFlags.alpha not in f for f in src.mask_flag_enums
    )
    crs = src.crs.to_wkt() if src.crs else None
    transform = tuple(float(v) for v in src.transform[:6]) if crs else IDENTITY
    nodata = options.nodata if src.nodata is None else float(src.nodata)
    return _ImageInfo(indexes, dtypes.pop(), crs, transform, nodata, tagged, internal)  # type: ignore[arg-type]


def _and(a: np.ndarray | None, b: np.ndarray) -> np.ndarray:
    return b if a is None else a & b


def _nodata_valid(data: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """Pixels where not every band equals ``nodata`` and no band is NaN (None: all valid)."""
    valid = None
    if nodata is not None:
        same = np.isnan(data) if np.isnan(nodata) else data == nodata
        valid = ~same.all(axis=0)
    if data.dtype.kind == "f":
        valid = _and(valid, ~np.isnan(data).any(axis=0))
    return valid


def valid_pixels(
    src: Any, data: np.ndarray, window: RioWindow, has_mask: bool, nodata: float | None
) -> np.ndarray | None:
    """Valid pixels of an image window read from ``src``, by the catalogue's rules.

    A pixel is invalid where GDAL's dataset mask is 0 (when the tile ``has_mask``: alpha band or
    internal mask), where every band equals ``nodata``, or where a band is NaN.

    Args:
        src: the open image raster.
        data: the (bands, rows, cols) values read for ``window``.
        window: the window read.
        has_mask: :attr:`TileRecord.has_mask`.
        nodata: :attr:`TileRecord.nodata`.

    Returns:
        (rows, cols) booleans, or None when every pixel is valid.
    """
    valid = src.dataset_mask(window=window) > 0 if has_mask else None
    extra = _nodata_valid(data, nodata)
    return valid if extra is None else _and(valid, extra)


def _scan_valid(src: Any, data: np.ndarray, win: RioWindow, info: _ImageInfo) -> np.ndarray | None:
    """:func:`valid_pixels`, reading the alpha band itself to check that it is a 0/max mask."""
    valid = None
    for band in info.alpha:
        alpha = src.read(band, window=win)
        top = np.iinfo(alpha.dtype).max if alpha.dtype.kind in "iu" else 1.0
        if ((alpha != 0) & (alpha != top)).any():
            raise _AlphaIsData
        valid = _and(valid, alpha > 0)
    if info.internal_mask:
        valid = _and(valid, src.read_masks(info.indexes[0], window=win) > 0)
    extra = _nodata_valid(data, info.nodata)
    return valid if extra is None else _and(valid, extra)


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
    try:
        return _scan(image, label, stem, schema, options, label_encoded, alpha_as_data=False)
    except _AlphaIsData:
        return _scan(image, label, stem, schema, options, label_encoded, alpha_as_data=True)


def _scan(
    image: Path, label: Path | None, stem: str, schema: ClassSchema, options: ScanOptions,
    label_encoded: bool, alpha_as_data: bool,
) -> TileRecord:
    n = schema.num_classes
    with open_raster(image) as src:
        info = _image_info(src, image, options, alpha_as_data)
        ctx = open_raster(label) if label is not None else contextlib.nullcontext(None)
        with ctx as lsrc:
            fill = None
            if lsrc is not None:
                _check_label(lsrc, label, src, image, schema, label_encoded)  # type: ignore[arg-type]
                fill = None if label_encoded else _nodata_fill(lsrc, schema)
            hists = Histograms(src.height, src.width, options.chip_size)
            moments = Moments(len(info.indexes))
            for r0 in range(0, src.height, options.band_rows):
                win = RioWindow(0, r0, src.width, min(options.band_rows, src.height - r0))
                with raster_errors(image):
                    data = src.read(info.indexes, window=win)
                    valid = _scan_valid(src, data, win, info)
                moments.add(data, valid)
                if lsrc is not None:
                    ids = _read_labels(lsrc, label, schema, win, label_encoded, fill)  # type: ignore[arg-type]
                    if valid is not None:
                        ids[~valid] = IGNORE_INDEX
                    hists.add(ids, r0)
        return TileRecord(
            stem=stem, image=image, label=label, label_encoded=label_encoded,
            width=src.width, height=src.height, bands=len(info.indexes), dtype=info.dtype,
            crs=info.crs, transform=info.transform, nodata=info.nodata, has_mask=info.has_mask,
            hist=hists.total[:n].copy(), ignored=int(hists.total[IGNORE_INDEX]),
            stats=moments.stats(), regions=hists.regions(n), band_indexes=tuple(info.indexes),
        )
