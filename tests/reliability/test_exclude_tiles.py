"""data.exclude_tiles: unquoted ids read by YAML as numbers, and the known bad tile 4_12."""

from __future__ import annotations

import textwrap

import pytest
from click.testing import CliRunner
from fakes_isprs import others, write_potsdam

from geociss.cli.main import cli
from geociss.config.experiment import load_experiment
from geociss.data.isprs import get_dataset, tile_notes
from geociss.engine.runner import ScenarioRunner
from geociss.errors import ConfigError, DataError

INCLUDED = "note: ISPRS Potsdam tile 4_12 is included although its label file"


def write_config(tmp_path, exclude: str | None) -> str:
    line = "" if exclude is None else f"  exclude_tiles: {exclude}\n"
    text = textwrap.dedent(f"""\
        name: run
        out: {tmp_path / "runs"}
        data:
          dataset: potsdam
          root: {tmp_path / "potsdam"}
          schema: isprs-rgb
        """) + line + "scenario: {task: 2-3, unlearned: [clutter]}\n"
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


@pytest.fixture
def stop_before_training(monkeypatch):
    """Stop ``train`` at its first step (what it logs before is what the tests look at)."""

    def stop(*_, **__):
        raise DataError(None, "stopped before training")

    # the first thing after the notes: the data are read to size the model's input bands
    monkeypatch.setattr(ScenarioRunner, "resolve_model", stop)


def train(config: str):
    return CliRunner().invoke(cli, ["train", config, "--no-progress"], env={"COLUMNS": "300"})


def test_an_unquoted_tile_id_says_yaml_read_it_as_a_number(tmp_path):
    res = train(write_config(tmp_path, "[4_12]"))
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "412 is not a tile of ISPRS Potsdam" in line
    assert "412 looks like 4_12 read by YAML as a number; quote it: '4_12'" in line
    with pytest.raises(ConfigError, match=r"210, 412 look like 2_10, 4_12 read by YAML as "
                       r"numbers; quote them: \['2_10', '4_12'\]"):
        load_experiment(write_config(tmp_path, "[4_12, 2_10]"))
    with pytest.raises(ConfigError, match=r"\(ids look like 2_10\)$"):  # no hint for others
        load_experiment(write_config(tmp_path, "[99, '1_1']"))
    cfg = load_experiment(write_config(tmp_path, "['4_12', '2_10']"))
    assert cfg.data.exclude_tiles == ["4_12", "2_10"]


def test_train_says_that_4_12_is_left_out_by_default(tmp_path, stop_before_training):
    res = train(write_config(tmp_path, None))
    assert res.exit_code == 2 and "stopped before training" in res.output
    assert "note: ISPRS Potsdam tile 4_12 left out: its label file" in res.output
    assert "is included" not in res.output


def test_an_explicit_list_that_brings_4_12_back_is_noted(tmp_path, stop_before_training):
    res = train(write_config(tmp_path, "['2_10']"))
    assert res.exit_code == 2 and "stopped before training" in res.output
    assert "note: ISPRS Potsdam tile 2_10 left out: in data.exclude_tiles" in res.output
    assert INCLUDED in " ".join(res.output.split())
    assert "list 4_12 too to leave it out" in " ".join(res.output.split())
    res = train(write_config(tmp_path, "['2_10', '4_12']"))
    assert "4_12 left out" in res.output and "is included" not in res.output


def test_scan_notes_an_explicit_list_that_brings_4_12_back(tmp_path):
    keep = ("2_10", "4_12")
    root = write_potsdam(tmp_path, keep, zipped=False, modalities=("rgb",), size=16)
    res = CliRunner().invoke(cli, [
        "scan", str(root), "--dataset", "potsdam", "--no-cache",
        "--exclude-tiles", ",".join(others("potsdam", keep)),
    ], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    assert INCLUDED in res.output


def test_tile_notes_follow_the_split():
    potsdam = get_dataset("potsdam")
    assert tile_notes(potsdam, "test", ["2_10"]) == []  # 4_12 is a training tile
    assert len(tile_notes(potsdam, "train", None)) == 1
    assert tile_notes(potsdam, "all", []) == [
        next(n for n in tile_notes(potsdam, "train", ["2_11"]) if "is included" in n)
    ]
