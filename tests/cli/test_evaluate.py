"""``geociss evaluate``: scores of a bundle with a known prediction; JSON/CSV/PNG; errors."""

from __future__ import annotations

import csv
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

SCHEMA = {
    "name": "s",
    "background": "road",
    "classes": [
        {"id": i, "name": n, "color": c}
        for i, (n, c) in enumerate(
            [
                ("road", "#ffffff"),
                ("building", "#0000ff"),
                ("tree", "#00ff00"),
                ("clutter", "#ff0000"),
            ]
        )
    ],
}


def run(*args):
    return CliRunner().invoke(cli, [*map(str, args)], env={"COLUMNS": "200"})


def building_everywhere(path):
    """Step 0 learns road and building, step 1 tree; every pixel is predicted building."""
    cfg = ModelConfig(encoder="tiny", weights="none", aspp_channels=16, norm="group", norm_groups=4)
    model = SegmentationModel(cfg, [2, 1])
    with torch.no_grad():
        for i in range(2):
            model.classifier.head(i).weight.zero_()
            model.classifier.head(i).bias.zero_()
        model.classifier.head(0).bias[1] = 3.0
    bundle = StepBundle.from_model(
        model,
        schema=ClassSchema.from_dict(SCHEMA),
        steps=[StepRecord([0, 1]), StepRecord([2])],
        mean=[0.0] * 3,
        std=[1.0] * 3,
    )
    return bundle.save(path)


@pytest.fixture
def data(tmp_path):
    """One 32x32 tile: rows 0-7 road, 8-15 building, 16-23 tree, 24-27 clutter, 28-31 ignore."""
    label = np.repeat(np.array([0, 1, 2, 3, 255], np.uint8), [8, 8, 8, 4, 4])[:, None]
    label = np.broadcast_to(label, (32, 32)).copy()
    write_tif(tmp_path / "images" / "a.tif", np.zeros((3, 32, 32), np.uint8))
    write_tif(tmp_path / "labels" / "a.tif", label)
    return tmp_path


def test_evaluate_scores_table_and_files(data):
    model = building_everywhere(data / "m.safetensors")
    res = run(
        "evaluate",
        "--model",
        model,
        "--images",
        data / "images",
        "--labels",
        data / "labels",
        "--tile",
        16,
        "--overlap",
        4,
        "--json",
        data / "s.json",
        "--csv",
        data / "s.csv",
        "--plot",
        data / "plots",
        "--no-progress",
    )
    assert res.exit_code == 0, res.output
    for text in ("building", "33.33", "mIoU old", "16.67", "clutter (ignored)"):
        assert text in res.output
    scores = json.loads((data / "s.json").read_text())
    assert scores["confusion"] == [[0, 256, 0], [0, 256, 0], [0, 256, 0]]
    assert [c["iou"] for c in scores["channels"]] == pytest.approx([0.0, 1 / 3, 0.0])
    assert scores["miou"] == pytest.approx({"old": 1 / 6, "new": 0.0, "all": 1 / 9})
    assert scores["old_channels"] == [0, 1] and scores["new_channels"] == [2]
    rows = list(csv.DictReader((data / "s.csv").open()))
    assert [r["name"] for r in rows[:3]] == ["road", "building", "tree"]
    assert float(rows[1]["iou"]) == pytest.approx(1 / 3)
    assert (data / "plots" / "confusion.png").stat().st_size > 1000


def test_evaluate_with_another_schema_matches_names(data, tmp_path):
    import yaml

    model = building_everywhere(data / "m.safetensors")
    other = {
        "name": "o",
        "classes": [
            {"id": 0, "name": "Building", "color": "#000000", "values": [1]},
            {"id": 1, "name": "rest", "color": "#111111", "values": [0, 2, 3]},
        ],
    }
    (tmp_path / "o.yaml").write_text(yaml.safe_dump(other))
    res = run(
        "evaluate",
        "--model",
        model,
        "--images",
        data / "images",
        "--labels",
        data / "labels",
        "--schema",
        tmp_path / "o.yaml",
        "--tile",
        32,
        "--overlap",
        0,
        "--json",
        data / "o.json",
        "--no-progress",
    )
    assert res.exit_code == 0, res.output
    scores = json.loads((data / "o.json").read_text())
    assert scores["confusion"] == [[0, 0, 0], [0, 256, 0], [0, 0, 0]]  # rest → ignored
    assert "rest (ignored)" in res.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--schema", "nope"], "unknown class schema preset 'nope'"),
        (["--overlap", 32], "overlap (32) must be smaller than the tile (32)"),
        (["--labels", "missing"], "missing"),
    ],
)
def test_evaluate_errors_are_one_line(data, extra, message):
    model = building_everywhere(data / "m.safetensors")
    res = run(
        "evaluate",
        "--model",
        model,
        "--images",
        data / "images",
        "--labels",
        data / "labels",
        "--tile",
        32,
        "--no-progress",
        *extra,
    )
    assert res.exit_code == 2, res.output
    assert message in res.stderr and res.stderr.count("\n") == 1, res.stderr


def test_evaluate_missing_bundle(data):
    res = run(
        "evaluate",
        "--model",
        data / "none.safetensors",
        "--images",
        data / "images",
        "--labels",
        data / "labels",
    )
    assert res.exit_code == 2 and "step bundle not found" in res.stderr
