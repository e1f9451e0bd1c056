"""Your own multi-band imagery: ``model.in_channels`` follows the data, ``extend`` keeps the bands.

A folder of 4-band uint16 tiles (generated here) goes through ``geociss train`` with the tiny
encoder of ``configs/models/tiny.yaml`` (no ``model.in_channels``), with a ``data.bands``
selection, and then through ``geociss extend`` with the bundle's band selection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from geociss.cli.main import cli
from geociss.engine.bundle import StepBundle

from fakes import LANDCOVER_4_SCHEMA, write_tif

TINY = Path(__file__).resolve().parents[2] / "configs" / "models" / "tiny.yaml"
SCHEMA = LANDCOVER_4_SCHEMA


def run(*args: object) -> object:
    """``geociss ARGS`` in-process; the result holds exit code and output."""
    return CliRunner().invoke(cli, [*map(str, args)], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 64-px 4-band uint16 tiles labelled with the raw codes of the 4-class schema."""
    root = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(0)
    for i in range(4):
        blocks = rng.choice([1, 2, 3, 5], size=(4, 4)).astype(np.uint8)
        blocks[0, 0], blocks[-1, -1] = 5, 2  # every tile holds built-up and water
        label = np.kron(blocks, np.ones((16, 16), dtype=np.uint8))
        code = label.astype(np.int64)
        image = np.stack([code * 300, 3000 - code * 200, (code % 2) * 900, code * 100 + 50])
        image = (image + rng.integers(0, 60, image.shape)).astype(np.uint16)
        write_tif(root / "images" / f"t{i}.tif", image)
        write_tif(root / "labels" / f"t{i}.tif", label)
    (root / "classes.yaml").write_text(yaml.safe_dump(SCHEMA, sort_keys=False))
    return root


def experiment(root: Path, name: str, **model: object) -> Path:
    """An experiment file on the tiles: tiny encoder, step 0 learns other, water, forest."""
    cfg = {
        "include": [str(TINY)],
        "name": name,
        "out": str(root / "runs"),
        "data": {
            "images": str(root / "images"),
            "labels": str(root / "labels"),
            "schema": str(root / "classes.yaml"),
            "patch_size": 32,
            "batch_size": 2,
            "samples_per_epoch": 4,
            "num_workers": 0,
            "eval_tile": 64,
            "eval_overlap": 0,
        },
        "scenario": {"steps": [["other", "water", "forest"]], "unlearned": ["built-up"]},
        "train": {"epochs": 1, "accelerator": "cpu", "channels_last": False},
    }
    if model:
        cfg["model"] = model
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_in_channels_follows_the_bands_of_the_data(tiles: Path) -> None:
    res = run("train", experiment(tiles, "all-bands"), "--no-progress")
    assert res.exit_code == 0, res.output
    bundle = StepBundle.load(tiles / "runs" / "all-bands" / "step0" / "bundle.safetensors")
    assert bundle.model_config.in_channels == 4
    assert list(bundle.bands) == ["band 1", "band 2", "band 3", "band 4"]
    written = yaml.safe_load((tiles / "runs" / "all-bands" / "config.yaml").read_text())
    assert written["model"]["in_channels"] == 4


def test_wrong_in_channels_is_one_line_before_training(tiles: Path) -> None:
    res = run("train", experiment(tiles, "wrong", in_channels=3), "--no-progress")
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    assert "Traceback" not in res.output
    for text in ("model.in_channels", "3", "4 band(s)", str(tiles / "images")):
        assert text in lines[0]
    assert not (tiles / "runs" / "wrong" / "step0").exists()


def test_band_selection_trains_and_extends(tiles: Path) -> None:
    cfg = experiment(tiles, "three-bands")
    res = run("train", cfg, "--set", "data.bands=[2,3,4]", "--no-progress")
    assert res.exit_code == 0, res.output
    model = tiles / "runs" / "three-bands" / "step0" / "bundle.safetensors"
    bundle = StepBundle.load(model)
    assert bundle.model_config.in_channels == 3
    assert list(bundle.bands) == ["band 2", "band 3", "band 4"]
    out = tiles / "built-up.safetensors"
    res = run(
        "extend", "--model", model, "--images", tiles / "images", "--labels", tiles / "labels",
        "--full-labels", "--label-values", "5", "--new-classes", "built-up",
        "--method", "finetune", "--epochs", 1, "--batch-size", 2, "--patch-size", 32,
        "--samples-per-epoch", 4, "--num-workers", 0, "--eval-tile", 64, "--eval-overlap", 0,
        "--device", "cpu", "--no-progress", "--out", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    extended = StepBundle.load(out)
    assert extended.channel_names == ["other", "water", "forest", "built-up"]
    assert list(extended.bands) == ["band 2", "band 3", "band 4"]
    assert extended.model_config.in_channels == 3
