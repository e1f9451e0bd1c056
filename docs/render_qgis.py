"""Render geociss prediction outputs with a real, headless QGIS into one PNG (the README picture).

Run with the Python that has QGIS' bindings (Debian's ``python3-qgis``), not the project's::

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 docs/render_qgis.py OUTPUTS [--out PNG]

(Debian's ``python3-qgis`` package: ``apt-get install python3-qgis``; QGIS's own Python.)

OUTPUTS is a ``geociss predict --vector`` folder. The layers are loaded exactly as QGIS loads
them for a user: ``<name>_classes.tif`` picks up its ``<name>_classes.qml`` sidecar and
``<name>.gpkg`` its embedded default style; nothing is styled here except the opacity of the class
layer and an outline-only copy of the polygons. The legend is drawn from the loaded raster
renderer's classes, so it shows what QGIS read. Three panels: the input image (found through
``<name>.predict.json``), the classes over the image with the polygon outlines, and the polygons
in their own style. Exits non-zero when a style did not come through. Uses only ``qgis`` and the
standard library (geociss is not importable from this interpreter).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsFillSymbol,
    QgsMapLayer,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsRasterLayer,
    QgsRectangle,
    QgsSingleSymbolRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QRect, QSize, Qt
from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter

PANEL, GAP, TITLE, LEGEND = 380, 15, 30, 58
CLASS_OPACITY = 0.6


class RenderError(Exception):
    """A layer did not open, or opened without its geociss style."""


def render(layers: list[QgsMapLayer], extent: QgsRectangle, size: int) -> QImage:
    """Render ``layers`` (top first) over ``extent`` into a ``size``² image."""
    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(layers[-1].crs())
    settings.setExtent(extent)
    settings.setOutputSize(QSize(size, size))
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def load(outputs: Path, scene: str | None, image: Path | None) -> tuple[str, dict]:
    """Find the scene in ``outputs`` and load its layers; fail loudly if a style is missing."""
    names = sorted(p.name[: -len("_classes.tif")] for p in outputs.glob("*_classes.tif"))
    if not names or (scene is not None and scene not in names):
        raise RenderError(f"{outputs}: no {scene or '*'}_classes.tif here")
    name = scene or names[0]
    if image is None:
        record = json.loads((outputs / f"{name}.predict.json").read_text())
        image = Path(record["input"])
    layers = {
        "image": QgsRasterLayer(str(image), "image"),
        "classes": QgsRasterLayer(str(outputs / f"{name}_classes.tif"), "classes"),
        "polygons": QgsVectorLayer(f"{outputs / name}.gpkg|layername=landcover", "polygons", "ogr"),
        "outlines": QgsVectorLayer(f"{outputs / name}.gpkg|layername=landcover", "outlines", "ogr"),
    }
    for key, layer in layers.items():
        if not layer.isValid():
            raise RenderError(f"QGIS could not open the {key} layer: {layer.source()}")
    classes, polygons = layers["classes"].renderer(), layers["polygons"].renderer()
    if classes.type() != "paletted" or len(classes.classes()) == 256:  # 256: the bare colour table
        raise RenderError(f"the .qml sidecar was not applied: {classes.type()!r} renderer")
    if polygons.type() != "categorizedSymbol":
        raise RenderError(f"the GeoPackage style was not applied: renderer {polygons.type()!r}")
    raster_legend = [(c.label, c.color.name()) for c in classes.classes()]
    vector_legend = [(c.label(), c.symbol().color().name()) for c in polygons.categories()]
    if raster_legend != vector_legend:
        raise RenderError(f"raster and vector styles differ: {raster_legend} vs {vector_legend}")
    classes.setOpacity(CLASS_OPACITY)
    outline = QgsFillSymbol.createSimple(
        {"style": "no", "outline_color": "20,20,20,220", "outline_width": "0.2"}
    )
    layers["outlines"].setRenderer(QgsSingleSymbolRenderer(outline))
    return name, layers


def draw_legend(painter: QPainter, entries: list[tuple[str, QColor]], top: int, width: int) -> None:
    """One row of colour swatches with their labels, centred across ``width``."""
    painter.setFont(QFont("DejaVu Sans", 11))
    metrics = painter.fontMetrics()
    swatch, pad = 18, 28
    widths = [swatch + 8 + metrics.horizontalAdvance(label) for label, _ in entries]
    x = (width - sum(widths) - pad * (len(entries) - 1)) // 2
    for (label, color), w in zip(entries, widths, strict=True):
        painter.setPen(QColor(60, 60, 60))
        painter.setBrush(color)
        painter.drawRect(x, top, swatch, swatch)
        painter.drawText(QRect(x + swatch + 8, top - 2, w, swatch + 4), Qt.AlignVCenter, label)
        x += w + pad


def compose(name: str, layers: dict, out: Path) -> list[tuple[str, str]]:
    """Draw the three panels, titles and legend into ``out``; return the legend entries."""
    extent, outlines = layers["classes"].extent(), layers["outlines"]
    panels = [
        ("input image", [layers["image"]]),
        (f"{name}_classes.tif (.qml sidecar)", [outlines, layers["classes"], layers["image"]]),
        (f"{name}.gpkg (embedded style)", [layers["polygons"]]),
    ]
    entries = [(c.label, c.color) for c in layers["classes"].renderer().classes()]
    width = 3 * PANEL + 4 * GAP
    height = GAP + TITLE + PANEL + LEGEND
    canvas = QImage(width, height, QImage.Format_RGB32)
    canvas.fill(QColor("white"))
    painter = QPainter(canvas)
    painter.setRenderHint(QPainter.Antialiasing)
    painter.setRenderHint(QPainter.TextAntialiasing)
    painter.setFont(QFont("DejaVu Sans", 12))
    for i, (title, stack) in enumerate(panels):
        x = GAP + i * (PANEL + GAP)
        painter.setPen(QColor(30, 30, 30))
        painter.drawText(QRect(x, GAP, PANEL, TITLE - 6), Qt.AlignCenter, title)
        painter.drawImage(x, GAP + TITLE, render(stack, extent, PANEL))
        painter.setPen(QColor(150, 150, 150))
        painter.setBrush(Qt.NoBrush)
        painter.drawRect(x, GAP + TITLE, PANEL - 1, PANEL - 1)
    draw_legend(painter, entries, GAP + TITLE + PANEL + 14, width)
    painter.setFont(QFont("DejaVu Sans", 8))
    painter.setPen(QColor(120, 120, 120))
    painter.drawText(
        QRect(0, height - 16, width - GAP, 14),
        Qt.AlignRight,
        f"rendered headless by QGIS {Qgis.version()}",
    )
    painter.end()
    out.parent.mkdir(parents=True, exist_ok=True)
    # 256 colours, error-diffused: a third of the size; flat areas in colours of the 6×6×6 cube
    # (all the ISPRS colours) stay exact.
    small = canvas.convertToFormat(QImage.Format_Indexed8, Qt.DiffuseDither | Qt.PreferDither)
    small.setColorTable([rgb | 0xFF000000 for rgb in small.colorTable()])  # no tRNS chunk
    if not small.save(str(out)):
        raise RenderError(f"could not write {out}")
    return [(label, color.name()) for label, color in entries]


def report(args: argparse.Namespace) -> str | None:
    """Load, render and print what was rendered; return the error, if any.

    Every layer must be gone before ``exitQgis`` (or the interpreter crashes on exit), so no
    exception, whose traceback would keep them alive, leaves this function.
    """
    try:
        name, layers = load(args.outputs, args.scene, args.image)
        legend = compose(name, layers, args.out)
    except (RenderError, OSError, KeyError, ValueError) as exc:
        return f"render_qgis: {exc}"
    size = args.out.stat().st_size // 1024
    print(f"QGIS {Qgis.version()}: rendered {name} to {args.out} ({size} KB)")
    print(f"  image    {layers['image'].source()} ({layers['image'].renderer().type()})")
    print(f"  classes  {layers['classes'].source()} (paletted, from the .qml sidecar)")
    print(
        f"  polygons {layers['polygons'].featureCount()} features "
        "(categorizedSymbol, from the GeoPackage's layer_styles)"
    )
    print("  legend   " + ", ".join(f"{label} {color}" for label, color in legend))
    return None


def main(argv: list[str]) -> None:
    """Parse the command line and render inside an initialised QGIS application."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outputs", type=Path, help="a `geociss predict --vector` output folder")
    parser.add_argument("--scene", help="which <name> to render [the first one]")
    parser.add_argument("--image", type=Path, help="input image [from <name>.predict.json]")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("qgis-render.png"),
        help="PNG to write [qgis-render.png here; the README picture is docs/img/qgis-demo.png]",
    )
    args = parser.parse_args(argv)
    app = QgsApplication([], False)
    app.setPrefixPath("/usr", True)
    app.initQgis()
    try:
        error = report(args)
    finally:
        app.exitQgis()
    if error:
        sys.exit(error)


if __name__ == "__main__":
    main(sys.argv[1:])
