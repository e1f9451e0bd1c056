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
    for text in ("EPSG:32632", "0.09 x 0.09", "48x48", "impervious surfaces", "clutter", "mean",
                 "18 chips of 16 px"):
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
    schema = {"name": "mine", "classes": [{"id": 0, "name": "water", "color": "#0000ff"},
                                          {"id": 1, "name": "land", "color": "#00ff00"}]}
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
