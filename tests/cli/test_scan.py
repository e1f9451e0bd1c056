"""``geociss scan``: tables, JSON output, default schema and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import yaml
from click.testing import CliRunner

from geociss.cli.main import cli

from fakes import random_pair, write_tif


def run(*args):
    return CliRunner().invoke(cli, ["scan", *map(str, args)])


def test_scan_prints_tables_and_writes_json(tmp_path):
    for i in range(2):
        random_pair(tmp_path, f"t{i}", size=48, seed=i)
    out = tmp_path / "summary.json"
    res = run(tmp_path / "images", tmp_path / "labels", "--chip-size", 16, "--json", out)
    assert res.exit_code == 0, res.output
    for text in (
        "EPSG:32632",
        "0.09 x 0.09",
        "48x48",
        "impervious surfaces",
        "clutter",
        "mean",
        "18 chips of 16 px",
    ):
        assert text in res.output
    summary = json.loads(out.read_text())
    assert summary["tiles"] == 2 and summary["regions"] == 18
    assert sum(c["pixels"] for c in summary["classes"]) == 2 * 48 * 48
    assert abs(sum(c["share"] for c in summary["classes"]) - 1) < 1e-9
    assert [b["band"] for b in summary["band_stats"]] == [1, 2, 3]


def test_scan_images_only(tmp_path):
    random_pair(tmp_path, "a", size=16, crs=None)
    res = run(tmp_path / "images")
    assert res.exit_code == 0, res.output
    assert "pixel space" in res.output and "classes" not in res.output


def test_default_schema_from_classes_yaml_next_to_images(tmp_path):
    random_pair(tmp_path, "a", size=16, classes=2)
    schema = {
        "name": "mine",
        "classes": [
            {"id": 0, "name": "water", "color": "#0000ff"},
            {"id": 1, "name": "land", "color": "#00ff00"},
        ],
    }
    (tmp_path / "classes.yaml").write_text(yaml.safe_dump(schema))
    res = run(tmp_path / "images", tmp_path / "labels")
    assert res.exit_code == 0, res.output
    assert "water" in res.output and "impervious" not in res.output
    res = run(tmp_path / "images", tmp_path / "labels", "--schema", "isprs")
    assert res.exit_code == 0 and "impervious" in res.output


def test_errors_are_one_line_with_exit_2(tmp_path):
    _, lbl = random_pair(tmp_path, "a", size=16)
    write_tif(lbl, np.full((16, 16), 42, np.uint8))
    res = run(tmp_path / "images", tmp_path / "labels")
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {lbl}") and "42" in lines[0]
    res = run(tmp_path / "images", tmp_path / "nowhere")
    assert res.exit_code == 2 and "nowhere: folder not found" in res.output
    res = run(tmp_path / "images", tmp_path / "labels", "--schema", "nope")
    assert res.exit_code == 2 and "unknown class schema preset 'nope'" in res.output
    res = run(tmp_path / "images", "--glob", "*.jp2")
    assert res.exit_code == 2 and "no files match '*.jp2'" in res.output
    assert "Traceback" not in res.output


def test_scan_names_the_schema_it_used_and_warns_when_labels_do_not_fit(tmp_path):
    random_pair(tmp_path, "a", size=16, classes=2)
    out = tmp_path / "summary.json"
    res = run(tmp_path / "images", tmp_path / "labels", "--json", out)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    schema = json.loads(out.read_text())["schema"]
    assert schema == {
        "name": "isprs",
        "from": "preset isprs, the default: no --schema and no classes.yaml next to the images",
        "classes": 6,
        "encoding": "index",
    }
    assert "schema" in text and "isprs (6 classes, index)" in text
    assert "warning: 4 of 6 classes of schema 'isprs' have no pixels in the labels" in text
    assert "(low vegetation, tree, car, clutter)" in text


def test_scan_names_a_schema_file_and_does_not_warn_when_it_fits(tmp_path):
    random_pair(tmp_path, "a", size=16, classes=2)
    schema = {
        "name": "mine",
        "classes": [
            {"id": 0, "name": "water", "color": "#0000ff"},
            {"id": 1, "name": "land", "color": "#00ff00"},
        ],
    }
    (tmp_path / "classes.yaml").write_text(yaml.safe_dump(schema))
    out = tmp_path / "summary.json"
    res = run(tmp_path / "images", tmp_path / "labels", "--json", out)
    assert res.exit_code == 0, res.output
    used = json.loads(out.read_text())["schema"]
    assert used["from"] == f"{tmp_path / 'classes.yaml'} (next to the images)"
    assert "mine (2 classes, index)" in " ".join(res.output.split())
    assert "warning" not in res.output
    res = run(tmp_path / "images", tmp_path / "labels", "--schema", "isprs-rgb")
    assert res.exit_code == 2 and "label" in res.output and "Traceback" not in res.output
    res = run(tmp_path / "images", "--json", out)
    assert res.exit_code == 0 and "schema" not in json.loads(out.read_text())


def test_unknown_label_values_name_the_schema_used(tmp_path):
    _, lbl = random_pair(tmp_path, "a", size=16)
    write_tif(lbl, np.full((16, 16), 42, np.uint8))
    res = run(tmp_path / "images", tmp_path / "labels")
    assert res.exit_code == 2
    (line,) = res.output.strip().splitlines()
    assert line.startswith(f"error: {lbl}: unknown label value(s) 42")
    assert line.endswith(
        "schema used: preset isprs, the default: no --schema and no classes.yaml next to the images"
    )


def test_schema_errors_list_every_problem_with_suggestions(tmp_path):
    random_pair(tmp_path, "a", size=16, classes=2)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: mine\nignore_value: [0]\nclasses:\n"
        "  - {id: 0, name: water, color: '#0000ff', value: [1]}\n"
        "  - {id: 1, name: land, color: green}\n",
        encoding="utf-8",
    )
    res = run(tmp_path / "images", tmp_path / "labels", "--schema", bad)
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"error: {bad}: 3 problems",
        f"{bad}: classes[0].value: unknown key; did you mean 'values'?",
        f"{bad}: classes[1].color: invalid colour 'green'; expected '#rrggbb' or [r, g, b]",
        f"{bad}: ignore_value: unknown key; did you mean 'ignore_values'?",
    ]
