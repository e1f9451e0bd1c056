"""``geociss predict``: outputs of a real bundle, summary and exit status, dry-run, errors."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from geociss.cli.main import cli
from geociss.data.classes import ClassSchema
from geociss.engine.bundle import StepBundle, StepRecord
from geociss.models import ModelConfig, SegmentationModel

from fakes import write_tif


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    config = ModelConfig(encoder="tiny", weights="none", aspp_channels=16)
    model = SegmentationModel(config, [3]).eval()
    steps = [StepRecord([0, 1, 2], method="joint")]
    b = StepBundle.from_model(model, schema=ClassSchema.preset("isprs"), steps=steps,
                              mean=[120.0] * 3, std=[60.0] * 3, bands=["red", "green", "blue"])
    return b.save(tmp_path_factory.mktemp("bundle") / "step0.safetensors")


def run(*args):
    return CliRunner().invoke(cli, ["predict", *map(str, args)])


def _image(seed, bands=3, size=(90, 110)):
    return np.random.default_rng(seed).integers(0, 256, (bands, *size), dtype=np.uint8)


def test_predict_writes_styled_outputs_and_fails_bad_inputs_at_the_end(tmp_path, bundle):
    for i in range(2):
        write_tif(tmp_path / "in" / f"t{i}.tif", _image(i))
    write_tif(tmp_path / "in" / "rgbn.tif", _image(3, bands=5))
    out = tmp_path / "out"
    res = run("--model", bundle, "--out", out, tmp_path / "in", "--tile", 64, "--overlap", 16,
              "--workers", 0, "--confidence", "--probabilities", "--vector")
    assert res.exit_code == 2, res.output
    assert "error: 1 of 3 input(s) failed" in res.output
    assert "rgbn.tif: has 5 image band(s); the model expects 3 (red, green, blue)" in res.output
    assert "Traceback" not in res.output
    for stem in ("t0", "t1"):
        for suffix in ("_classes.tif", "_classes.qml", "_classes.tif.aux.xml",
                       "_confidence.tif", "_probabilities.tif", ".gpkg"):
            assert (out / f"{stem}{suffix}").is_file(), stem + suffix
    source = tmp_path / "in" / "t0.tif"
    with rasterio.open(out / "t0_classes.tif") as src, rasterio.open(source) as ref:
        assert (src.width, src.height, src.transform, src.crs) == (
            ref.width, ref.height, ref.transform, ref.crs)
        classes = src.read(1)
        assert classes.max() <= 2 and src.colormap(1)[1][:3] == (0, 0, 255)
    with rasterio.open(out / "t0_probabilities.tif") as src:
        assert src.count == 3 and src.descriptions == ("impervious surfaces", "building",
                                                         "low vegetation")
    again = run("--model", bundle, "--out", out, tmp_path / "in" / "t0.tif", "--tile", 64,
                "--overlap", 16, "--workers", 0, "--confidence", "--probabilities", "--vector")
    assert again.exit_code == 0 and "skipped" in again.output


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, bundle):
    src = write_tif(tmp_path / "a.tif", _image(0, size=(700, 300)))
    res = run("--model", bundle, "--out", tmp_path / "out", src, "--dry-run", "--tile", 256,
              "--overlap", 64, "--tta", "d4")
    assert res.exit_code == 0, res.output
    assert "300 x 700 px" in res.output and "4 x 2 = 8 tiles" in res.output
    assert "TTA d4 (8 forward pass(es) per tile)" in res.output
    assert "row-band buffer" in res.output and "accelerator memory" in res.output
    assert not (tmp_path / "out").exists()


def test_user_errors_are_one_line(tmp_path, bundle):
    src = write_tif(tmp_path / "a.tif", _image(0))
    res = run("--model", tmp_path / "none.safetensors", "--out", tmp_path / "out", src)
    assert res.exit_code == 2 and "step bundle not found" in res.output
    res = run("--model", bundle, "--out", tmp_path / "out", src, "--overlap", 600)
    assert res.exit_code == 2 and "overlap must be between" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert "Traceback" not in res.output
    res = run("--model", bundle, "--out", tmp_path / "out", src, "--batch-size", "many")
    assert res.exit_code == 2 and "auto" in res.output
