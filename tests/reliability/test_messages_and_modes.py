"""Small things: file modes of bundles, one-line messages for folders, truncated TIFFs, weights."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from geociss.cli.main import cli
from geociss.engine.bundle import StepBundle
from geociss.errors import error_detail, state_dict_mismatch
from geociss.io import atomic_write_bytes

from fakes import tiny_isprs_bundle, write_tif


def tiny_bundle() -> StepBundle:
    return tiny_isprs_bundle()


@pytest.fixture
def umask():
    """Run with umask 027 (a shared group machine), restored afterwards."""
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def test_bundles_and_other_outputs_honour_the_umask(tmp_path, umask):
    bundle = tiny_bundle().save(tmp_path / "step0.safetensors")  # safetensors writes 0600
    atomic_write_bytes(tmp_path / "blob.bin", b"x")
    for path in (bundle, tmp_path / "blob.bin"):
        assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~umask), path.name
    os.umask(0o022)
    bundle = tiny_bundle().save(tmp_path / "again.safetensors")
    assert oct(bundle.stat().st_mode & 0o777) == oct(0o644)


def test_a_config_path_that_is_a_folder_says_so(tmp_path):
    res = CliRunner().invoke(cli, ["train", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert res.output.strip() == f"error: {tmp_path}: is a folder, not a YAML file"


def truncated_tif(path):
    image = np.random.default_rng(0).integers(0, 256, (3, 128, 128), dtype=np.uint8)
    write_tif(path, image)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_truncated_tiff_names_gdals_reason(tmp_path):
    truncated_tif(tmp_path / "images" / "a.tif")
    write_tif(tmp_path / "labels" / "a.tif", np.zeros((128, 128), np.uint8))
    res = CliRunner().invoke(cli, ["scan", str(tmp_path / "images"), str(tmp_path / "labels"),
                                   "--no-cache"])
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert "\n" not in line and "a.tif: cannot read (corrupt or truncated file?)" in line
    assert "See previous exception" not in line
    assert "TIFFReadEncodedTile() failed" in line and "Read error" in line


def test_error_detail_walks_the_causes():
    try:
        try:
            try:
                raise OSError("TIFFFillTile: got 10 bytes, expected 20")
            except OSError as root:
                raise ValueError("band 1: IReadBlock failed") from root
        except ValueError as mid:
            raise RuntimeError("Read failed. See previous exception for details.") from mid
    except RuntimeError as err:
        assert error_detail(err) == (
            "band 1: IReadBlock failed: TIFFFillTile: got 10 bytes, expected 20"
        )
    assert error_detail(OSError()) == "OSError"


def test_weights_mismatch_is_one_clean_line():
    model = torch.nn.Sequential(*[torch.nn.Linear(3, 3) for _ in range(6)])
    state = model.state_dict()
    state["0.weight"] = torch.zeros(5, 3)
    state["extra.weight"] = torch.zeros(1)
    for i in range(1, 6):
        del state[f"{i}.bias"]
    with pytest.raises(RuntimeError) as info:
        model.load_state_dict(state)
    assert "\t" in str(info.value) and "\n" in str(info.value)  # what torch says
    text = state_dict_mismatch(info.value)
    assert text == (
        "5 missing (1.bias, 2.bias, 3.bias, and 2 more); 1 unexpected (extra.weight); "
        "1 of another shape (0.weight: [5, 3] in the file, [3, 3] in the model)"
    )


def test_a_bundle_path_that_is_a_folder_says_so(tmp_path):
    res = CliRunner().invoke(cli, ["info", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert "is a folder, not a step bundle (give its .safetensors file)" in res.output


def test_a_bundle_with_tampered_weights_is_one_clean_line(tmp_path):
    bundle = tiny_bundle()
    key = next(k for k in bundle.state_dict if k.endswith("weight"))
    bundle.state_dict[key] = torch.zeros(1, 1, 1, 1)
    path = bundle.save(tmp_path / "bad.safetensors")
    from geociss.errors import DataError

    with pytest.raises(DataError) as info:
        StepBundle.load(path).build_model()
    text = str(info.value)
    assert "\n" not in text and "\t" not in text
    assert f"1 of another shape ({key}: [1, 1, 1, 1] in the file" in text


def test_a_run_name_of_only_dots_fails_validation():
    from pydantic import ValidationError

    from geociss.config.experiment import ExperimentConfig

    base = {"data": {"images": "i", "labels": "l"}, "scenario": {"task": "4-1"}}
    with pytest.raises(ValidationError):
        ExperimentConfig.model_validate({**base, "name": ".."})
    assert ExperimentConfig.model_validate({**base, "name": "a..b"}).name == "a..b"
