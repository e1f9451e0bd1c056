"""A predicted map feeds back into geociss: the GeoPackage reads as labels with the default
``--label-attribute class`` (no layer warning), and a 512² map's rasters have overviews."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pyogrio
import pytest
import rasterio
from click.testing import CliRunner

from geociss.cli.main import cli
from geociss.inference.vectors import LAYER

from fakes import tiny_isprs_bundle, write_tif

SIZE = 512
TILING = ["--tile", "256", "--overlap", "64"]


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    """A 512² blocky image, the tiny bundle, and ``predict --vector --confidence`` outputs."""
    root = tmp_path_factory.mktemp("roundtrip")
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (3, 8, 8), dtype=np.uint8)
    image = np.kron(blocks, np.ones((1, SIZE // 8, SIZE // 8), np.uint8))
    write_tif(root / "images" / "scene.tif", image)
    model = tiny_isprs_bundle().save(root / "tiny.safetensors")
    out = root / "maps"
    res = CliRunner().invoke(
        cli,
        ["predict", "--model", str(model), "--out", str(out), *TILING, "--workers", "0",
         "--vector", "--confidence", str(root / "images" / "scene.tif")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return root, model, out


def test_a_512_px_map_has_an_overview_level(predicted):
    _, _, out = predicted
    for name in ("scene_classes.tif", "scene_confidence.tif"):
        with rasterio.open(out / name) as src:
            assert (src.width, src.height) == (SIZE, SIZE)
            assert src.overviews(1) == [2], name


def test_the_geopackage_carries_the_label_attribute(predicted):
    _, _, out = predicted
    frame = pyogrio.read_dataframe(out / "scene.gpkg", layer=LAYER)
    assert {"class_id", "class", "area_m2"} <= set(frame.columns)
    names = tiny_isprs_bundle().channel_names
    assert all(names[i] == name for i, name in zip(frame.class_id, frame["class"], strict=True))


def test_evaluate_reads_a_predicted_geopackage_as_labels(predicted):
    root, model, out = predicted
    scores_json = root / "scores.json"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = CliRunner().invoke(
            cli,
            ["evaluate", "--model", str(model), "--images", str(root / "images"),
             "--labels", str(out / "scene.gpkg"), *TILING, "--json", str(scores_json),
             "--no-progress"],
        )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert not [w for w in caught if "More than one layer" in str(w.message)]
    confusion = np.array(json.loads(scores_json.read_text())["confusion"])
    # the labels are the map itself, up to sieving and one-pixel simplification
    assert np.trace(confusion) / confusion.sum() >= 0.95
