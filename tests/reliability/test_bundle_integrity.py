"""Damaged bundles and unusable normalisation are refused in one line; old bundles still load."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

from geociss.cli.main import cli
from geociss.engine.bundle import StepBundle
from geociss.errors import DataError

from fakes import tiny_isprs_bundle, write_tif

DAMAGED = "the weights do not match their checksum: the file is damaged"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "300"})


def one_line_error(res, exit_code=2):
    """The error line of a CLI result that failed with ``exit_code`` (and no traceback)."""
    assert res.exit_code == exit_code, res.output
    assert "Traceback" not in res.output, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.output
    return lines[0]


def flip_weight_bytes(path, count=4):
    """Invert ``count`` bytes in the middle of the last tensor's data (the header stays valid)."""
    data = bytearray(path.read_bytes())
    middle = len(data) - 64
    for i in range(middle, middle + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def rewrite_metadata(path, target, change):
    """Copy the bundle at ``path`` to ``target`` with its geociss metadata passed through
    ``change`` (the tensors are copied unchanged)."""
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    payload = json.loads(meta["geociss"])
    change(payload)
    meta["geociss"] = json.dumps(payload)
    save_file(tensors, str(target), metadata=meta)
    return target


@pytest.fixture
def saved(tmp_path):
    return tiny_isprs_bundle().save(tmp_path / "model.safetensors")


def test_a_bundle_records_the_checksum_of_its_tensors(saved):
    with safe_open(str(saved), framework="pt") as f:
        meta = json.loads(f.metadata()["geociss"])
    assert len(meta["tensors_sha256"]) == 64
    bundle = StepBundle.load(saved)
    assert bundle.tensors_sha256 == meta["tensors_sha256"]
    again = bundle.save(saved.with_name("again.safetensors"))
    assert StepBundle.load(again).tensors_sha256 == meta["tensors_sha256"]  # stable


def test_flipped_weight_bytes_are_refused_in_one_line(saved, tmp_path):
    flip_weight_bytes(saved)
    with pytest.raises(DataError, match=DAMAGED) as err:
        StepBundle.load(saved)
    assert str(err.value) == f"{saved}: {DAMAGED}"

    assert one_line_error(run("info", saved)) == f"error: {saved}: {DAMAGED}"
    image = write_tif(tmp_path / "in.tif", np.zeros((3, 32, 32), np.uint8))
    res = run("predict", "--model", saved, "--out", tmp_path / "out", image, "--workers", 0)
    assert one_line_error(res) == f"error: {saved}: {DAMAGED}"
    assert not (tmp_path / "out" / "in_classes.tif").exists()


def test_a_bundle_without_checksum_still_loads(saved, tmp_path):
    old = rewrite_metadata(saved, tmp_path / "old.safetensors", lambda m: m.pop("tensors_sha256"))
    bundle = StepBundle.load(old)
    assert bundle.tensors_sha256 is None
    reference = StepBundle.load(saved)
    for key, value in reference.state_dict.items():
        assert torch.equal(bundle.state_dict[key], value), key
    assert run("info", old).exit_code == 0


@pytest.mark.parametrize(
    ("field", "values", "problem"),
    [
        ("std", [60.0, 0.0, 60.0], "normalisation std of band 2 is 0.0 (must be above 0)"),
        ("std", [60.0, 60.0, -1.0], "normalisation std of band 3 is -1.0 (must be above 0)"),
        ("mean", [math.nan, 1.0, 1.0], "normalisation mean of band 1 is nan (must be finite)"),
        ("std", [60.0, math.inf, 60.0], "normalisation std of band 2 is inf (must be finite)"),
    ],
)
def test_unusable_normalisation_in_a_bundle_is_refused(saved, tmp_path, field, values, problem):
    def change(meta):
        meta["normalization"][field] = values

    bad = rewrite_metadata(saved, tmp_path / "bad.safetensors", change)
    expected = f"{bad}: {problem}; the bundle cannot normalise its input"
    with pytest.raises(DataError) as err:
        StepBundle.load(bad)
    assert str(err.value) == expected
    assert one_line_error(run("info", bad)) == f"error: {expected}"
    image = write_tif(tmp_path / "in.tif", np.zeros((3, 32, 32), np.uint8))
    res = run("predict", "--model", bad, "--out", tmp_path / "out", image, "--workers", 0)
    assert one_line_error(res) == f"error: {expected}"


def test_a_wrong_number_of_statistics_is_refused(saved, tmp_path):
    def change(meta):
        meta["normalization"]["std"] = [60.0, 60.0]

    bad = rewrite_metadata(saved, tmp_path / "bad.safetensors", change)
    line = one_line_error(run("info", bad))
    assert line.startswith(f"error: {bad}: ") and "std has 2 entries for 3 input bands" in line


def nan_tiles(root, n=3, size=48):
    """Float images that are NaN (their nodata) everywhere, with valid label rasters."""
    rng = np.random.default_rng(0)
    for i in range(n):
        image = np.full((3, size, size), np.nan, np.float32)
        write_tif(root / "images" / f"t{i}.tif", image, nodata=math.nan)
        write_tif(root / "labels" / f"t{i}.tif", rng.integers(0, 2, (size, size), np.uint8) * 2)
    return root


def test_training_on_all_nodata_tiles_is_one_line(tmp_path):
    root = nan_tiles(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"name: nan\nout: {tmp_path / 'runs'}\n"
        f"data: {{images: {root / 'images'}, labels: {root / 'labels'}, val_fraction: 0}}\n"
        "model: {encoder: tiny, weights: none}\n"
        "scenario: {task: 2-3, unlearned: [clutter]}\n"
    )
    line = one_line_error(run("train", config, "--no-progress"))
    assert line.startswith(f"error: {root / 'images'}: no valid pixels in the training tile(s) ")
    assert "t0.tif, t1.tif, t2.tif (all nodata, NaN or masked)" in line


def test_extending_on_all_nodata_tiles_is_one_line(tmp_path):
    root = nan_tiles(tmp_path)
    model = tiny_isprs_bundle().save(tmp_path / "model.safetensors")
    res = run(
        "extend", "--model", model, "--images", root / "images", "--labels", root / "labels",
        "--new-classes", "solar panel", "--label-values", "2", "--method", "finetune",
        "--out", tmp_path / "new.safetensors",
        "--epochs", 1, "--num-workers", 0, "--device", "cpu", "--no-progress",
    )  # fmt: skip
    line = one_line_error(res)
    assert line.startswith(f"error: {root / 'images'}: no valid pixels in the training tile(s)")


def test_normalisation_computed_from_infinite_values_is_refused(tmp_path):
    from geociss.config.experiment import DataConfig
    from geociss.data.classes import ClassSchema
    from geociss.engine.data import ExperimentData

    image = np.ones((3, 32, 32), np.float32)
    image[1, 0, 0] = np.inf
    for i in range(2):
        write_tif(tmp_path / "images" / f"t{i}.tif", image)
        write_tif(tmp_path / "labels" / f"t{i}.tif", np.zeros((32, 32), np.uint8))
    cfg = DataConfig(images=tmp_path / "images", labels=tmp_path / "labels", val_fraction=0)
    with pytest.raises(DataError) as err:
        ExperimentData.load(cfg, ClassSchema.preset("isprs"))
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'images'}: normalisation mean of band 2 is inf")
    assert "computed from the training tile(s) t0.tif, t1.tif" in message
    assert "\n" not in message
