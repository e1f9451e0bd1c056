"""QGIS-ready prediction rasters: streamed GTiff in, Cloud-Optimised GeoTIFF plus sidecars out.

The prediction engine streams row bands into a tiled GTiff opened with :func:`class_profile`
(``<out>.partial``); one ``finalize_*`` call per output then styles it and publishes it:

1. the tags, colour table, band descriptions and scale/offset are written into the streamed
   GTiff (``r+``), so that the copy carries them;
2. ``rasterio.shutil.copy(driver='COG')`` streams it into a COG with internal overviews. A COG is
   never opened in ``'w'`` mode: that buffers the whole raster in memory;
3. the sidecars (``<stem>.qml``, ``<file>.aux.xml``) and the COG appear atomically, the sidecars
   first, so an existing output file means a complete output; the partial is then removed,
   unless ``keep_partial`` asks to keep it (``predict`` removes the partials of an input only
   when all its outputs are published, so that a kill between two outputs resumes without
   recomputing a tile).

Encoding of every raster here: uint8, nodata 255. Class rasters hold the class value (the model
channel); probability rasters hold ``round(p * 254)`` with scale 1/254 and offset 0, so GIS
software shows probabilities in 0-1. Class overviews use MODE resampling (a majority class,
never an average of class ids); probability overviews use AVERAGE. Overviews halve the raster
while it is larger than a 512 px block, and a raster of 257-512 px (the demo's 512² maps) gets
one level all the same (:data:`MIN_OVERVIEW_SIZE`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from geociss import __version__
from geociss.data.classes import IGNORE_INDEX
from geociss.errors import DataError, error_detail
from geociss.faults import fault_point
from geociss.inference.georef import PIXEL_SPACE
from geociss.inference.qml import ClassStyle, paletted_qml, pseudocolor_qml
from geociss.io import atomic_path, atomic_write_text

__all__ = [
    "BLOCK_SIZE",
    "MIN_OVERVIEW_SIZE",
    "PROBABILITY_SCALE",
    "ClassStyle",
    "category_names_xml",
    "class_profile",
    "encode_probability",
    "finalize_classes",
    "finalize_confidence",
    "finalize_probabilities",
    "qml_path",
]

BLOCK_SIZE = 512
"""Tile size of the streamed GTiff and of the COG."""

MIN_OVERVIEW_SIZE = 256
"""A raster wider or taller than this gets at least one overview level (COG driver's
``OVERVIEW_COUNT=1`` where its own rule, halving while larger than a block, makes none)."""

PROBABILITY_SCALE = 1.0 / 254.0
"""Scale of the uint8 probability encoding: value 254 = probability 1, 255 = nodata."""

CLASS_DESCRIPTION = "land cover class"
CONFIDENCE_DESCRIPTION = "max softmax probability"
SOFTWARE = f"geociss {__version__}"


def class_profile(
    width: int, height: int, transform: Any, crs: Any, count: int = 1
) -> dict[str, Any]:
    """Creation profile of a streamed uint8 output GTiff (class, confidence or probabilities).

    Tiled 512×512, deflate, nodata 255, band-interleaved, BigTIFF when needed, compression on
    all cores. Open it with ``rasterio.open(partial, 'w', **profile)`` and write row bands with
    ``dst.write(arr, window=...)``.

    Args:
        width: raster width in pixels.
        height: raster height in pixels.
        transform: the input's affine transform, or None for an input without one: the
            output then gets :data:`~geociss.inference.georef.PIXEL_SPACE`, the grid QGIS
            draws such an input on (x = column, y = -row).
        crs: the input's CRS, or None for a pixel-space input.
        count: number of bands.
    """
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": int(width),
        "height": int(height),
        "count": int(count),
        "dtype": "uint8",
        "nodata": IGNORE_INDEX,
        "tiled": True,
        "blockxsize": BLOCK_SIZE,
        "blockysize": BLOCK_SIZE,
        "compress": "deflate",
        "interleave": "band",
        "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": "ALL_CPUS",
    }
    profile["transform"] = PIXEL_SPACE if transform is None else transform
    if crs is not None:
        profile["crs"] = crs
    return profile


def encode_probability(prob: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Encode probabilities (any shape, 0-1) as uint8 ``round(p * 254)``; 255 where invalid.

    Args:
        prob: probabilities; NaN counts as invalid.
        valid: optional boolean mask broadcastable to ``prob``; False pixels become 255.
    """
    p = np.asarray(prob, dtype=np.float32)
    out = np.rint(np.clip(np.nan_to_num(p, nan=0.0), 0.0, 1.0) * 254.0).astype(np.uint8)
    bad = np.isnan(p)
    if valid is not None:
        bad |= ~np.broadcast_to(np.asarray(valid, dtype=bool), p.shape)
    out[bad] = IGNORE_INDEX
    return out


def qml_path(tif: str | Path) -> Path:
    """The sidecar style QGIS applies to ``tif`` (``a/b_classes.tif`` → ``a/b_classes.qml``)."""
    return Path(tif).with_suffix(".qml")


def category_names_xml(style: ClassStyle, description: str = CLASS_DESCRIPTION) -> str:
    """A GDAL PAM document (``<file>.aux.xml``) naming the categories of band 1.

    The n-th ``Category`` names class value n; entries go up to the last class, so nodata (255)
    has no name.
    """
    import xml.etree.ElementTree as ET

    root = ET.Element("PAMDataset")
    band = ET.SubElement(root, "PAMRasterBand", band="1")
    ET.SubElement(band, "Description").text = description
    names = ET.SubElement(band, "CategoryNames")
    for name in style.names:
        ET.SubElement(names, "Category").text = name
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def finalize_classes(
    partial: Path, out_tif: Path, style: ClassStyle, *, keep_partial: bool = False
) -> None:
    """Style the streamed class GTiff and publish it as COG + ``.qml`` + ``.aux.xml``.

    Writes the colour table (classes opaque, 255 transparent), the band description
    "land cover class", one ``CLASS_<value>`` tag per class on band 1, the dataset tags
    ``CLASSES`` (a JSON list of names) and ``SOFTWARE``; then copies to a COG with MODE overviews.

    Args:
        partial: the streamed single-band uint8 GTiff; removed on success.
        out_tif: the COG to write (``<name>_classes.tif``).
        style: names and colours of the class values.
        keep_partial: keep ``partial`` (styled) after publishing.

    Raises:
        DataError: the partial is missing, unreadable, or not a single uint8 band.
    """
    with _open_update(partial, bands=1) as dst:
        dst.nodata = IGNORE_INDEX
        dst.write_colormap(1, style.colormap())
        dst.set_band_description(1, CLASS_DESCRIPTION)
        dst.update_tags(1, **{f"CLASS_{i}": name for i, name in enumerate(style.names)})
        dst.update_tags(CLASSES=json.dumps(style.names), SOFTWARE=SOFTWARE)
    out_tif = Path(out_tif)
    _publish(
        partial, out_tif, "MODE",
        sidecars={
            qml_path(out_tif): paletted_qml(style),
            Path(f"{out_tif}.aux.xml"): category_names_xml(style),
        },
        keep_partial=keep_partial,
    )


def finalize_confidence(partial: Path, out_tif: Path, *, keep_partial: bool = False) -> None:
    """Publish the streamed confidence GTiff (max softmax probability) as COG + ``.qml``.

    Sets scale 1/254, offset 0, nodata 255, the description "max softmax probability" and the
    ``UNITS=probability`` tag; overviews are averages; the ``.qml`` is a 0-1 pseudocolour ramp.
    The partial is removed on success unless ``keep_partial``.

    Raises:
        DataError: the partial is missing, unreadable, or not a single uint8 band.
    """
    with _open_update(partial, bands=1) as dst:
        _set_probability_encoding(dst)
        dst.set_band_description(1, CONFIDENCE_DESCRIPTION)
        dst.update_tags(1, UNITS="probability")
        dst.update_tags(SOFTWARE=SOFTWARE)
    out_tif = Path(out_tif)
    _publish(
        partial, out_tif, "AVERAGE", sidecars={qml_path(out_tif): pseudocolor_qml()},
        keep_partial=keep_partial,
    )


def finalize_probabilities(
    partial: Path, out_tif: Path, style: ClassStyle, *, keep_partial: bool = False
) -> None:
    """Publish the streamed per-class probability GTiff (one band per class) as COG + ``.qml``.

    Band n+1 holds the probability of class value n in the uint8 encoding (scale 1/254, nodata
    255); its description is the class name. The ``.qml`` shows band 1 as a 0-1 ramp (QGIS would
    otherwise compose the first three probabilities as RGB). The COG is band-interleaved where
    GDAL's COG driver supports it (GDAL ≥ 3.11), pixel-interleaved otherwise. The partial is
    removed on success unless ``keep_partial``.

    Raises:
        DataError: the partial is missing or unreadable, or its band count differs from the
            number of classes.
    """
    with _open_update(partial, bands=len(style.names)) as dst:
        _set_probability_encoding(dst)
        for band, name in enumerate(style.names, start=1):
            dst.set_band_description(band, name)
            dst.update_tags(band, UNITS="probability")
        dst.update_tags(CLASSES=json.dumps(style.names), SOFTWARE=SOFTWARE)
    out_tif = Path(out_tif)
    _publish(
        partial, out_tif, "AVERAGE", sidecars={qml_path(out_tif): pseudocolor_qml()},
        keep_partial=keep_partial, **_band_interleave(),
    )


# ---------------------------------------------------------------------- helpers


def _open_update(partial: Path, bands: int) -> Any:
    """Open the streamed GTiff in ``r+`` mode after checking its layout."""
    import rasterio
    from rasterio.errors import RasterioIOError

    partial = Path(partial)
    if not partial.is_file():
        raise DataError(partial, "streamed prediction file not found")
    try:
        dst = rasterio.open(partial, "r+")
    except (RasterioIOError, TypeError) as err:  # rasterio: TypeError for an unknown format
        raise DataError(partial, f"not a readable GeoTIFF ({error_detail(err)})") from None
    if dst.count != bands or set(dst.dtypes) != {"uint8"}:
        found = f"{dst.count} band(s) of {', '.join(sorted(set(dst.dtypes)))}"
        dst.close()
        raise DataError(partial, f"expected {bands} uint8 band(s), found {found}")
    return dst


def _set_probability_encoding(dst: Any) -> None:
    dst.nodata = IGNORE_INDEX
    dst.scales = (PROBABILITY_SCALE,) * dst.count
    dst.offsets = (0.0,) * dst.count


def _band_interleave() -> dict[str, str]:
    """``INTERLEAVE=BAND`` when the COG driver accepts it (GDAL 3.11 added the option)."""
    import rasterio

    major, minor = (int(p) for p in rasterio.__gdal_version__.split(".")[:2])
    return {"INTERLEAVE": "BAND"} if (major, minor) >= (3, 11) else {}


def _publish(
    partial: Path, out_tif: Path, resampling: str, sidecars: dict[Path, str],
    keep_partial: bool = False, **options: str,
) -> None:
    """COG-copy ``partial`` to ``out_tif`` atomically, sidecars first; remove the partial."""
    from rasterio.errors import RasterioError
    from rasterio.shutil import copy

    options = {**_overview_count(partial), **options}
    with atomic_path(out_tif) as tmp:
        try:
            copy(
                str(partial), str(tmp), driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=BLOCK_SIZE,
                OVERVIEW_RESAMPLING=resampling, OVERVIEWS="IGNORE_EXISTING",
                BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS", **options,
            )
        except RasterioError as err:
            detail = error_detail(err)
            raise DataError(partial, f"could not write the COG {out_tif.name}: {detail}") from None
        fault_point(f"predict:copied:{_kind(out_tif)}")
        for path, text in sidecars.items():
            atomic_write_text(path, text)
    if not keep_partial:
        for leftover in (Path(partial), Path(f"{partial}.aux.xml")):
            leftover.unlink(missing_ok=True)


def _overview_count(partial: Path) -> dict[str, str]:
    """``OVERVIEW_COUNT=1`` for a raster of :data:`MIN_OVERVIEW_SIZE`-:data:`BLOCK_SIZE` px.

    The COG driver adds levels only while the raster is larger than one block, so such a
    raster would get none; larger rasters keep the driver's levels.
    """
    import rasterio

    with rasterio.open(partial) as src:
        size = max(src.width, src.height)
    return {"OVERVIEW_COUNT": "1"} if MIN_OVERVIEW_SIZE < size <= BLOCK_SIZE else {}


def _kind(out_tif: Path) -> str:
    """``classes``, ``confidence`` or ``probabilities``: the word after the last ``_``."""
    return Path(out_tif).stem.rsplit("_", 1)[-1]
