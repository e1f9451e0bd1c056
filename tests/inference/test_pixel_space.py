"""Outputs of an input without georeferencing, or with an explicit identity geotransform.

The class raster, the confidence raster and the GeoPackage polygons of ``geociss predict`` lie
on one grid that every reader agrees on: the bounds of the polygon layer equal the bounds
rasterio reports for the class raster. An input without a geotransform gets
:data:`~geociss.inference.georef.PIXEL_SPACE` (x = column, y = -row, where QGIS draws the input);
an input with an explicit identity geotransform keeps it. ``test_qgis.py`` checks the same in
QGIS itself.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.transform import array_bounds

from geociss.cli.main import cli
from geociss.inference.georef import PIXEL_SPACE, open_raster
from geociss.inference.vectors import LAYER

from fakes import tiny_isprs_bundle

HEIGHT, WIDTH = 90, 110


def pixel_space_image(path: Path, transform: Affine | None) -> Path:
    """A 3-band uint8 image without a CRS; with ``transform`` written explicitly, or none."""
    rng = np.random.default_rng(0)
    profile = {"driver": "GTiff", "width": WIDTH, "height": HEIGHT, "count": 3, "dtype": "uint8"}
    if transform is not None:
        profile["transform"] = transform
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(rng.integers(0, 256, (3, HEIGHT, WIDTH), dtype=np.uint8))
    return path


def box(transform: Affine) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of the HEIGHT × WIDTH grid of ``transform``."""
    west, south, east, north = array_bounds(HEIGHT, WIDTH, transform)
    return min(west, east), min(south, north), max(west, east), max(south, north)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny ISPRS bundle."""
    return tiny_isprs_bundle().save(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.mark.parametrize(
    ("transform", "expected"),
    [(None, PIXEL_SPACE), (Affine.identity(), Affine.identity())],
    ids=["no-geotransform", "identity-geotransform"],
)
def test_rasters_and_polygons_share_one_grid(
    tmp_path: Path, model: Path, transform: Affine | None, expected: Affine
) -> None:
    image = pixel_space_image(tmp_path / "scene.tif", transform)
    with open_raster(image)[0] as src:  # the fixture is what it claims to be
        assert src.crs is None and src.transform.is_identity
    assert open_raster(image)[1] is (transform is not None)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        cli,
        ["predict", "--model", str(model), "--out", str(out), "--tile", "64", "--overlap", "16",
         "--workers", "0", "--confidence", "--vector", str(image)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    for name in ("scene_classes.tif", "scene_confidence.tif"):
        src, georeferenced = open_raster(out / name)
        with src:
            assert georeferenced and src.crs is None, name
            assert src.transform == expected, name
            b = src.bounds
            bounds = (min(b.left, b.right), min(b.bottom, b.top))
            bounds += (max(b.left, b.right), max(b.bottom, b.top))
        assert bounds == box(expected), name
    info = pyogrio.read_info(out / "scene.gpkg", layer=LAYER)
    assert info["crs"] is None
    assert tuple(info["total_bounds"]) == pytest.approx(box(expected))


def test_open_raster_reports_a_missing_geotransform_without_a_warning(tmp_path: Path) -> None:
    image = pixel_space_image(tmp_path / "scene.tif", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        src, georeferenced = open_raster(image)
        src.close()
    assert not georeferenced and caught == []
