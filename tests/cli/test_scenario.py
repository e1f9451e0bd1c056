import json

import numpy as np
from click.testing import CliRunner

from geociss.cli.main import cli

from fakes import write_tif


def _folder(tmp_path):
    # tile a: impervious + building; tile b: low vegetation + car; tile c: car + clutter
    contents = {"a": (0, 1), "b": (2, 4), "c": (4, 5)}
    for stem, (x, y) in contents.items():
        label = np.full((32, 32), x, dtype=np.uint8)
        label[:, 16:] = y
        write_tif(tmp_path / "images" / f"{stem}.tif", np.zeros((3, 32, 32), np.uint8) + 9)
        write_tif(tmp_path / "labels" / f"{stem}.tif", label)
    return tmp_path


def test_scenario_without_data():
    result = CliRunner().invoke(cli, ["scenario", "2-2-1", "--unlearned", "clutter"])
    assert result.exit_code == 0, result.output
    assert "impervious surfaces, building" in result.output
    assert "low vegetation, tree" in result.output
    assert "not learned: clutter" in result.output


def test_scenario_with_data_and_json(tmp_path):
    root = _folder(tmp_path)
    out = tmp_path / "steps.json"
    result = CliRunner().invoke(
        cli,
        [
            "scenario",
            "4-1",
            "--unlearned",
            "clutter",
            "--images",
            str(root / "images"),
            "--labels",
            str(root / "labels"),
            "--json",
            str(out),
            "--setting",
            "disjoint",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    step0, step1 = data["steps"]
    assert step0["classes"][0] == "impervious surfaces" and step1["classes"] == ["car"]
    # disjoint: tile b holds a future class (car) so step 0 keeps only tile a
    assert step0["regions"] == 1 and step0["windows"][0][0] == 0
    assert step1["regions"] == 2 and step1["new_class_pixels"] == 2 * 32 * 16


def test_scenario_errors():
    result = CliRunner().invoke(cli, ["scenario", "3-2"])
    assert result.exit_code == 2
    assert "covers 5 classes but 6" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["scenario", "4-1", "--images", "x"])
    assert result.exit_code == 2 and "both --images and --labels" in result.output
