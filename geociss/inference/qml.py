"""Class styles and the QGIS style files (QML) that make prediction outputs open styled.

Three renderers are written, all readable by QGIS 3.22 LTR:

* :func:`paletted_qml`: a raster "paletted / unique values" renderer with exactly the model's
  classes (QGIS otherwise lists all 256 palette entries of an 8-bit colour table);
* :func:`pseudocolor_qml`: a single-band pseudocolour ramp over 0-1 for probability rasters
  (QGIS applies the band's scale, so the ramp is in probability units);
* :func:`categorized_qml`: a vector "categorized" renderer by class id, embedded as the default
  style of the GeoPackage polygons.

The XML is built with :mod:`xml.etree.ElementTree`, so class names are always escaped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from numbers import Integral
from typing import TYPE_CHECKING

from geociss.data.classes import IGNORE_INDEX, color_hex

if TYPE_CHECKING:
    from geociss.engine.bundle import StepBundle

QGIS_VERSION = "3.22.16"
"""QGIS version written in the files (the Debian LTR they were verified with)."""

BACKGROUND_COLOR = (128, 128, 128)
"""Colour of an implicit background channel (one that is no class of the schema): neutral grey."""

VIRIDIS = (
    (0.0, "#440154"),
    (0.25, "#3b528b"),
    (0.5, "#21918c"),
    (0.75, "#5ec962"),
    (1.0, "#fde725"),
)
"""Stops of the probability colour ramp (matplotlib's viridis at five points)."""

_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"


@dataclass(frozen=True)
class ClassStyle:
    """Names and colours of the values of a class raster (value = position in the lists).

    Attributes:
        names: display name of each class value 0..N-1.
        colors: RGB colour (0-255 ints) of each class value.

    Raises:
        ValueError: the lists differ in length, are empty, hold more than 255 classes (255 is
            nodata), or a colour is not three 0-255 integers.
    """

    names: list[str]
    colors: list[tuple[int, int, int]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", [str(n) for n in self.names])
        if len(self.names) != len(self.colors):
            raise ValueError(f"{len(self.names)} class names but {len(self.colors)} colours")
        if not self.names or len(self.names) > IGNORE_INDEX:
            raise ValueError(f"a class style needs 1-{IGNORE_INDEX} classes, got {len(self.names)}")
        for color in self.colors:
            if len(color) != 3 or not all(
                isinstance(v, Integral) and not isinstance(v, bool) and 0 <= v <= 255
                for v in color
            ):
                raise ValueError(f"invalid colour {color!r}; expected three ints 0-255")
        object.__setattr__(self, "colors", [tuple(int(v) for v in c) for c in self.colors])

    @classmethod
    def from_bundle(cls, bundle: StepBundle) -> ClassStyle:
        """The style of a bundle's output channels (class raster value = channel index).

        An implicit background channel (no schema class) gets :data:`BACKGROUND_COLOR`.
        """
        colors = bundle.schema.colors
        return cls(
            names=list(bundle.channel_names),
            colors=[BACKGROUND_COLOR if c is None else tuple(colors[c]) for c in bundle.channels],
        )

    @property
    def hex_colors(self) -> list[str]:
        """Colours as ``#rrggbb`` strings."""
        return [color_hex(c) for c in self.colors]

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """A rasterio colour table: class colours opaque, nodata (255) transparent."""
        cmap = {i: (*c, 255) for i, c in enumerate(self.colors)}
        cmap[IGNORE_INDEX] = (0, 0, 0, 0)
        return cmap


def _document(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return _DOCTYPE + ET.tostring(root, encoding="unicode") + "\n"


def _qgis_root() -> ET.Element:
    return ET.Element("qgis", version=QGIS_VERSION, styleCategories="Symbology")


def paletted_qml(style: ClassStyle, band: int = 1) -> str:
    """QML of a paletted (unique values) raster renderer with one entry per class.

    Pixels equal to the band's nodata value (255) stay transparent: the renderer has no entry
    for them and ``nodataColor`` is empty.

    Args:
        style: class names and colours (value = list position).
        band: 1-based band index.
    """
    root = _qgis_root()
    pipe = ET.SubElement(root, "pipe")
    renderer = ET.SubElement(
        pipe, "rasterrenderer", type="paletted", band=str(band), opacity="1",
        alphaBand="-1", nodataColor="",
    )
    ET.SubElement(renderer, "rasterTransparency")
    palette = ET.SubElement(renderer, "colorPalette")
    for value, (name, color) in enumerate(zip(style.names, style.hex_colors, strict=True)):
        ET.SubElement(
            palette, "paletteEntry", value=str(value), color=color, alpha="255", label=name
        )
    return _document(root)


def pseudocolor_qml(band: int = 1, minimum: float = 0.0, maximum: float = 1.0) -> str:
    """QML of a single-band pseudocolour renderer with an interpolated viridis-like ramp.

    Args:
        band: 1-based band index.
        minimum: value shown with the first colour (after the band's scale/offset).
        maximum: value shown with the last colour.
    """
    root = _qgis_root()
    pipe = ET.SubElement(root, "pipe")
    renderer = ET.SubElement(
        pipe, "rasterrenderer", type="singlebandpseudocolor", band=str(band), opacity="1",
        alphaBand="-1", nodataColor="", classificationMin=repr(minimum),
        classificationMax=repr(maximum),
    )
    ET.SubElement(renderer, "rasterTransparency")
    shader = ET.SubElement(renderer, "rastershader")
    ramp = ET.SubElement(
        shader, "colorrampshader", colorRampType="INTERPOLATED", classificationMode="1",
        minimumValue=repr(minimum), maximumValue=repr(maximum), clip="0",
    )
    for stop, color in VIRIDIS:
        value = minimum + stop * (maximum - minimum)
        ET.SubElement(
            ramp, "item", value=repr(value), color=color, alpha="255", label=f"{value:g}"
        )
    return _document(root)


def categorized_qml(style: ClassStyle, attribute: str = "class_id") -> str:
    """QML of a categorized polygon renderer: one solid fill per class, keyed by ``attribute``.

    Args:
        style: class names and colours (category value = list position).
        attribute: the integer field holding the class value.
    """
    root = _qgis_root()
    renderer = ET.SubElement(
        root, "renderer-v2", type="categorizedSymbol", attr=attribute, symbollevels="0",
        forceraster="0", enableorderby="0",
    )
    categories = ET.SubElement(renderer, "categories")
    symbols = ET.SubElement(renderer, "symbols")
    for value, (name, (r, g, b)) in enumerate(zip(style.names, style.colors, strict=True)):
        ET.SubElement(
            categories, "category", value=str(value), symbol=str(value), label=name, render="true"
        )
        symbol = ET.SubElement(symbols, "symbol", type="fill", name=str(value), alpha="1")
        layer = ET.SubElement(
            symbol, "layer", {"class": "SimpleFill", "enabled": "1", "pass": "0", "locked": "0"}
        )
        options = ET.SubElement(layer, "Option", type="Map")
        for key, val in (
            ("color", f"{r},{g},{b},255"),
            ("outline_color", "35,35,35,255"),
            ("outline_width", "0.1"),
            ("outline_width_unit", "MM"),
            ("style", "solid"),
        ):
            ET.SubElement(options, "Option", name=key, type="QString", value=val)
    return _document(root)
