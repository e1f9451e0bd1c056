"""The bundle records the training nodata value; inputs without a nodata tag get it by default.

A tiny model trained with ``data.nodata: 0`` on untagged 4-band uint16 tiles records 0 in its
scaling. ``predict`` and ``evaluate`` then treat the zeros of a new untagged image as nodata
without ``--nodata``; ``--nodata`` and a nodata tag in the file still win; ``extend`` reads the
new images with it. Bundles of earlier versions (no ``nodata`` in the record) have none.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from geociss.cli.main import cli
from geociss.config.experiment import DataConfig, ExperimentConfig, MethodConfig, TrainConfig
from geociss.data.records import TileRecord
from geociss.data.scaling import Scaling, shared_nodata, with_nodata
from geociss.engine.bundle import StepBundle
from geociss.engine.increment import ExtendRequest, _data_config
from geociss.engine.runner import ScenarioRunner

from fakes import THREE_CLASS_SCHEMA, write_tif

SIGNATURES = np.array([[2500, 3000, 2000, 3500], [600, 500, 300, 150], [400, 700, 350, 3500]])
SCHEMA = THREE_CLASS_SCHEMA
BLOCK = (slice(8, 40), slice(16, 48))
"""The nodata block (0 in every band) of the new image."""


def scene(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 4-band uint16 image of 16-px class blocks (one spectral signature each), its labels."""
    rng = np.random.default_rng(seed)
    label = np.kron(rng.integers(0, 3, (size // 16, size // 16)), np.ones((16, 16), int))
    image = SIGNATURES[label].transpose(2, 0, 1) + rng.normal(0, 100, (4, size, size))
    return np.clip(image, 1, 65535).astype(np.uint16), label.astype(np.uint8)


def invoke(*args: object) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(autouse=True)
def _on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(bundle trained with data.nodata 0 on untagged tiles, folder of a new untagged image)."""
    root = tmp_path_factory.mktemp("nodata")
    for i in range(2):
        image, label = scene(64, seed=i)
        image[:, :8, :8] = 0  # nodata in training too (declared by data.nodata)
        write_tif(root / "images" / f"t{i}.tif", image, gsd=10.0)
        write_tif(root / "labels" / f"t{i}.tif", label, gsd=10.0)
    (root / "three.yaml").write_text(json.dumps(SCHEMA))
    cfg = ExperimentConfig.model_validate(
        {
            "name": "untagged",
            "out": str(root / "runs"),
            "data": {
                "images": str(root / "images"), "labels": str(root / "labels"),
                "schema": str(root / "three.yaml"), "nodata": 0, "patch_size": 32,
                "batch_size": 4, "samples_per_epoch": 8, "num_workers": 0, "eval_tile": 64,
                "eval_overlap": 8, "val_fraction": 0.0,
            },
            "model": {
                "encoder": "tiny", "weights": "none", "aspp_channels": 8, "norm": "group",
                "norm_groups": 4,
            },
            "scenario": {"steps": [["bare", "water", "crop"]]},
            "train": {"epochs": 1, "accelerator": "cpu"},
        }
    )  # fmt: skip
    ScenarioRunner(cfg, log=lambda _: None, progress=False).run()
    image, label = scene(64, seed=7)
    image[(slice(None), *BLOCK)] = 0  # untagged: nodata only by the bundle's record
    write_tif(root / "new" / "images" / "new.tif", image, gsd=10.0)
    write_tif(root / "new" / "labels" / "new.tif", label, gsd=10.0)
    return cfg.run_dir / "step0" / "bundle.safetensors", root / "new"


def predicted(bundle: Path, new: Path, out: Path, *options: object) -> np.ndarray:
    invoke("predict", "--model", bundle, "--out", out, "--workers", 0, *options, new / "images")
    with rasterio.open(out / "new_classes.tif") as src:
        return src.read(1)


def test_the_bundle_records_the_training_nodata_value(trained: tuple[Path, Path]) -> None:
    bundle, _ = trained
    scaling = StepBundle.load(bundle).scaling
    assert scaling is not None and scaling.nodata == 0.0
    assert json.loads(invoke("info", "--json", bundle))["scaling"]["nodata"] == 0.0
    assert "nodata 0 in files without a nodata tag" in invoke("info", bundle)


def test_predict_uses_it_for_an_untagged_input(trained: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, new = trained
    block = np.zeros((64, 64), dtype=bool)
    block[BLOCK] = True
    classes = predicted(bundle, new, tmp_path / "default")
    assert (classes[block] == 255).all() and (classes[~block] != 255).all()
    # --nodata wins over the bundle's value: 1 never occurs, so every pixel is mapped
    assert (predicted(bundle, new, tmp_path / "override", "--nodata", 1) != 255).all()


def test_evaluate_leaves_the_untagged_nodata_out(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, new = trained
    scores = tmp_path / "scores.json"
    args = ("--model", bundle, "--images", new / "images", "--labels", new / "labels")
    invoke("evaluate", *args, "--json", scores, "--no-progress")
    confusion = np.asarray(json.loads(scores.read_text())["confusion"])
    assert confusion.sum() == 64 * 64 - 32 * 32  # the block's labels are not scored


def test_a_tag_in_the_file_wins(trained: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, new = trained
    with rasterio.open(new / "images" / "new.tif") as src:
        image = src.read()
    write_tif(tmp_path / "tagged" / "images" / "new.tif", image, gsd=10.0, nodata=65535)
    assert (predicted(bundle, tmp_path / "tagged", tmp_path / "out") != 255).all()


def test_extend_reads_new_images_with_it(trained: tuple[Path, Path]) -> None:
    bundle_path, new = trained
    bundle = StepBundle.load(bundle_path)
    data = DataConfig(images=new / "images", labels=new / "labels")
    req = ExtendRequest(
        model=bundle_path, out=new / "x.safetensors", new_classes=["road"], data=data,
        train=TrainConfig(), method=MethodConfig(name="mib"),
    )  # fmt: skip
    assert _data_config(req, bundle).nodata == 0.0
    req.data = data.model_copy(update={"nodata": 7.0})
    assert _data_config(req, bundle).nodata == 7.0  # --nodata wins


def test_records_without_nodata_load_as_none() -> None:
    old = {"method": "bands", "offset": None, "scale": None, "clip_percentiles": None,
           "clip_low": None, "clip_high": None}  # fmt: skip
    scaling = Scaling.from_dict(old)
    assert scaling is not None and scaling.nodata is None
    assert Scaling.from_dict({**old, "nodata": 0}) == Scaling(nodata=0.0)
    # extend keeps its input's scaling, with the new tiles' nodata when the input has none
    assert with_nodata(None, None) is None
    assert with_nodata(None, 0.0) == Scaling(nodata=0.0)
    assert with_nodata(Scaling(nodata=5.0), 0.0) == Scaling(nodata=5.0)


def test_only_a_value_every_training_tile_shares_is_recorded() -> None:
    def tiles(*values: float | None) -> list[TileRecord]:
        return [SimpleNamespace(nodata=v) for v in values]  # type: ignore[misc]

    assert shared_nodata(tiles(0.0, 0.0)) == 0.0
    assert shared_nodata(tiles(0.0, None)) is None
    assert shared_nodata(tiles(0.0, 1.0)) is None
    assert shared_nodata(tiles(float("nan"))) is None
    assert shared_nodata(tiles(None)) is None
