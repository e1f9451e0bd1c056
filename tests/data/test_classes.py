import numpy as np
import pytest
import yaml

from geociss.data.classes import IGNORE_INDEX, ClassSchema, color_hex, parse_color
from geociss.errors import ConfigError, UnknownLabelValueError


def test_isprs_preset_in_idec_order():
    s = ClassSchema.preset("isprs")
    assert s.names == [
        "impervious surfaces",
        "building",
        "low vegetation",
        "tree",
        "car",
        "clutter",
    ]
    assert s.background_id == 0 and s.background_name == "impervious surfaces"
    assert s.colors[1] == (0, 0, 255) and s.colors[5] == (255, 0, 0)
    assert s.label_bands == 1
    rgb = ClassSchema.preset("isprs-rgb")
    assert rgb.names == s.names and rgb.label_bands == 3


def test_encode_index_labels():
    s = ClassSchema.preset("isprs")
    raw = np.array([[0, 1, 2], [3, 4, 5], [255, 0, 0]], dtype=np.uint8)
    out = s.encode(raw)
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 1, 2], [3, 4, 5], [255, 0, 0]]
    assert s.encode(raw.astype(np.uint16)).tolist() == out.tolist()
    assert s.encode(raw.astype(np.int32)[None]).tolist() == out.tolist()


def test_unknown_index_value_names_file_and_value():
    s = ClassSchema.preset("isprs")
    with pytest.raises(
        UnknownLabelValueError, match=r"labels/a\.tif: unknown label value\(s\) 6, 9"
    ):
        s.encode(np.array([[6, 9, 0]], dtype=np.uint8), "labels/a.tif")
    with pytest.raises(UnknownLabelValueError, match="-1"):
        s.encode(np.array([[-1, 0]], dtype=np.int16), "x.tif")
    with pytest.raises(UnknownLabelValueError, match="70000"):
        s.encode(np.array([[70000]], dtype=np.int64), "x.tif")


def test_encode_rgb_labels_strictly():
    s = ClassSchema.preset("isprs-rgb")
    raw = np.zeros((3, 2, 3), dtype=np.uint8)
    raw[:, 0, 0] = (255, 255, 255)  # impervious
    raw[:, 0, 1] = (0, 0, 255)  # building
    raw[:, 0, 2] = (255, 255, 0)  # car
    raw[:, 1, 0] = (255, 0, 0)  # clutter
    # (0, 0, 0) is an ignore value in the preset
    assert s.encode(raw).tolist() == [[0, 1, 4], [5, 255, 255]]
    raw[:, 1, 2] = (250, 0, 0)  # a colour no class has: error, never silently clutter
    with pytest.raises(UnknownLabelValueError, match="#fa0000"):
        s.encode(raw, "top_potsdam_4_12_label.tif")


def test_custom_values_and_roundtrip(tmp_path):
    data = {
        "name": "corine-lite",
        "encoding": "index",
        "background": None,
        "ignore_values": [0],
        "classes": [
            {"id": 0, "name": "urban", "color": "#e6004d", "values": [111, 112]},
            {"id": 1, "name": "water", "color": [0, 204, 242], "values": [511]},
        ],
    }
    s = ClassSchema.from_dict(data)
    assert s.background_id is None and s.background_name is None
    out = s.encode(np.array([[111, 112, 511, 0]], dtype=np.uint16))
    assert out.tolist() == [[0, 0, 1, IGNORE_INDEX]]
    s.to_yaml(tmp_path / "c.yaml")
    again = ClassSchema.from_yaml(tmp_path / "c.yaml")
    assert again == s
    assert again.colormap()[1] == (0, 204, 242, 255)
    assert again.colormap()[255][3] == 0


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d["classes"][1].update(id=5), r"classes\[1\] \('building'\) has id 5"),
        (
            lambda d: d["classes"][1].update(color="blue"),
            r"classes\[1\]\.color: invalid colour 'blue'",
        ),
        (lambda d: d["classes"][2].update(name="building"), "duplicate class name"),
        (lambda d: d.update(background="sky"), "no class 'sky'"),
        (lambda d: d["classes"][2].update(values=[1]), "mapped twice"),
        (lambda d: d.update(ignore_values=[3]), "mapped twice"),
        (lambda d: d.update(encoding="hex"), "encoding"),
        (lambda d: d.update(colour="x"), "colour"),
        (lambda d: d.update(classes=[]), "classes"),
        (lambda d: d["classes"][0].update(values=[70000]), "0-65535"),
    ],
)
def test_validation_errors_name_the_key(mutate, match):
    data = ClassSchema.preset("isprs").to_dict()
    mutate(data)
    with pytest.raises(ConfigError, match=match):
        ClassSchema.from_dict(data, source="classes.yaml")


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: [\n  - {id: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML at line"):
        ClassSchema.from_yaml(bad)
    with pytest.raises(ConfigError, match=r"missing\.yaml: file not found"):
        ClassSchema.from_yaml(tmp_path / "missing.yaml")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump([1, 2]), encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a mapping"):
        ClassSchema.from_yaml(wrong)


def test_preset_and_load():
    with pytest.raises(ConfigError, match="choose one of: isprs, isprs-rgb"):
        ClassSchema.preset("potsdam")
    assert ClassSchema.load("isprs").name == "isprs"
    assert ClassSchema.preset("isprs").class_id("Car") == 4
    with pytest.raises(ConfigError, match="no class 'bus'"):
        ClassSchema.preset("isprs").class_id("bus")


def test_colors():
    assert parse_color("#FF8000") == (255, 128, 0)
    assert parse_color([1, 2, 3]) == (1, 2, 3)
    assert color_hex((255, 128, 0)) == "#ff8000"
    for bad in ("#12345", [1, 2], [1, 2, 300], "red", [True, 0, 0]):
        with pytest.raises(ValueError):
            parse_color(bad)


def test_validation_lists_every_problem_with_the_nearest_key():
    data = ClassSchema.preset("isprs").to_dict()
    data["classes"][0]["value"] = data["classes"][0].pop("values")
    data["classes"][1]["values"] = ["#12345"]
    data["classes"][2]["colour"] = "#00ffff"
    data["ignore_value"] = data.pop("ignore_values")
    with pytest.raises(ConfigError) as info:
        ClassSchema.from_dict(data, source="classes.yaml")
    assert str(info.value).splitlines() == [
        "classes.yaml: 4 problems",
        "classes.yaml: classes[0].value: unknown key; did you mean 'values'?",
        "classes.yaml: classes[1].values: invalid colour '#12345'; expected '#rrggbb' or [r, g, b]",
        "classes.yaml: classes[2].colour: unknown key; did you mean 'color'?",
        "classes.yaml: ignore_value: unknown key; did you mean 'ignore_values'?",
    ]
    assert "more problem" not in str(info.value)
