"""GeoTIFF output of synthetic scenes: a tile grid in a projected CRS, tiled deflate files.

Tiles lie side by side on a regular grid (row-major, as square as possible), so the images of a
set mosaic seamlessly in QGIS. The grid starts near Potsdam when the CRS covers it (the ISPRS
Potsdam benchmark area), otherwise near the middle of the CRS's area of use. GDAL's GTiff driver
writes no timestamps, so equal arrays give byte-identical files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from geociss.data.classes import IGNORE_INDEX, ClassSchema
from geociss.errors import ConfigError
from geociss.io import atomic_path

POTSDAM_LONLAT = (13.06, 52.40)
"""Where the tile grid starts when the CRS covers it."""


def projected_crs(value: str) -> Any:
    """Parse a CRS given by the user; it must be projected with metre units.

    Raises:
        ConfigError: the CRS is unknown, geographic, or not in metres.
    """
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        crs = CRS.from_user_input(value)
    except CRSError:
        raise ConfigError(f"--crs {value!r}: not a known CRS (try e.g. EPSG:32632)") from None
    if not crs.is_projected:
        raise ConfigError(f"--crs {value!r}: not a projected CRS; the GSD is in metres, so use a "
                          "projected one such as a UTM zone (EPSG:326xx)")
    units = (crs.linear_units or "").lower()
    if units not in ("metre", "meter", "m", "metres", "meters"):
        raise ConfigError(f"--crs {value!r}: its units are {units or 'unknown'}, not metres")
    return crs


def grid_origin(crs: Any) -> tuple[float, float]:
    """Upper-left corner (x, y) of the first tile, in ``crs`` units, rounded to 100 m."""
    from pyproj import CRS as ProjCRS
    from rasterio.warp import transform

    lon, lat = POTSDAM_LONLAT
    area = ProjCRS.from_user_input(crs.to_string()).area_of_use
    if area is not None and not (area.west <= lon <= area.east and area.south <= lat <= area.north):
        lon = (area.west + area.east) / 2
        lat = min(max(lat, area.south), area.north)
    xs, ys = transform("EPSG:4326", crs, [lon], [lat])
    x, y = float(xs[0]), float(ys[0])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ConfigError(f"--crs {crs.to_string()}: cannot place a tile grid in this CRS")
    return math.floor(x / 100.0) * 100.0, math.ceil(y / 100.0) * 100.0


def tile_transform(origin: tuple[float, float], index: int, tiles: int, size: int,
                   gsd: float) -> Any:
    """Affine transform of tile ``index`` of ``tiles`` on a row-major grid of square tiles."""
    from rasterio.transform import from_origin

    columns = math.ceil(math.sqrt(tiles))
    row, col = divmod(index, columns)
    return from_origin(origin[0] + col * size * gsd, origin[1] - row * size * gsd, gsd, gsd)


def _profile(size: int, count: int, crs: Any, transform: Any) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": size, "height": size, "count": count, "dtype": "uint8",
        "crs": crs, "transform": transform, "compress": "deflate",
    }
    if size >= 16:
        block = 256 if size >= 256 else 16 * (size // 16)
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    return profile


def write_image(path: Path, image: np.ndarray, crs: Any, transform: Any,
                band_names: tuple[str, ...], tags: dict[str, str]) -> None:
    """Write a (C, H, W) uint8 image atomically, with band descriptions and dataset tags."""
    import rasterio

    profile = _profile(image.shape[-1], image.shape[0], crs, transform)
    natural = band_names[:3] == ("red", "green", "blue")
    profile.update(predictor=2, interleave="pixel", photometric="RGB" if natural else "MINISBLACK")
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(image)
        for i, name in enumerate(band_names, start=1):
            dst.set_band_description(i, name)
        dst.update_tags(**tags)


def write_label(path: Path, label: np.ndarray, crs: Any, transform: Any, schema: ClassSchema,
                tags: dict[str, str]) -> None:
    """Write an (H, W) class-id raster atomically, with the schema's palette and nodata 255."""
    import rasterio

    profile = _profile(label.shape[-1], 1, crs, transform)
    profile.update(nodata=IGNORE_INDEX)
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(label, 1)
        dst.write_colormap(1, schema.colormap())
        dst.set_band_description(1, "class")
        dst.update_tags(classes=",".join(schema.names), **tags)
