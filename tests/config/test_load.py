import pytest

from geociss.config.load import apply_overrides, deep_merge, load_config, parse_override
from geociss.errors import ConfigError


def test_deep_merge_mappings_merge_lists_replace():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    top = {"a": {"y": [3], "z": 2}, "c": 3}
    assert deep_merge(base, top) == {"a": {"x": 1, "y": [3], "z": 2}, "b": 1, "c": 3}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 1}  # inputs untouched


def test_includes_relative_and_ordered(tmp_path):
    (tmp_path / "frag").mkdir()
    (tmp_path / "frag" / "data.yaml").write_text(
        "data: {batch_size: 8, patch: 256}\nmethod: {name: ft}\n"
    )
    (tmp_path / "frag" / "mib.yaml").write_text("method: {name: mib, kd: 10}\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text("include: [frag/data.yaml, frag/mib.yaml]\ndata: {batch_size: 4}\n")
    cfg = load_config(
        exp, ["method.kd=100", "train.epochs=3", "scenario.task=2-2-1", "x.flag=true"]
    )
    assert cfg == {
        "data": {"batch_size": 4, "patch": 256},
        "method": {"name": "mib", "kd": 100},
        "train": {"epochs": 3},
        "scenario": {"task": "2-2-1"},
        "x": {"flag": True},
    }


def test_include_cycle_and_missing(tmp_path):
    (tmp_path / "a.yaml").write_text("include: b.yaml\n")
    (tmp_path / "b.yaml").write_text("include: [a.yaml]\n")
    with pytest.raises(ConfigError, match="include cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("include: [nope.yaml]\n")
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        load_config(tmp_path / "c.yaml")


@pytest.mark.parametrize(
    ("text", "keys", "value"),
    [
        ("a.b=3", ["a", "b"], 3),
        ("x=[1, 2]", ["x"], [1, 2]),
        ("s=null", ["s"], None),
        ("t=4-1", ["t"], "4-1"),
    ],
)
def test_parse_override(text, keys, value):
    assert parse_override(text) == (keys, value)


@pytest.mark.parametrize("text", ["novalue", "=3", "a..b=1"])
def test_bad_override(text):
    with pytest.raises(ConfigError, match="expected key.path=value"):
        parse_override(text)


def test_override_into_a_value_fails():
    with pytest.raises(ConfigError, match="train.epochs is a value"):
        apply_overrides({"train": {"epochs": 3}}, ["train.epochs.x=1"])
