"""Class raster → gap-free, simplified land-cover polygons in a styled GeoPackage.

Pipeline: sieve (4-connectivity, nodata excluded) → ``rasterio.features.shapes`` →
``shapely.coverage_simplify`` → GeoPackage 1.2, layer ``landcover``, with an embedded default
style (a ``layer_styles`` row holding a categorized renderer) that QGIS applies on opening.

Bounded raster memory: the raster is read in row bands of ``band_rows`` rows (4096 by default)
and never whole. Each band is sieved with a halo of ``min_pixels`` rows on both sides: a region
smaller than ``min_pixels`` spans fewer rows than that, so the halo sees it whole, and a larger
region crossing the window edge still has at least ``min_pixels`` pixels inside the window
(the sieve decision is the same as on the whole raster; only the neighbour a removed region is
merged into may differ near a seam). Each band is polygonized in pixel coordinates, where
vertices are exact integers; polygons that touch the seam with the next band wait there, and are
dissolved with the next band's polygons of the same class that share an edge with them (a union
on exact coordinates). Only polygons touching a seam are ever merged. The polygons themselves
(the output) are kept until the final simplification, which needs the whole coverage.

Simplification works on the pixel-space coverage: every edge is first split at each integer
vertex (so neighbours share identical vertices, as ``coverage_simplify`` requires), then the
coverage is simplified with the outer boundary (raster edge and nodata edges) kept fixed, so
the polygons stay gap-free, non-overlapping and inside the valid area. Finally the coordinates
are mapped to the raster CRS by its affine transform; a raster without one is mapped as QGIS
draws it, x = column and y = -row (:data:`~geociss.inference.georef.PIXEL_SPACE`), so the
polygons lie on the raster in QGIS.

Areas. The polygons of one class cover the raster's pixels of that class exactly only with
``tolerance=0`` and ``min_pixels`` 0 or 1. Two steps move area between classes, never in or out
of the valid area (the total is exact): the sieve gives regions smaller than ``min_pixels`` to
a neighbour, and the simplification moves each edge shared by two classes by less than the
tolerance, so a class gains or loses at most ``tolerance`` times its boundary length (in
pixels: at most one pixel of area per boundary pixel edge). Measured on 260×300 scenes
(tests/inference/test_vector_areas.py): at most 0.03 pixel of area per boundary pixel edge,
0.3 % of the class's pixel count for classes of thousands of pixels; single-pixel regions
shrink to triangles of half a pixel.

Reading the file. ``layer_styles`` (the embedded style) is a second table of the GeoPackage,
and GDAL lists it as a layer: ``geopandas.read_file(gpkg)`` reads ``landcover`` (the first
layer) but warns "More than one layer found". Pass ``layer="landcover"``. The table cannot be
hidden: GDAL opens by name only the tables it lists, and QGIS finds the default style by
opening ``layer_styles`` by name (tested with GDAL 3.6 and 3.12, QGIS 3.22).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from geociss.data.classes import IGNORE_INDEX
from geociss.errors import DataError, error_detail
from geociss.inference.georef import PIXEL_SPACE, open_raster
from geociss.inference.qml import ClassStyle, categorized_qml

LAYER = "landcover"
"""Name of the polygon layer in the GeoPackage."""

GEOMETRY_COLUMN = "geom"
CLASS_COLUMN = "class"
"""Attribute holding the class name: the default ``--label-attribute`` of scan/extend/evaluate."""
BAND_ROWS = 4096


def write_polygons(
    classes_tif: Path,
    gpkg: Path,
    style: ClassStyle,
    min_pixels: int = 16,
    tolerance: float | None = None,
    *,
    band_rows: int = BAND_ROWS,
) -> int:
    """Polygonize a class raster into a styled GeoPackage; return the number of polygons.

    Args:
        classes_tif: single-band class raster (nodata 255 or the file's nodata value).
        gpkg: the GeoPackage to write (replaced atomically).
        style: names and colours of the class values.
        min_pixels: regions smaller than this (4-connected pixels) are merged into their
            largest neighbour first; 0 or 1 keeps every region.
        tolerance: simplification tolerance in CRS units (pixels for a raster without a CRS);
            None = one pixel; 0 = no simplification (exact pixel outlines).
        band_rows: rows read and polygonized at a time (bounds the raster memory).

    Returns:
        The number of polygons written. Their attributes: ``class_id`` (the class raster value,
        which the embedded style colours by), ``class`` (the class name, so the GeoPackage
        reads back as labels with the default ``--label-attribute class``) and ``area_m2``
        (``area_px`` for a raster without a CRS). The areas are the polygons' areas, which
        differ from the class's pixel count by a few pixels per class (see the module doc).

    Raises:
        DataError: the raster is missing or unreadable, has more than one band, or holds class
            values the style does not name.
    """
    from rasterio.errors import RasterioIOError

    classes_tif = Path(classes_tif)
    if not classes_tif.is_file():
        raise DataError(classes_tif, "class raster not found")
    try:
        src, georeferenced = open_raster(classes_tif)
    except (RasterioIOError, TypeError) as err:
        raise DataError(classes_tif, f"not a readable GeoTIFF ({error_detail(err)})") from None
    with src:
        if src.count != 1 or src.dtypes[0] not in ("uint8", "uint16", "int16", "int32"):
            raise DataError(classes_tif, "expected a single-band integer class raster")
        nodata = IGNORE_INDEX if src.nodata is None else int(src.nodata)
        geoms, values = _polygonize(src, nodata, max(int(min_pixels), 0), max(band_rows, 1))
        transform = src.transform if georeferenced else PIXEL_SPACE  # as QGIS draws it
        crs = src.crs
    unknown = sorted({int(v) for v in values} - set(range(len(style.names))))
    if unknown:
        raise DataError(
            classes_tif,
            f"holds class value(s) {unknown[:8]} but the style names only "
            f"{len(style.names)} classes",
        )
    pixel_size = math.sqrt(abs(transform.determinant))
    tol_px = 1.0 if tolerance is None else float(tolerance) / pixel_size
    geoms = _simplify(geoms, tol_px)
    frame = _frame(geoms, values, style, transform, crs)
    _write_gpkg(frame, Path(gpkg), style)
    return len(frame)


# ---------------------------------------------------------------------- raster → polygons


def _polygonize(src: Any, nodata: int, min_pixels: int, band_rows: int) -> tuple[Any, Any]:
    """Polygons (pixel coordinates) and class values of ``src``, band by band."""
    from affine import Affine
    from rasterio.features import shapes
    from rasterio.windows import Window
    from shapely.geometry import shape

    height, width = src.height, src.width
    halo = min_pixels if min_pixels > 1 else 0
    done_g: list[Any] = []
    done_v: list[int] = []
    pending: list[tuple[Any, int]] = []
    for row0 in range(0, height, band_rows):
        row1 = min(row0 + band_rows, height)
        top, bottom = max(row0 - halo, 0), min(row1 + halo, height)
        arr = src.read(1, window=Window(0, top, width, bottom - top))
        valid = arr != nodata
        if halo:
            from rasterio.features import sieve

            arr = sieve(arr, size=min_pixels, connectivity=4, mask=valid)
        core = slice(row0 - top, row1 - top)
        arr, valid = arr[core], valid[core]
        fresh = [
            (shape(geom), int(value))
            for geom, value in shapes(
                arr, mask=valid, connectivity=4, transform=Affine.translation(0, row0)
            )
        ]
        merged, finished = _merge_seam(pending, fresh, row0)
        done_g += [g for g, _ in finished]
        done_v += [v for _, v in finished]
        pending = []
        for geom, value in merged:
            if row1 < height and geom.bounds[3] >= row1:
                pending.append((geom, value))
            else:
                done_g.append(geom)
                done_v.append(value)
    done_g += [g for g, _ in pending]
    done_v += [v for _, v in pending]
    return np.array(done_g, dtype=object), np.array(done_v, dtype=np.int64)


def _merge_seam(
    pending: list[tuple[Any, int]], fresh: list[tuple[Any, int]], seam: int
) -> tuple[list[tuple[Any, int]], list[tuple[Any, int]]]:
    """Dissolve polygons across the seam ``y = seam``.

    ``pending`` (above the seam) and ``fresh`` (below) polygons of one class that share an edge
    on the seam are merged (transitively). Returns the merged-plus-untouched fresh polygons, and
    the pending polygons that nothing continued (finished).
    """
    import shapely

    if not pending:
        return fresh, []
    parent = list(range(len(pending) + len(fresh)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    tree = shapely.STRtree([g for g, _ in pending])
    for j, (geom, value) in enumerate(fresh):
        if geom.bounds[1] > seam:
            continue
        for i in tree.query(geom, predicate="intersects"):
            other, other_value = pending[int(i)]
            if other_value == value and geom.intersection(other).length > 0:
                parent[find(len(pending) + j)] = find(int(i))
    groups: dict[int, list[int]] = {}
    for k in range(len(parent)):
        groups.setdefault(find(k), []).append(k)
    items = pending + fresh
    merged: list[tuple[Any, int]] = []
    finished: list[tuple[Any, int]] = []
    for members in groups.values():
        if len(members) == 1:
            k = members[0]
            (finished if k < len(pending) else merged).append(items[k])
        else:
            union = shapely.union_all([items[k][0] for k in members])
            merged.append((shapely.normalize(union), items[members[0]][1]))
    return merged, finished


def _simplify(geoms: Any, tol_px: float) -> Any:
    """Gap-free simplification of a pixel-space coverage (outer boundary kept)."""
    import shapely

    if tol_px <= 0 or len(geoms) == 0:
        return geoms
    noded = shapely.transform(shapely.segmentize(geoms, 1.0), np.rint)
    return shapely.coverage_simplify(noded, tol_px, simplify_boundary=False)


# ---------------------------------------------------------------------- polygons → file


def _frame(geoms: Any, values: Any, style: ClassStyle, transform: Any, crs: Any) -> Any:
    """GeoDataFrame in the raster CRS with class id, class name and area."""
    import geopandas as gpd
    import shapely
    from rasterio.errors import CRSError

    keep = ~shapely.is_empty(geoms) if len(geoms) else np.zeros(0, bool)
    geoms, values = geoms[keep], values[keep]
    a, b, c, d, e, f = transform[:6]
    matrix = np.array([[a, b], [d, e]], dtype=np.float64)
    world = shapely.transform(geoms, lambda xy: xy @ matrix.T + np.array([c, f]))
    data: dict[str, Any] = {
        "class_id": values.astype(np.int32),
        CLASS_COLUMN: [style.names[int(v)] for v in values],
    }
    frame = gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(world), crs=crs)
    if crs is None:
        frame["area_px"] = shapely.area(geoms)
    elif crs.is_geographic:
        frame["area_m2"] = frame.geometry.to_crs(frame.estimate_utm_crs()).area.to_numpy()
    else:
        try:
            factor = float(crs.linear_units_factor[1])
        except CRSError:  # an engineering CRS without declared units: take them as metres
            factor = 1.0
        frame["area_m2"] = shapely.area(world) * factor**2
    return frame


def _write_gpkg(frame: Any, gpkg: Path, style: ClassStyle) -> None:
    """Write the polygons and their default style to ``gpkg`` atomically (via a temp folder)."""
    import pandas as pd
    import pyogrio

    types = set(frame.geom_type) if len(frame) else {"Polygon"}
    gtype = "Polygon" if types <= {"Polygon"} else "MultiPolygon"
    styles = pd.DataFrame(
        {
            "f_table_catalog": [""],
            "f_table_schema": [""],
            "f_table_name": [LAYER],
            "f_geometry_column": [GEOMETRY_COLUMN],
            "styleName": [LAYER],
            "styleQML": [categorized_qml(style)],
            "styleSLD": [""],
            "useAsDefault": [True],
            "description": ["land cover classes (geociss)"],
            "owner": [""],
            "ui": [""],
            "update_time": [datetime.now(UTC).replace(tzinfo=None)],
        }
    )
    gpkg.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{gpkg.name}.", dir=gpkg.parent))
    try:
        tmp = tmp_dir / gpkg.name
        with warnings.catch_warnings():  # a pixel-space raster has no CRS, on purpose
            warnings.filterwarnings("ignore", message="'crs' was not provided")
            pyogrio.write_dataframe(
                frame, tmp, layer=LAYER, driver="GPKG", geometry_type=gtype,
                promote_to_multi=gtype == "MultiPolygon", VERSION="1.2",
                GEOMETRY_NAME=GEOMETRY_COLUMN,
            )
        pyogrio.write_dataframe(styles, tmp, layer="layer_styles", driver="GPKG")
        os.replace(tmp, gpkg)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
