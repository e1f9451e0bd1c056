"""Open geociss outputs with QGIS (run by Debian's /usr/bin/python3, not the project's Python).

Usage: ``QT_QPA_PLATFORM=offscreen /usr/bin/python3 qgis_check.py CLASSES_TIF GPKG CONFIDENCE_TIF
[IMAGE_TIF]``

Prints one JSON object describing what QGIS sees: for each layer whether it is valid, its
renderer type, its legend entries (value, label, colour) and its extent [xmin, ymin, xmax, ymax]
in the layer's coordinates; with IMAGE_TIF (the input of predict) also that raster's extent.
The pytest side
(``test_qgis.py``) asserts on it. Only the standard library and ``qgis.core`` are used.
"""

import json
import sys

from qgis.core import Qgis, QgsApplication, QgsRasterLayer, QgsVectorLayer


def extent(layer):
    """The layer's extent as [xmin, ymin, xmax, ymax], or None when it did not open."""
    if not layer.isValid():
        return None
    box = layer.extent()
    return [box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()]


def raster_info(path):
    layer = QgsRasterLayer(path, "classes")  # loads the sidecar <basename>.qml by default
    renderer = layer.renderer()
    info = {
        "valid": layer.isValid(),
        "renderer": renderer.type() if renderer else None,
        "band_name": layer.bandName(1) if layer.isValid() else None,
        "nodata": layer.dataProvider().sourceNoDataValue(1) if layer.isValid() else None,
        "extent": extent(layer),
    }
    if renderer is not None and renderer.type() == "paletted":
        info["classes"] = [
            [int(c.value), c.label, c.color.name(), c.color.alpha()] for c in renderer.classes()
        ]
    return info


def confidence_info(path):
    layer = QgsRasterLayer(path, "confidence")
    renderer = layer.renderer()
    info = {
        "valid": layer.isValid(),
        "renderer": renderer.type() if renderer else None,
        "extent": extent(layer),
    }
    if layer.isValid():
        info["scale"] = layer.dataProvider().bandScale(1)
        info["offset"] = layer.dataProvider().bandOffset(1)
        info["nodata"] = layer.dataProvider().sourceNoDataValue(1)
    if renderer is not None and renderer.type() == "singlebandpseudocolor":
        info["min"] = renderer.classificationMin()
        info["max"] = renderer.classificationMax()
    return info


def vector_info(path):
    layer = QgsVectorLayer(f"{path}|layername=landcover", "landcover", "ogr")
    renderer = layer.renderer()
    info = {
        "valid": layer.isValid(),
        "renderer": renderer.type() if renderer else None,
        "features": layer.featureCount() if layer.isValid() else None,
        "fields": [f.name() for f in layer.fields()] if layer.isValid() else [],
        "crs": layer.crs().authid() if layer.isValid() else None,
        "extent": extent(layer),
    }
    if renderer is not None and renderer.type() == "categorizedSymbol":
        info["attribute"] = renderer.classAttribute()
        info["categories"] = [
            [int(c.value()), c.label(), c.symbol().color().name()] for c in renderer.categories()
        ]
    return info


def main(argv):
    app = QgsApplication([], False)
    app.setPrefixPath("/usr", True)
    app.initQgis()
    try:
        result = {
            "version": Qgis.version(),
            "classes": raster_info(argv[1]),
            "vector": vector_info(argv[2]),
            "confidence": confidence_info(argv[3]),
        }
        if len(argv) > 4:
            result["image"] = {"extent": extent(QgsRasterLayer(argv[4], "image"))}
    finally:
        app.exitQgis()
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
