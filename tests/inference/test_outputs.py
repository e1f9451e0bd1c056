"""Prediction rasters: streamed GTiff → COG with palette, tags, overviews and sidecars."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.transform import from_origin

from geociss.errors import DataError
from geociss.inference.outputs import (
    PROBABILITY_SCALE,
    ClassStyle,
    class_profile,
    encode_probability,
    finalize_classes,
    finalize_confidence,
    finalize_probabilities,
    qml_path,
)

STYLE = ClassStyle(
    names=["impervious & roads", "building", "low <vegetation>", "tree", "car"],
    colors=[(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0)],
)
TRANSFORM = from_origin(368000.0, 5806000.0, 0.25, 0.25)
CRS = "EPSG:32632"
H, W = 1100, 1300


def _classes() -> np.ndarray:
    """Class blocks, a region whose 2×2 cells are [[4, 0], [0, 0]], and a nodata strip."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 4, (H // 100 + 1, W // 100 + 1), dtype=np.uint8)
    arr = np.kron(blocks, np.ones((100, 100), np.uint8))[:H, :W]
    arr[200:400, 200:400] = 0
    arr[200:400:2, 200:400:2] = 4
    arr[:, :60] = 255
    return arr


def _stream(path, arr, transform=TRANSFORM, crs=CRS, rows=256):
    """Write ``arr`` in row bands, as the prediction engine does."""
    arr = arr[None] if arr.ndim == 2 else arr
    profile = class_profile(arr.shape[2], arr.shape[1], transform, crs, count=arr.shape[0])
    with rasterio.open(path, "w", **profile) as dst:
        for y in range(0, arr.shape[1], rows):
            block = arr[:, y : y + rows]
            dst.write(block, window=rasterio.windows.Window(0, y, arr.shape[2], block.shape[1]))
    return path


def test_class_profile_is_a_tiled_streamable_gtiff():
    p = class_profile(100, 50, TRANSFORM, CRS, count=3)
    assert p["driver"] == "GTiff" and p["dtype"] == "uint8" and p["nodata"] == 255
    assert p["tiled"] and p["blockxsize"] == p["blockysize"] == 512
    assert p["compress"] == "deflate" and p["BIGTIFF"] == "IF_SAFER"
    assert p["NUM_THREADS"] == "ALL_CPUS" and p["count"] == 3
    assert p["transform"] == TRANSFORM and p["crs"] == CRS
    bare = class_profile(100, 50, None, None)  # no geotransform: the grid QGIS draws it on
    assert bare["transform"] == Affine(1, 0, 0, 0, -1, 0) and "crs" not in bare


def test_finalize_classes_writes_a_styled_cog(tmp_path):
    arr = _classes()
    partial = _stream(tmp_path / "scene_classes.tif.partial", arr)
    out = tmp_path / "scene_classes.tif"
    finalize_classes(partial, out, STYLE)

    assert not partial.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "scene_classes.qml", "scene_classes.tif", "scene_classes.tif.aux.xml"
    ]
    with rasterio.open(out) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
        assert src.block_shapes == [(512, 512)]
        assert src.overviews(1) == [2, 4]
        assert src.nodata == 255 and src.dtypes == ("uint8",)
        assert src.crs.to_epsg() == 32632 and src.transform == TRANSFORM
        assert np.array_equal(src.read(1), arr)
        cmap = src.colormap(1)
        assert cmap[4] == (255, 255, 0, 255) and cmap[2] == (0, 255, 255, 255)
        assert cmap[255] == (0, 0, 0, 0)
        assert src.colorinterp[0].name == "palette"
        assert src.descriptions == ("land cover class",)
        assert src.tags(1)["CLASS_0"] == "impervious & roads"
        assert src.tags(1)["CLASS_4"] == "car"
        assert json.loads(src.tags()["CLASSES"]) == STYLE.names
        assert src.tags()["SOFTWARE"].startswith("geociss ")
    # mode overviews: each 2×2 cell [[4, 0], [0, 0]] becomes 0 (nearest: 4, average: 1)
    with rasterio.open(out, overview_level=0) as ovr:
        level = ovr.read(1)
    assert level.shape == (H // 2, W // 2)
    assert np.all(level[100:200, 100:200] == 0)
    assert set(np.unique(level)) <= {0, 1, 2, 3, 4, 255}
    assert np.all(level[:, :30] == 255)


def test_class_sidecars_name_the_classes(tmp_path):
    partial = _stream(tmp_path / "a.partial", _classes()[:300, :300])
    out = tmp_path / "a_classes.tif"
    finalize_classes(partial, out, STYLE)

    assert qml_path(out) == tmp_path / "a_classes.qml"
    entries = ET.fromstring(qml_path(out).read_text().split("\n", 1)[1]).findall(
        "pipe/rasterrenderer/colorPalette/paletteEntry"
    )
    assert [e.get("label") for e in entries] == STYLE.names
    assert [e.get("color") for e in entries] == STYLE.hex_colors
    pam = ET.parse(tmp_path / "a_classes.tif.aux.xml").getroot()
    band = pam.find("PAMRasterBand")
    assert band.get("band") == "1"
    assert band.find("Description").text == "land cover class"
    assert [c.text for c in band.findall("CategoryNames/Category")] == STYLE.names
    with rasterio.open(out) as src:  # GDAL still reads the file with the PAM sidecar
        assert src.descriptions == ("land cover class",) and src.nodata == 255


def test_pixel_space_input_gets_the_grid_qgis_draws_it_on(tmp_path):
    arr = _classes()[:200, :250]
    partial = _stream(tmp_path / "p.partial", arr, transform=None, crs=None)
    finalize_classes(partial, tmp_path / "p.tif", STYLE)
    with rasterio.open(tmp_path / "p.tif") as src:  # x = column, y = -row, no CRS
        assert src.crs is None and src.transform == Affine(1, 0, 0, 0, -1, 0)
        assert tuple(src.bounds) == (0, -200, 250, 0)
        assert np.array_equal(src.read(1), arr)


def test_encode_probability():
    p = np.array([0.0, 0.5, 1.0, 1.2, -0.1, np.nan, 0.999])
    assert encode_probability(p).tolist() == [0, 127, 254, 254, 0, 255, 254]
    valid = np.array([True, False, True, True, True, True, True])
    assert encode_probability(p, valid).tolist()[:2] == [0, 255]


def test_finalize_confidence_scale_offset_nodata(tmp_path):
    rng = np.random.default_rng(1)
    prob = rng.uniform(0.2, 1.0, (700, 600))
    enc = encode_probability(prob)
    enc[:, :40] = 255
    partial = _stream(tmp_path / "c.partial", enc)
    out = tmp_path / "scene_confidence.tif"
    finalize_confidence(partial, out)

    assert not partial.exists() and qml_path(out).is_file()
    with rasterio.open(out) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.scales == (pytest.approx(1 / 254),) and src.offsets == (0.0,)
        assert src.nodata == 255
        assert src.descriptions == ("max softmax probability",)
        assert src.tags(1)["UNITS"] == "probability"
        data = src.read(1)
        assert src.overviews(1) == [2]
    decoded = data[:, 40:] * src.scales[0] + src.offsets[0]
    assert np.abs(decoded - prob[:, 40:]).max() <= 0.5 / 254 + 1e-6
    assert np.all(data[:, :40] == 255)
    ramp = ET.fromstring(qml_path(out).read_text().split("\n", 1)[1])
    assert ramp.find("pipe/rasterrenderer").get("type") == "singlebandpseudocolor"


def test_finalize_probabilities_band_descriptions(tmp_path):
    rng = np.random.default_rng(2)
    prob = rng.dirichlet(np.ones(len(STYLE.names)), (120, 90)).transpose(2, 0, 1)
    partial = _stream(tmp_path / "q.partial", encode_probability(prob))
    out = tmp_path / "scene_probabilities.tif"
    finalize_probabilities(partial, out, STYLE)

    with rasterio.open(out) as src:
        assert src.count == 5 and src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.descriptions == tuple(STYLE.names)
        assert src.scales == (pytest.approx(PROBABILITY_SCALE),) * 5
        assert src.offsets == (0.0,) * 5 and src.nodata == 255
        decoded = src.read() * PROBABILITY_SCALE
    assert np.abs(decoded - prob).max() <= 0.5 / 254 + 1e-6
    assert np.abs(decoded.sum(0) - 1).max() < 0.02


def test_missing_or_wrong_partial_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="streamed prediction file not found"):
        finalize_classes(tmp_path / "nope.partial", tmp_path / "x.tif", STYLE)
    three = _stream(tmp_path / "three.partial", np.zeros((3, 20, 20), np.uint8))
    with pytest.raises(DataError, match=r"three.partial: expected 5 uint8 band\(s\), found 3"):
        finalize_probabilities(three, tmp_path / "p.tif", STYLE)
    with pytest.raises(DataError, match="expected 1 uint8"):
        finalize_classes(three, tmp_path / "c.tif", STYLE)
    garbage = tmp_path / "garbage.partial"
    garbage.write_bytes(b"not a tiff")
    with pytest.raises(DataError, match="not a readable GeoTIFF"):
        finalize_confidence(garbage, tmp_path / "g.tif")
    assert not (tmp_path / "x.tif").exists() and not (tmp_path / "c.tif").exists()
    assert three.exists()  # left for the caller on failure
