"""``geociss extend``: a full run through the CLI, then ``info``/``evaluate``; one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from geociss.cli.main import cli
from geociss.data.classes import ClassSchema
from geociss.engine.bundle import StepBundle, StepRecord
from geociss.models.config import ModelConfig
from geociss.models.segmenter import SegmentationModel

from fakes import write_tif


def run(*args):
    return CliRunner().invoke(cli, [*map(str, args)], env={"COLUMNS": "200"})


def make_bundle(path, in_channels=3):
    torch.manual_seed(0)
    schema = ClassSchema.from_dict(
        {
            "name": "base",
            "background": "road",
            "classes": [
                {"id": 0, "name": "road", "color": "#ffffff"},
                {"id": 1, "name": "building", "color": "#0000ff"},
                {"id": 2, "name": "tree", "color": "#00ff00"},
            ],
        }
    )
    cfg = ModelConfig(
        encoder="tiny",
        weights="none",
        aspp_channels=16,
        norm="group",
        norm_groups=4,
        in_channels=in_channels,
    )
    bundle = StepBundle.from_model(
        SegmentationModel(cfg, [3]),
        schema=schema,
        steps=[StepRecord([0, 1, 2], "finetune")],
        mean=[120.0] * in_channels,
        std=[60.0] * in_channels,
        gsd=0.09,
        bands=[f"band {b}" for b in range(1, in_channels + 1)],
    )
    return bundle.save(path)


def tiles(root, values, n=3, size=48):
    """Images plus labels whose blocks hold ``values`` (rows of 8-px blocks)."""
    rng = np.random.default_rng(3)
    for i in range(n):
        write_tif(root / "images" / f"t{i}.tif", rng.integers(0, 256, (3, size, size), np.uint8))
        blocks = np.asarray(values, np.uint8)[rng.integers(0, len(values), (size // 8, size // 8))]
        blocks[0, 0], blocks[-1, -1] = values[-2], values[-1]
        write_tif(root / "labels" / f"t{i}.tif", np.kron(blocks, np.ones((8, 8), np.uint8)))
    return root


FAST = [
    "--method",
    "finetune",
    "--epochs",
    1,
    "--batch-size",
    2,
    "--patch-size",
    32,
    "--samples-per-epoch",
    2,
    "--num-workers",
    0,
    "--eval-tile",
    48,
    "--eval-overlap",
    0,
    "--device",
    "cpu",
    "--no-progress",
]


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    root = tiles(tmp_path_factory.mktemp("new"), [0, 7, 9])
    model = make_bundle(root / "base.safetensors")
    out = root / "out.safetensors"
    res = run(
        "extend",
        "--model",
        model,
        "--images",
        root / "images",
        "--labels",
        root / "labels",
        "--new-classes",
        "car, solar panel",
        "--label-values",
        "7,9",
        "--colors",
        "#ff00ff,#ffff00",
        "--param",
        "ce_reduction=all",
        "--out",
        out,
        *FAST,
    )
    return root, model, out, res


def test_extend_runs_and_reports(extended):
    _, _, out, res = extended
    assert res.exit_code == 0, res.output
    for text in (
        "new classes vs rest on held-out tiles",
        "car",
        "solar panel",
        "old classes: kept from the input model",
        "agreement with the input model, not accuracy",
        f"wrote {out}",
    ):
        assert text in res.output
    bundle = StepBundle.load(out)
    assert bundle.channel_names == ["road", "building", "tree", "car", "solar panel"]
    assert bundle.steps[1].info["label_values"] == [7, 9]
    assert bundle.steps[1].info["params"] == {"ce_reduction": "all"}


def test_info_and_evaluate_show_the_new_step(extended, tmp_path):
    _, _, out, _ = extended
    info = run("info", out, "--json")
    assert info.exit_code == 0, info.output
    steps = json.loads(info.output)["steps"]
    assert [s["classes"] for s in steps] == [["road", "building", "tree"], ["car", "solar panel"]]
    assert steps[1]["method"] == "finetune" and steps[1]["miou_old"] is None
    # the step's score is new classes vs rest: it must not pass for an all-class mIoU
    assert steps[1]["miou_all"] is None and steps[1]["miou_new"] is not None
    assert "vs rest" in steps[1]["scope"] and steps[0]["scope"] is None
    assert len(steps[1]["retention"]["classes"]) == 3
    text = run("info", out)
    assert "step 1 scored on: new classes vs rest" in " ".join(text.output.split())
    assert "old classes kept" in text.output
    full = tiles(tmp_path, [0, 1, 2, 3, 4], n=1)  # labelled for every class of the new model
    res = run(
        "evaluate",
        "--model",
        out,
        "--images",
        full / "images",
        "--labels",
        full / "labels",
        "--tile",
        48,
        "--overlap",
        0,
        "--json",
        tmp_path / "s.json",
        "--no-progress",
    )
    assert res.exit_code == 0, res.output
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["old_channels"] == [0, 1, 2] and scores["new_channels"] == [3, 4]
    assert sum(map(sum, scores["confusion"])) == 48 * 48


def test_existing_output_is_refused_in_one_line(extended):
    root, model, out, _ = extended
    before = out.read_bytes()
    res = run(
        "extend",
        "--model",
        model,
        "--images",
        root / "images",
        "--labels",
        root / "labels",
        "--new-classes",
        "car",
        "--out",
        out,
        *FAST,
    )
    assert res.exit_code == 2
    assert res.stderr.strip() == f"error: {out}: already exists; pass --overwrite to replace it"
    assert out.read_bytes() == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--new-classes", "Tree,pool"], "Tree already in the model"),
        (["--label-values", "a"], "is not a list of integers"),
        (["--label-values", "7"], "--label-values gives 1 value(s) for 2 classes"),
        (["--method", "nope"], "unknown method 'nope'"),
        (["--param", "oops"], "--param 'oops': expected key=value"),
        (["--param", "nope=1"], "method finetune: params: nope"),
        (["--patch-size", "4"], "patch_size"),
        (["--colors", "#ff0000,"], "empty item"),
        (["--colors", "#ff0000,blue"], "invalid colour 'blue'"),
        (["--label-values", "7,8"], "t0.tif: unknown label value(s) 9; new-class labels hold"),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, extra, message):
    root = tiles(tmp_path, [0, 7, 9], n=2)
    model = make_bundle(tmp_path / "m.safetensors")
    args = [
        "extend",
        "--model",
        model,
        "--images",
        root / "images",
        "--labels",
        root / "labels",
        "--out",
        tmp_path / "o.safetensors",
        "--new-classes",
        "car,pool",
        "--label-values",
        "7,9",
        *FAST,
        *extra,
    ]
    res = run(*args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert not (tmp_path / "o.safetensors").exists()


def test_missing_model_and_band_mismatch(tmp_path):
    root = tiles(tmp_path, [0, 1, 2], n=2)
    common = [
        "--images",
        root / "images",
        "--labels",
        root / "labels",
        "--new-classes",
        "car,pool",
        "--out",
        tmp_path / "o.safetensors",
        *FAST,
    ]
    res = run("extend", "--model", tmp_path / "none.safetensors", *common)
    assert res.exit_code == 2 and "step bundle not found" in res.stderr
    res = run("extend", "--model", make_bundle(tmp_path / "m4.safetensors", 4), *common)
    assert res.exit_code == 2
    assert "t0.tif: has 3 image band(s) but the model m4.safetensors takes 4" in res.stderr


def test_info_shows_where_the_initial_weights_came_from(extended):
    _, _, out, _ = extended
    info = run("info", out, "--json")
    assert json.loads(info.output)["weights_origin"] == {"source": "none"}
    text = run("info", out)
    assert "initial encoder weights: none (trained from random initialisation)" in text.output


def test_nodata_declares_invalid_pixels_of_untagged_images(tmp_path):
    root = tiles(tmp_path, [0, 7, 9], n=3)
    import rasterio

    for path in (root / "images").glob("*.tif"):  # files without a nodata tag
        with rasterio.open(path, "r+") as dst:
            image = dst.read()
            image[:, :16, :16] = 0
            dst.write(image)
    model = make_bundle(tmp_path / "m.safetensors")
    scored = {}
    for extra in ([], ["--nodata", "0"]):
        out = tmp_path / f"o{len(extra)}.safetensors"
        args = ["extend", "--model", model, "--images", root / "images", "--labels",
                root / "labels", "--out", out, "--new-classes", "car,pool",
                "--label-values", "7,9", *FAST, *extra]  # fmt: skip
        res = run(*args)
        assert res.exit_code == 0, res.output
        scored[len(extra)] = np.asarray(StepBundle.load(out).steps[1].metrics["confusion"]).sum()
    assert scored[0] - scored[2] == 16 * 16  # the held-out tile's zero block is left out
