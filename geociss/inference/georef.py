"""Where outputs lie when the input has no georeferencing, and how to tell that it has none.

A GeoTIFF without a geotransform has no coordinates, and readers disagree on the ones they
make up: GDAL and rasterio report the identity matrix (x = column, y = row, y pointing down),
while QGIS draws such a raster with a pixel height of -1 (x = column, y = -row, the image at
y in (-H, 0)). ``predict`` writes the outputs of such an input on the grid QGIS draws the input
on, as an explicit geotransform :data:`PIXEL_SPACE` without a CRS: the input image, the class
raster and the GeoPackage polygons then overlap in QGIS, and GDAL, rasterio and QGIS agree on
where the class raster and the polygons are.

An input that carries a geotransform keeps it in every output, the identity matrix included
(QGIS draws both at y in (0, H)). rasterio returns the identity matrix in both cases and says
that a file has none only with a ``NotGeoreferencedWarning`` when it is opened;
:func:`open_raster` tells the two apart. Importing this module does not import rasterio.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from affine import Affine

PIXEL_SPACE = Affine(1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
"""Geotransform of the outputs of an input without one: x = column, y = -row (QGIS's grid)."""


def open_raster(path: str | Path) -> tuple[Any, bool]:
    """Open ``path`` with rasterio; also say whether it carries a geotransform.

    Returns:
        The open dataset (close it) and False when the file has no geotransform, GCPs or RPCs
        (rasterio then reports the identity matrix as its transform).
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        src = rasterio.open(path)
    georeferenced = True
    for item in caught:
        if issubclass(item.category, NotGeoreferencedWarning):
            georeferenced = False
        else:  # not ours to hide
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    return src, georeferenced
