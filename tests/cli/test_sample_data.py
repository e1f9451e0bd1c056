"""`geociss sample-data`: the command writes scenes, refuses to clobber them, fails in one line."""

from __future__ import annotations

import rasterio
from click.testing import CliRunner

from geociss.cli.main import cli


def run(*args: str):
    return CliRunner().invoke(cli, ["sample-data", *args])


def test_writes_scenes_and_summary(tmp_path):
    out = tmp_path / "demo"
    result = run(str(out), "--tiles", "2", "--size", "128", "--seed", "3", "--bands", "rgbir",
                 "--gsd", "0.1")
    assert result.exit_code == 0, result.output
    assert "wrote 2 scene(s) of 128 × 128 px (rgbir, EPSG:32632, 0.1 m)" in result.output
    assert "class shares: impervious surfaces" in result.output and "clutter" in result.output
    for stem in ("scene_000", "scene_001"):
        with rasterio.open(out / "images" / f"{stem}.tif") as ds:
            assert ds.count == 4 and ds.res == (0.1, 0.1)
        assert (out / "labels" / f"{stem}.tif").is_file()
    assert (out / "classes.yaml").is_file()


def test_refuses_existing_scenes_unless_overwrite(tmp_path):
    out = tmp_path / "demo"
    assert run(str(out), "--tiles", "1", "--size", "64").exit_code == 0
    before = (out / "images" / "scene_000.tif").read_bytes()
    result = run(str(out), "--tiles", "1", "--size", "64", "--seed", "9")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "--overwrite" in result.output
    assert "Traceback" not in result.output
    assert (out / "images" / "scene_000.tif").read_bytes() == before
    result = run(str(out), "--tiles", "1", "--size", "64", "--seed", "9", "--overwrite")
    assert result.exit_code == 0, result.output
    assert (out / "images" / "scene_000.tif").read_bytes() != before


def test_bad_crs_is_one_line(tmp_path):
    result = run(str(tmp_path / "x"), "--size", "64", "--tiles", "1", "--crs", "EPSG:4326")
    assert result.exit_code == 2
    assert result.output.startswith("error: --crs 'EPSG:4326': not a projected CRS")
    assert result.output.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_bad_options_are_usage_errors(tmp_path):
    for args in (["--bands", "bgr"], ["--size", "10"], ["--tiles", "0"], ["--gsd", "0"],
                 ["--seed", "-1"]):
        result = run(str(tmp_path / "x"), *args)
        assert result.exit_code == 2, args
        assert "Invalid value" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_help_lists_options():
    result = run("--help")
    assert result.exit_code == 0
    for option in ("--tiles", "--size", "--seed", "--bands", "--crs", "--gsd", "--overwrite"):
        assert option in result.output
