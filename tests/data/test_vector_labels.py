"""Vector labels: rasterising polygons onto image grids, caching, errors."""

from __future__ import annotations

import os

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely

from geociss.data.catalog import Catalog
from geociss.data.classes import IGNORE_INDEX, ClassSchema
from geociss.errors import ConfigError, DataError

from fakes import write_tif

ISPRS = ClassSchema.preset("isprs")
X0, Y0 = 368000.0, 5806000.0  # image origin, 1 m pixels, 64 x 64


def image(root, name="a", crs="EPSG:32632", size=64):
    data = np.random.default_rng(0).integers(0, 256, (3, size, size), dtype=np.uint8)
    return write_tif(root / "images" / f"{name}.tif", data, crs=crs, origin=(X0, Y0), gsd=1.0)


def pixel_box(row, col, height, width):
    return shapely.box(X0 + col, Y0 - row - height, X0 + col + width, Y0 - row)


def polygons(path, classes, geoms, crs="EPSG:32632", attribute="class"):
    gpd.GeoDataFrame({attribute: classes}, geometry=geoms, crs=crs).to_file(path)
    return path


def test_square_polygon_gives_exact_pixel_count(tmp_path):
    image(tmp_path)
    vec = polygons(tmp_path / "labels.gpkg", ["Building"], [pixel_box(5, 10, 10, 12)])
    cat = Catalog.scan(tmp_path / "images", vec, ISPRS)
    t = cat[0]
    assert t.label_encoded and t.label.is_file() and t.label.suffix == ".tif"
    assert t.hist[1] == 120 and t.hist[0] == 64 * 64 - 120 and t.ignored == 0
    with rasterio.open(t.label) as src:
        ids = src.read(1)
        assert src.dtypes[0] == "uint8" and src.nodata == IGNORE_INDEX and src.profile.get("tiled")
        assert src.transform == rasterio.open(t.image).transform
    assert (ids[5:15, 10:22] == 1).all() and ids.sum() == 120


def test_ignore_unlabelled_ids_and_later_polygons_win(tmp_path):
    image(tmp_path)
    vec = polygons(
        tmp_path / "labels.geojson", [3, "tree", "4"],
        [pixel_box(0, 0, 20, 20), pixel_box(30, 30, 4, 4), pixel_box(10, 10, 20, 20)],
    )
    t = Catalog.scan(tmp_path / "images", vec, ISPRS, unlabelled="ignore")[0]
    # car (4) drawn last covers rows/cols 10..30 and overwrites 100 pixels of the first tree
    assert t.hist[4] == 400 and t.hist[3] == 400 - 100 + 16
    assert t.ignored == 64 * 64 - t.hist.sum()


def test_polygons_in_another_crs_are_reprojected(tmp_path):
    image(tmp_path)
    square = gpd.GeoSeries([pixel_box(8, 8, 16, 16)], crs="EPSG:32632").to_crs("EPSG:4326")
    vec = polygons(tmp_path / "labels.gpkg", ["car"], list(square), crs="EPSG:4326")
    t = Catalog.scan(tmp_path / "images", vec, ISPRS)[0]
    assert abs(int(t.hist[4]) - 256) <= 4


def test_changed_vector_file_is_rasterised_again(tmp_path):
    image(tmp_path)
    vec = polygons(tmp_path / "labels.gpkg", ["car"], [pixel_box(0, 0, 4, 4)])
    first = Catalog.scan(tmp_path / "images", vec, ISPRS)[0]
    again = Catalog.scan(tmp_path / "images", vec, ISPRS)[0]
    assert again.label == first.label and again.hist[4] == 16
    os.remove(vec)
    polygons(vec, ["car"], [pixel_box(0, 0, 8, 8)])
    st = vec.stat()
    os.utime(vec, ns=(st.st_atime_ns, st.st_mtime_ns + 10**10))
    changed = Catalog.scan(tmp_path / "images", vec, ISPRS)[0]
    assert changed.hist[4] == 64 and changed.label != first.label
    assert not first.label.exists() and changed.label.parent == first.label.parent
    # a removed cache raster is written again
    changed.label.unlink()
    assert Catalog.scan(tmp_path / "images", vec, ISPRS)[0].label.is_file()


def test_unknown_class_value_names_file_and_value(tmp_path):
    image(tmp_path)
    vec = polygons(tmp_path / "labels.gpkg", ["car", "swimming pool"],
                   [pixel_box(0, 0, 4, 4), pixel_box(8, 8, 4, 4)])
    with pytest.raises(DataError, match="unknown class value 'swimming pool'") as err:
        Catalog.scan(tmp_path / "images", vec, ISPRS)
    assert str(err.value).startswith(str(vec))
    vec2 = polygons(tmp_path / "ids.gpkg", [1, 17], [pixel_box(0, 0, 4, 4)] * 2)
    with pytest.raises(DataError, match="unknown class value 17"):
        Catalog.scan(tmp_path / "images", vec2, ISPRS)


def test_vector_labels_need_georeferenced_images(tmp_path):
    image(tmp_path, crs=None)
    vec = polygons(tmp_path / "labels.gpkg", ["car"], [pixel_box(0, 0, 4, 4)])
    with pytest.raises(DataError, match="need georeferenced images") as err:
        Catalog.scan(tmp_path / "images", vec, ISPRS)
    assert str(err.value).startswith(str(tmp_path / "images" / "a.tif"))


def test_vector_file_problems(tmp_path):
    image(tmp_path)
    vec = polygons(tmp_path / "labels.gpkg", ["car"], [pixel_box(0, 0, 4, 4)], attribute="kind")
    with pytest.raises(DataError, match="has no attribute 'class' \\(attributes: kind\\)"):
        Catalog.scan(tmp_path / "images", vec, ISPRS)
    assert Catalog.scan(tmp_path / "images", vec, ISPRS, label_attribute="kind")[0].hist[4] == 16
    line = shapely.LineString([(X0, Y0), (X0 + 5, Y0)])
    lines = polygons(tmp_path / "lines.gpkg", ["car"], [line])
    with pytest.raises(DataError, match="LineString geometries"):
        Catalog.scan(tmp_path / "images", lines, ISPRS)
    broken = tmp_path / "broken.gpkg"
    broken.write_bytes(b"not a geopackage")
    with pytest.raises(DataError, match="cannot read vector labels") as err:
        Catalog.scan(tmp_path / "images", broken, ISPRS)
    assert str(err.value).startswith(str(broken))
    with pytest.raises(DataError, match="vector label file not found"):
        Catalog.scan(tmp_path / "images", tmp_path / "missing.gpkg", ISPRS)


def test_background_needs_a_schema_background(tmp_path):
    image(tmp_path)
    vec = polygons(tmp_path / "labels.gpkg", ["a"], [pixel_box(0, 0, 4, 4)])
    schema = ClassSchema.from_dict({"classes": [{"id": 0, "name": "a", "color": "#ff0000"}]})
    with pytest.raises(ConfigError, match="no background class"):
        Catalog.scan(tmp_path / "images", vec, schema)
    t = Catalog.scan(tmp_path / "images", vec, schema, unlabelled="ignore")[0]
    assert t.hist.tolist() == [16] and t.ignored == 64 * 64 - 16
