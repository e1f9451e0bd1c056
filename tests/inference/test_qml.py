"""QGIS style files: parsed back as XML, names escaped, one entry per class."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import torch

from geociss.data.classes import ClassSchema
from geociss.engine.bundle import StepBundle, StepRecord
from geociss.inference.qml import (
    BACKGROUND_COLOR,
    ClassStyle,
    categorized_qml,
    paletted_qml,
    pseudocolor_qml,
)
from geociss.models import ModelConfig, SegmentationModel

TRICKY = ClassStyle(
    names=["roads & paths", "<car>", 'say "hi"', "Bäume"],
    colors=[(255, 255, 255), (255, 204, 0), (1, 2, 3), (0, 255, 0)],
)


def _parse(text: str) -> ET.Element:
    assert text.startswith("<!DOCTYPE qgis")
    return ET.fromstring(text.split("\n", 1)[1])


def test_paletted_qml_has_exactly_the_classes():
    root = _parse(paletted_qml(TRICKY))
    assert root.tag == "qgis" and root.get("styleCategories") == "Symbology"
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "paletted"
    assert renderer.get("band") == "1" and renderer.get("nodataColor") == ""
    entries = renderer.findall("colorPalette/paletteEntry")
    assert [(e.get("value"), e.get("color"), e.get("label"), e.get("alpha")) for e in entries] == [
        ("0", "#ffffff", "roads & paths", "255"),
        ("1", "#ffcc00", "<car>", "255"),
        ("2", "#010203", 'say "hi"', "255"),
        ("3", "#00ff00", "Bäume", "255"),
    ]


def test_labels_are_escaped_in_the_file():
    text = paletted_qml(TRICKY)
    assert 'label="roads &amp; paths"' in text
    assert 'label="&lt;car&gt;"' in text
    assert 'label="say &quot;hi&quot;"' in text
    assert "<car>" not in text


def test_pseudocolor_qml_ramps_over_zero_to_one():
    renderer = _parse(pseudocolor_qml()).find("pipe/rasterrenderer")
    assert renderer.get("type") == "singlebandpseudocolor"
    assert float(renderer.get("classificationMin")) == 0.0
    assert float(renderer.get("classificationMax")) == 1.0
    ramp = renderer.find("rastershader/colorrampshader")
    assert ramp.get("colorRampType") == "INTERPOLATED"
    values = [float(i.get("value")) for i in ramp.findall("item")]
    assert values[0] == 0.0 and values[-1] == 1.0 and values == sorted(values)
    assert ramp.findall("item")[0].get("color") == "#440154"


def test_categorized_qml_one_symbol_per_class():
    renderer = _parse(categorized_qml(TRICKY)).find("renderer-v2")
    assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == "class_id"
    cats = renderer.findall("categories/category")
    assert [(c.get("value"), c.get("label"), c.get("symbol")) for c in cats] == [
        (str(i), n, str(i)) for i, n in enumerate(TRICKY.names)
    ]
    symbols = renderer.findall("symbols/symbol")
    assert len(symbols) == 4
    colors = [
        s.find("layer/Option/Option[@name='color']").get("value") for s in symbols
    ]
    assert colors == ["255,255,255,255", "255,204,0,255", "1,2,3,255", "0,255,0,255"]
    assert all(s.find("layer").get("class") == "SimpleFill" for s in symbols)


def test_colormap_makes_nodata_transparent():
    cmap = TRICKY.colormap()
    assert cmap[1] == (255, 204, 0, 255) and cmap[255] == (0, 0, 0, 0)
    assert len(cmap) == 5
    assert TRICKY.hex_colors[1] == "#ffcc00"


@pytest.mark.parametrize(
    ("names", "colors", "match"),
    [
        (["a"], [(1, 2, 3), (4, 5, 6)], "colours"),
        ([], [], "1-255"),
        (["a"], [(1, 2, 300)], "invalid colour"),
        (["c"] * 256, [(0, 0, 0)] * 256, "1-255"),
    ],
)
def test_class_style_rejects_bad_input(names, colors, match):
    with pytest.raises(ValueError, match=match):
        ClassStyle(names, colors)


def test_style_from_bundle_gives_background_a_neutral_colour():
    schema = ClassSchema.preset("isprs")
    cfg = ModelConfig(encoder="tiny", weights="none", aspp_channels=16)
    torch.manual_seed(0)
    model = SegmentationModel(cfg, [2])
    model.add_step(2)
    bundle = StepBundle.from_model(
        model, schema=schema, steps=[StepRecord([None, 1]), StepRecord([4, 2])]
    )
    style = ClassStyle.from_bundle(bundle)
    assert style.names == ["background", schema.names[1], schema.names[4], schema.names[2]]
    assert style.colors == [BACKGROUND_COLOR, schema.colors[1], schema.colors[4], schema.colors[2]]
