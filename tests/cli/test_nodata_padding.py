"""Nodata fill and edge padding: one rule in ``evaluate`` and ``predict`` (issue 12, items 3-4).

A tiny network is trained for a few seconds on a generated 4-band uint16 scene (land-cover
patches with a spectral signature per class), so that its decision margins are those of a model
that learned something: a random network's are not. Then:

* a 60 x 80 block of nodata (0) in a 256² tile changes the class of few valid pixels (the
  invalid pixels are fed as the band mean, 0 after normalisation, not as raw 0 = about -6 sigma),
  and every output holds nodata there;
* on a tile smaller than the evaluation window, the confusion matrix ``evaluate`` reports equals
  the one computed from the class raster ``predict`` writes (both reflect-pad the edge).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
import torch
from click.testing import CliRunner

from geociss.cli.main import cli
from geociss.data.classes import ClassSchema
from geociss.engine.bundle import StepBundle, StepRecord
from geociss.models import ModelConfig, SegmentationModel

from fakes import write_tif

SIGNATURES = np.array(
    [
        [2500, 3000, 2000, 3500],
        [3500, 2500, 3000, 2000],
        [2000, 3500, 2500, 3000],
        [3000, 2000, 3500, 2500],
    ],
    np.float64,
)
"""Mean reflectance of each class in the four bands (uint16 digital numbers)."""

SCHEMA = {
    "name": "four",
    "background": "bare",
    "classes": [
        {"id": i, "name": n, "color": c}
        for i, (n, c) in enumerate(
            [("bare", "#a0a0a0"), ("water", "#0000ff"), ("crop", "#ffff00"), ("forest", "#008000")]
        )
    ],
}
BLOCK = (slice(100, 160), slice(90, 170))
"""The 60 x 80 nodata block."""


def scene(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 4-band uint16 image of 40 Voronoi patches (one class each) and its class ids."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, [height, width], (40, 2))
    classes = rng.integers(0, 4, 40)
    yy, xx = np.mgrid[0:height, 0:width]
    dist = (yy[None] - points[:, 0, None, None]) ** 2 + (xx[None] - points[:, 1, None, None]) ** 2
    label = classes[dist.argmin(0)].astype(np.uint8)
    image = SIGNATURES[label].transpose(2, 0, 1) + rng.normal(0, 250, (4, height, width))
    return np.clip(image, 1, 65535).astype(np.uint16), label


def run(*args: object) -> object:
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(autouse=True)
def _on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both commands on the CPU (float32): a GPU runs bf16 kernels that differ in the last bits."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``tiny`` network trained for 80 steps on 128² windows of one scene (about 5 s)."""
    image, label = scene(256, 256, seed=1)
    flat = image.reshape(4, -1).astype(np.float64)
    mean, std = flat.mean(1).tolist(), flat.std(1).tolist()
    torch.manual_seed(0)
    cfg = ModelConfig(encoder="tiny", weights="none", aspp_channels=16, in_channels=4)
    model = SegmentationModel(cfg, [4])
    optimiser = torch.optim.Adam(model.parameters(), 3e-3)
    x_all = torch.from_numpy(
        ((image - flat.mean(1)[:, None, None]) / flat.std(1)[:, None, None]).astype(np.float32)
    )
    y_all = torch.from_numpy(label.astype(np.int64))
    rng = np.random.default_rng(0)
    for _ in range(80):
        corners = rng.integers(0, 129, (4, 2))
        x = torch.stack([x_all[:, r : r + 128, c : c + 128] for r, c in corners])
        y = torch.stack([y_all[r : r + 128, c : c + 128] for r, c in corners])
        loss = torch.nn.functional.cross_entropy(model(x).logits, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    out = StepBundle.from_model(
        model.eval(),
        schema=ClassSchema.from_dict(SCHEMA),
        steps=[StepRecord([0, 1, 2, 3])],
        mean=mean,
        std=std,
        bands=["blue", "green", "red", "nir"],
    )
    return out.save(tmp_path_factory.mktemp("bundle") / "step0.safetensors")


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def test_a_nodata_block_barely_changes_the_valid_pixels_and_is_nodata_in_every_output(
    tmp_path: Path, bundle: Path
) -> None:
    image, _ = scene(256, 256, seed=2)
    holed = image.copy()
    holed[(slice(None), *BLOCK)] = 0
    write_tif(tmp_path / "in" / "clean.tif", image, nodata=0, gsd=10.0)
    write_tif(tmp_path / "in" / "holed.tif", holed, nodata=0, gsd=10.0)
    out = tmp_path / "out"
    for name in ("clean", "holed"):
        run(
            "predict",
            "--model",
            bundle,
            "--out",
            out,
            "--tile",
            256,
            "--confidence",
            "--probabilities",
            "--vector",
            "--workers",
            0,
            tmp_path / "in" / f"{name}.tif",
        )
    clean, holed_classes = read(out / "clean_classes.tif")[0], read(out / "holed_classes.tif")[0]
    valid = np.ones(clean.shape, bool)
    valid[BLOCK] = False
    assert (clean != 255).all()
    changed = float((clean != holed_classes)[valid].mean())
    assert changed < 0.02, f"{changed:.1%} of the valid pixels changed class"
    for suffix in ("classes", "confidence", "probabilities"):
        data = read(out / f"holed_{suffix}.tif")
        assert (data[(slice(None), *BLOCK)] == 255).all(), suffix
        assert (data[:, valid] != 255).all(), suffix
    polygons = pyogrio.read_dataframe(out / "holed.gpkg", layer="landcover")
    with rasterio.open(out / "holed_classes.tif") as src:
        left, top = src.transform * (BLOCK[1].start, BLOCK[0].start)
        right, bottom = src.transform * (BLOCK[1].stop, BLOCK[0].stop)
    hole = shapely.box(left, bottom, right, top)
    assert shapely.area(shapely.intersection(polygons.geometry.values, hole)).sum() == 0


def test_evaluate_scores_exactly_the_map_predict_writes_on_a_small_tile(
    tmp_path: Path, bundle: Path
) -> None:
    image, label = scene(200, 180, seed=3)  # smaller than the 512-px window and tile
    image[:, 150:, :40] = 0  # a nodata corner at the padded edge
    label[150:, :40] = 255
    write_tif(tmp_path / "images" / "small.tif", image, nodata=0, gsd=10.0)
    write_tif(tmp_path / "labels" / "small.tif", label, gsd=10.0)
    run(
        "evaluate",
        "--model",
        bundle,
        "--images",
        tmp_path / "images",
        "--labels",
        tmp_path / "labels",
        "--json",
        tmp_path / "scores.json",
        "--no-progress",
    )
    run(
        "predict",
        "--model",
        bundle,
        "--out",
        tmp_path / "out",
        "--workers",
        0,
        tmp_path / "images" / "small.tif",
    )
    evaluated = np.asarray(json.loads((tmp_path / "scores.json").read_text())["confusion"])
    predicted = read(tmp_path / "out" / "small_classes.tif")[0]
    keep = label != 255
    assert (predicted[~keep] == 255).all() and (predicted[keep] != 255).all()
    scored = np.bincount(label[keep].astype(np.int64) * 4 + predicted[keep], minlength=16)
    assert len(np.unique(predicted[keep])) > 1  # a real map, not one class everywhere
    np.testing.assert_array_equal(evaluated, scored.reshape(4, 4))
