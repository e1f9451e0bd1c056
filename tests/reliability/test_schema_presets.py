"""Schema preset names are never shadowed by files or folders in the working directory."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from geociss.cli.main import cli
from geociss.data.classes import ClassSchema
from geociss.errors import ConfigError

from fakes import random_pair

MINE = {"name": "mine", "classes": [{"id": 0, "name": "water", "color": "#0000ff"},
                                    {"id": 1, "name": "land", "color": "#00ff00"}]}


def test_a_folder_named_like_a_preset_does_not_shadow_it(tmp_path, monkeypatch):
    random_pair(tmp_path / "data", "a", size=16)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "isprs").mkdir()  # a natural place for ISPRS data
    (tmp_path / "isprs-rgb").write_text("not: [a schema")
    res = CliRunner().invoke(cli, ["scan", "data/images", "data/labels", "--schema", "isprs"])
    assert res.exit_code == 0, res.output
    assert "impervious surfaces" in res.output
    assert ClassSchema.load("isprs") == ClassSchema.preset("isprs")
    assert ClassSchema.load("isprs-rgb") == ClassSchema.preset("isprs-rgb")


def test_a_path_to_a_yaml_file_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "isprs").write_text(yaml.safe_dump(MINE))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "classes").write_text(yaml.safe_dump(MINE))
    (tmp_path / "mine.yml").write_text(yaml.safe_dump(MINE))
    for ref in ("./isprs", str(tmp_path / "isprs"), "sub/classes", "mine.yml"):
        assert ClassSchema.load(ref).names == ["water", "land"], ref


def test_a_folder_given_as_schema_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "isprs").mkdir()
    (tmp_path / "schemas.yaml").mkdir()
    for ref in ("./isprs", "schemas.yaml"):
        with pytest.raises(ConfigError, match="is a folder, not a YAML file"):
            ClassSchema.load(ref)
    with pytest.raises(ConfigError, match="unknown class schema preset 'isprs2'"):
        ClassSchema.load("isprs2")


@pytest.mark.parametrize("command", ["scan", "scenario", "evaluate"])
def test_the_rule_is_in_the_schema_help(command):
    res = CliRunner().invoke(cli, [command, "--help"], env={"COLUMNS": "2000"})
    assert res.exit_code == 0, res.output
    assert "A preset name always means the preset" in " ".join(res.output.split())
