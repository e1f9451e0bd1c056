"""Input scaling options and the ``--nodata`` override (issue 12, item 10).

A tiny model is trained by the scenario runner on generated 4-band uint16 tiles with
``normalization: fixed`` (÷ 10000) and ``clip_percentiles``; the bundle records the scaling and
the clip bounds, and ``evaluate`` scores exactly the map ``predict`` writes with them. A file
without a nodata tag gets one from ``--nodata``; bad values are refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from geociss.cli.main import cli
from geociss.config.experiment import DataConfig, ExperimentConfig
from geociss.data.normalise import input_columns, normalise
from geociss.engine.bundle import StepBundle
from geociss.engine.runner import ScenarioRunner

from fakes import THREE_CLASS_SCHEMA, write_tif

SIGNATURES = np.array(
    [[2500, 3000, 2000, 3500], [3500, 2500, 3000, 2000], [2000, 3500, 2500, 3000]], np.float64
)
SCHEMA = THREE_CLASS_SCHEMA


def scene(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 4-band uint16 image of 16-px class blocks (one spectral signature each), its labels."""
    rng = np.random.default_rng(seed)
    label = np.kron(rng.integers(0, 3, (size // 16, size // 16)), np.ones((16, 16), int))
    image = SIGNATURES[label].transpose(2, 0, 1) + rng.normal(0, 250, (4, size, size))
    return np.clip(image, 1, 65535).astype(np.uint16), label.astype(np.uint8)


def invoke(*args: object, code: int = 0) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture(autouse=True)
def _on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """float32 on the CPU in every command (a GPU's bf16 kernels differ in the last bits)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def experiment(root: Path, **data: object) -> ExperimentConfig:
    schema = root / "three.yaml"
    schema.write_text(json.dumps(SCHEMA))
    return ExperimentConfig.model_validate(
        {
            "name": "scaled",
            "out": str(root / "runs"),
            "data": {
                "images": str(root / "images"),
                "labels": str(root / "labels"),
                "schema": str(schema),
                "patch_size": 32,
                "batch_size": 4,
                "samples_per_epoch": 8,
                "num_workers": 0,
                "eval_tile": 64,
                "eval_overlap": 8,
                "val_fraction": 0.0,
                **data,
            },
            "model": {
                "encoder": "tiny",
                "weights": "none",
                "aspp_channels": 8,
                "norm": "group",
                "norm_groups": 4,
            },
            "scenario": {"steps": [["bare", "water", "crop"]]},
            "train": {"epochs": 1, "accelerator": "cpu"},
        }
    )


def test_fixed_scale_and_clip_are_stored_and_applied_alike_by_evaluate_and_predict(
    tmp_path: Path,
) -> None:
    for i in range(2):
        image, label = scene(64, seed=i)
        write_tif(tmp_path / "images" / f"t{i}.tif", image, gsd=10.0)
        write_tif(tmp_path / "labels" / f"t{i}.tif", label, gsd=10.0)
    cfg = experiment(tmp_path, normalization="fixed", scale=10000, clip_percentiles=[2, 98])
    ScenarioRunner(cfg, log=lambda _: None, progress=False).run()
    path = cfg.run_dir / "step0" / "bundle.safetensors"
    bundle = StepBundle.load(path)
    assert bundle.mean == [0.0] * 4 and bundle.std == [10000.0] * 4  # (x - 0) / 10000
    scaling = bundle.scaling
    assert scaling is not None and scaling.method == "fixed" and scaling.scale == [10000.0] * 4
    with (
        rasterio.open(tmp_path / "images" / "t0.tif") as a,
        rasterio.open(tmp_path / "images" / "t1.tif") as b,
    ):
        pixels = np.concatenate([a.read().reshape(4, -1), b.read().reshape(4, -1)], axis=1)
    assert scaling.clip is not None and scaling.clip_percentiles == [2.0, 98.0]
    np.testing.assert_allclose(scaling.clip[0], np.percentile(pixels, 2, axis=1), rtol=1e-6)
    np.testing.assert_allclose(scaling.clip[1], np.percentile(pixels, 98, axis=1), rtol=1e-6)
    assert json.loads(invoke("info", "--json", path))["scaling"]["method"] == "fixed"

    image, label = scene(96, seed=7)  # smaller than the 512-px window; clipped values in it
    image[:, 80:, :24] = 0  # nodata, declared by --nodata only (the file has no nodata tag)
    label[80:, :24] = 255
    write_tif(tmp_path / "test" / "images" / "small.tif", image, gsd=10.0)
    write_tif(tmp_path / "test" / "labels" / "small.tif", label, gsd=10.0)
    scores = tmp_path / "scores.json"
    invoke(
        "evaluate",
        "--model",
        path,
        "--images",
        tmp_path / "test" / "images",
        "--labels",
        tmp_path / "test" / "labels",
        "--nodata",
        0,
        "--json",
        scores,
        "--no-progress",
    )
    invoke(
        "predict",
        "--model",
        path,
        "--out",
        tmp_path / "out",
        "--workers",
        0,
        "--nodata",
        0,
        tmp_path / "test" / "images" / "small.tif",
    )
    with rasterio.open(tmp_path / "out" / "small_classes.tif") as src:
        predicted = src.read(1)
    keep = label != 255
    assert (predicted[~keep] == 255).all() and (predicted[keep] != 255).all()
    scored = np.bincount(label[keep].astype(np.int64) * 3 + predicted[keep], minlength=9)
    evaluated = np.asarray(json.loads(scores.read_text())["confusion"])
    np.testing.assert_array_equal(evaluated, scored.reshape(3, 3))


def test_normalise_clips_before_scaling_and_keeps_nan_invalid() -> None:
    x = torch.tensor([[-5.0, 0.5, 20.0, float("nan")]]).view(1, 1, 1, 4)
    m, inv, low, high = input_columns([1.0], [2.0], ([0.0], [10.0]))
    out = normalise(x, m, inv, low=low, high=high)
    assert out.flatten().tolist() == [-0.5, -0.25, 4.5, 0.0]


def test_nodata_override_makes_a_value_invalid_in_an_untagged_file(tmp_path: Path) -> None:
    image, label = scene(64, seed=3)
    image[:, :16, :16] = 0
    write_tif(tmp_path / "images" / "t.tif", image, gsd=10.0)
    write_tif(tmp_path / "labels" / "t.tif", label, gsd=10.0)
    schema = tmp_path / "three.yaml"
    schema.write_text(json.dumps(SCHEMA))
    args = ("scan", tmp_path / "images", tmp_path / "labels", "--schema", schema, "--no-cache")
    out = tmp_path / "scan.json"
    invoke(*args, "--json", out)
    assert json.loads(out.read_text())["ignored"] == 0
    invoke(*args, "--nodata", 0, "--json", out)
    assert json.loads(out.read_text())["ignored"] == 16 * 16


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"normalization": "fixed"}, "fixed needs data.scale"),
        ({"scale": 10000}, "need data.normalization: fixed"),
        ({"normalization": "fixed", "scale": 0}, "data.scale must be above 0"),
        ({"clip_percentiles": [98, 2]}, "0 <= low < high <= 100"),
        ({"clip_percentiles": [2]}, "0 <= low < high <= 100"),
    ],
)
def test_bad_scaling_values_are_refused_in_one_line(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        DataConfig.model_validate({"images": "i", "labels": "l", **data})
    assert message in str(err.value)


def test_a_scale_list_of_the_wrong_length_is_one_line(tmp_path: Path) -> None:
    image, label = scene(32, seed=4)
    write_tif(tmp_path / "images" / "t.tif", image, gsd=10.0)
    write_tif(tmp_path / "labels" / "t.tif", label, gsd=10.0)
    cfg = experiment(tmp_path, normalization="fixed", scale=[1, 2])
    with pytest.raises(Exception, match=r"data.scale has 2 values for 4 band\(s\)") as err:
        ScenarioRunner(cfg, log=lambda _: None, progress=False).run()
    assert "\n" not in str(err.value)
