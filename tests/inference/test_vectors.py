"""Land-cover polygons: gap-free coverage of the class raster, seams, GeoPackage 1.2 + style."""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.enums import MergeAlg
from rasterio.features import rasterize
from rasterio.transform import from_origin

from geociss.errors import DataError
from geociss.inference.qml import ClassStyle
from geociss.inference.vectors import LAYER, write_polygons

from fakes import write_tif

STYLE = ClassStyle(
    names=["impervious", "building", "low vegetation", "tree", "car"],
    colors=[(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0)],
)
GSD = 0.25
TRANSFORM = from_origin(368000.0, 5806000.0, GSD, GSD)


def _scene(h: int = 260, w: int = 300, noise: float = 0.002, seed: int = 0) -> np.ndarray:
    """Blocks, discs and a diagonal road (curved and staircase edges), light salt noise,
    a nodata strip and a nodata hole."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 3, (h // 40 + 1, w // 40 + 1), dtype=np.uint8)
    arr = np.kron(blocks, np.ones((40, 40), np.uint8))[:h, :w]
    yy, xx = np.mgrid[:h, :w]
    for cy, cx, r in rng.uniform((0, 0, 6), (h, w, 30), (8, 3)):
        arr[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 3
    arr[np.abs(yy - 0.6 * xx - 20) < 5] = 0
    arr[100:104, 150:158] = 4  # a car
    salt = rng.random((h, w)) < noise
    arr[salt] = rng.integers(0, 5, salt.sum())
    arr[:, :12] = 255
    arr[30:45, 200:230] = 255
    return arr


def _write(tmp_path, arr, name="classes.tif", **kw):
    kw.setdefault("transform", TRANSFORM)
    return write_tif(tmp_path / name, arr, nodata=255, **kw)


def _read(gpkg):
    return pyogrio.read_dataframe(gpkg, layer=LAYER)


def _burn(frame, shape, transform=TRANSFORM):
    count = rasterize(
        ((g, 1) for g in frame.geometry), out_shape=shape, transform=transform,
        merge_alg=MergeAlg.add, dtype="uint8",
    )
    classes = rasterize(
        ((g, int(v)) for g, v in zip(frame.geometry, frame.class_id, strict=True)),
        out_shape=shape, transform=transform, fill=255, dtype="uint8",
    )
    return count, classes


@pytest.mark.parametrize("band_rows", [4096, 37])
def test_polygons_cover_every_valid_pixel_exactly_once(tmp_path, band_rows):
    arr = _scene()
    valid = arr != 255
    tif = _write(tmp_path, arr)
    gpkg = tmp_path / "scene.gpkg"
    n = write_polygons(tif, gpkg, STYLE, band_rows=band_rows)

    frame = _read(gpkg)
    assert len(frame) == n > 10
    assert frame.crs.to_epsg() == 32632
    assert list(frame.columns) == ["class_id", "class", "area_m2", "geometry"]
    assert set(frame.geom_type) == {"Polygon"} and frame.is_valid.all()
    assert all(
        STYLE.names[c] == name for c, name in zip(frame.class_id, frame["class"], strict=True)
    )
    count, classes = _burn(frame, arr.shape)
    assert np.all(count[valid] == 1), "gaps or overlaps after simplification"
    assert np.all(count[~valid] == 0), "polygons spill into nodata"
    assert (classes[valid] == arr[valid]).mean() >= 0.99
    valid_area = valid.sum() * GSD * GSD
    assert frame.area_m2.sum() == pytest.approx(valid_area, rel=1e-9)
    assert shapely.union_all(frame.geometry.values).area == pytest.approx(valid_area, rel=1e-9)
    assert np.allclose(frame.area_m2, frame.geometry.area)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_exact_outlines_without_sieve_or_simplification(tmp_path):
    arr = _scene(noise=0.02)
    tif = _write(tmp_path, arr)
    write_polygons(tif, tmp_path / "exact.gpkg", STYLE, min_pixels=0, tolerance=0)
    count, classes = _burn(_read(tmp_path / "exact.gpkg"), arr.shape)
    valid = arr != 255
    assert np.all(count[valid] == 1) and np.array_equal(classes[valid], arr[valid])


def test_row_bands_give_the_same_polygons_as_one_pass(tmp_path):
    arr = _scene(noise=0.01)
    arr[:, 60:64] = 2  # a stripe spanning every band: one polygon, merged across all seams
    arr[50:200, 70:80] = 1  # a U shape whose arms only meet below two seams
    arr[190:200, 70:120] = 1
    arr[50:200, 110:120] = 1
    tif = _write(tmp_path, arr)
    whole = tmp_path / "whole.gpkg"
    banded = tmp_path / "banded.gpkg"
    n1 = write_polygons(tif, whole, STYLE, min_pixels=0, tolerance=0, band_rows=10_000)
    n2 = write_polygons(tif, banded, STYLE, min_pixels=0, tolerance=0, band_rows=7)
    assert n1 == n2

    def key(frame):
        pairs = zip(frame.class_id, frame.geometry, strict=True)
        # simplify(0) drops the collinear vertices a seam union may leave on straight edges
        return sorted((int(c), shapely.normalize(shapely.simplify(g, 0)).wkb) for c, g in pairs)

    assert key(_read(whole)) == key(_read(banded))


def test_sieve_removes_specks_only(tmp_path):
    arr = np.zeros((64, 64), np.uint8)
    arr[10, 10] = 1  # 1 px speck
    arr[30:34, 30:34] = 2  # 16 px: kept with min_pixels=16
    tif = _write(tmp_path, arr)
    assert write_polygons(tif, tmp_path / "a.gpkg", STYLE, min_pixels=16) == 2
    assert sorted(_read(tmp_path / "a.gpkg").class_id) == [0, 2]
    assert write_polygons(tif, tmp_path / "b.gpkg", STYLE, min_pixels=0) == 3


def test_pixel_space_raster_reports_area_in_pixels(tmp_path):
    arr = _scene(h=80, w=90)
    tif = _write(tmp_path, arr, crs=None, transform=None)
    write_polygons(tif, tmp_path / "px.gpkg", STYLE)
    frame = _read(tmp_path / "px.gpkg")
    assert frame.crs is None and "area_px" in frame.columns and "area_m2" not in frame.columns
    assert frame.area_px.sum() == pytest.approx((arr != 255).sum())


def test_raster_without_geotransform_gets_polygons_where_qgis_draws_it(tmp_path):
    # QGIS draws a raster without a geotransform at x = column, y = -row (y in (-H, 0))
    arr = np.zeros((80, 90), np.uint8)
    arr[:20, :30] = 1  # a block at the top left of the image
    tif = _write(tmp_path, arr, crs=None, transform=None)
    write_polygons(tif, tmp_path / "px.gpkg", STYLE, min_pixels=0, tolerance=0)
    frame = _read(tmp_path / "px.gpkg")
    assert tuple(frame.total_bounds) == (0, -80, 90, 0)
    block = frame[frame.class_id == 1].geometry.iloc[0]
    assert block.equals(shapely.box(0, -20, 30, 0))


def test_geographic_raster_reports_square_metres(tmp_path):
    arr = np.zeros((50, 60), np.uint8)
    arr[:, 30:] = 1
    step = 1e-5  # about 1.1 m by 0.7 m at 50° N
    tif = _write(tmp_path, arr, crs="EPSG:4326", transform=from_origin(9.0, 50.0, step, step))
    write_polygons(tif, tmp_path / "geo.gpkg", STYLE)
    frame = _read(tmp_path / "geo.gpkg")
    assert frame.crs.to_epsg() == 4326
    assert frame.area_m2.sum() == pytest.approx(50 * 60 * 1.113 * 0.7155, rel=0.01)


def test_geopackage_is_version_1_2_with_a_default_style(tmp_path):
    tif = _write(tmp_path, _scene(h=60, w=70))
    gpkg = tmp_path / "styled.gpkg"
    write_polygons(tif, gpkg, STYLE)
    with sqlite3.connect(gpkg) as con:
        assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
        assert con.execute("PRAGMA user_version").fetchone()[0] == 10200
        rows = con.execute(
            "SELECT f_table_name, f_geometry_column, styleName, useAsDefault, styleQML "
            "FROM layer_styles"
        ).fetchall()
        geom_col = con.execute(
            "SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (LAYER,)
        ).fetchone()[0]
    assert len(rows) == 1
    table, column, name, default, qml = rows[0]
    assert (table, column, name, default) == (LAYER, geom_col, LAYER, 1)
    renderer = ET.fromstring(qml.split("\n", 1)[1]).find("renderer-v2")
    assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == "class_id"
    assert [c.get("label") for c in renderer.findall("categories/category")] == STYLE.names


def test_all_nodata_gives_an_empty_layer(tmp_path):
    tif = _write(tmp_path, np.full((40, 40), 255, np.uint8))
    assert write_polygons(tif, tmp_path / "empty.gpkg", STYLE) == 0
    assert len(_read(tmp_path / "empty.gpkg")) == 0


def test_overwrite_replaces_the_file(tmp_path):
    tif = _write(tmp_path, _scene(h=60, w=70))
    gpkg = tmp_path / "x.gpkg"
    write_polygons(tif, gpkg, STYLE, min_pixels=0, tolerance=0)
    n = write_polygons(tif, gpkg, STYLE)
    assert len(_read(gpkg)) == n


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="class raster not found"):
        write_polygons(tmp_path / "missing.tif", tmp_path / "x.gpkg", STYLE)
    arr = np.zeros((20, 20), np.uint8)
    arr[5:15, 5:15] = 9
    tif = _write(tmp_path, arr, name="nine.tif")
    with pytest.raises(DataError, match=r"nine.tif: holds class value\(s\) \[9\]"):
        write_polygons(tif, tmp_path / "x.gpkg", STYLE)
    rgb = _write(tmp_path, np.zeros((3, 20, 20), np.uint8), name="rgb.tif")
    with pytest.raises(DataError, match="single-band"):
        write_polygons(rgb, tmp_path / "x.gpkg", STYLE)
    junk = tmp_path / "junk.tif"
    junk.write_text("junk")
    with pytest.raises(DataError, match="not a readable GeoTIFF"):
        write_polygons(junk, tmp_path / "x.gpkg", STYLE)
    assert not (tmp_path / "x.gpkg").exists()
    with rasterio.open(tif) as src:  # the input is untouched
        assert src.read(1).max() == 9
