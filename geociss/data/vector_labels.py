"""Polygon label files (GeoPackage, Shapefile, GeoJSON) rasterised onto each image's grid.

The class of a polygon is read from one attribute (``class`` by default); its values are class
names (case-insensitive) or class ids of the schema. Any other value is an error naming the file
and the value. A GeoPackage written by ``geociss predict --vector`` reads back as labels as it
is: its ``class`` column holds the class names, and its polygon layer is read, not the
``layer_styles`` table of its embedded QGIS style. Polygons are reprojected to the image's CRS
and burnt with :func:`rasterio.features.rasterize` (``all_touched=False``: a pixel belongs to a
polygon when its centre does), in file order, so where polygons overlap **the later polygon
wins**. Pixels that no polygon covers become the schema's background class
(``unlabelled="background"``) or 255 (``unlabelled="ignore"``).

Each image's rasterised label is written once into the cache folder as a tiled, compressed
uint8 GeoTIFF holding class ids (nodata 255, with the schema's colours). Its file name carries a
hash of the vector file's size and modification time and of the image grid, so a changed vector
file or image grid gives a new raster and the stale one is removed.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geociss.data.classes import IGNORE_INDEX, ClassSchema
from geociss.errors import ConfigError, DataError
from geociss.io import atomic_path

VECTOR_SUFFIXES = frozenset({".gpkg", ".shp", ".geojson", ".json", ".fgb"})
"""File suffixes read as vector labels."""

_SIDECARS = (".dbf", ".shx", ".prj", ".cpg")
_POLYGONAL = frozenset({"Polygon", "MultiPolygon"})
_STYLE_TABLE = "layer_styles"  # QGIS' table of embedded layer styles


def is_vector(path: Path) -> bool:
    """True when ``path`` is a file that :class:`VectorLabels` reads."""
    return path.suffix.lower() in VECTOR_SUFFIXES and not path.is_dir()


def source_fingerprint(path: Path) -> list[int]:
    """Total size and latest ``mtime_ns`` of a vector file and its sidecars (.dbf, .prj, ...)."""
    files = [path] + [p for s in _SIDECARS if (p := path.with_suffix(s)).is_file()]
    stats = [f.stat() for f in files]
    return [sum(s.st_size for s in stats), max(s.st_mtime_ns for s in stats)]


def _class_id(value: Any, schema: ClassSchema) -> int | None:
    """Class id of one attribute value (name or id), None when it matches no class."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | np.integer) or (isinstance(value, float) and value.is_integer()):
        return int(value) if 0 <= int(value) < schema.num_classes else None
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return _class_id(int(text), schema)
        lowered = {n.lower(): i for i, n in enumerate(schema.names)}
        return lowered.get(text.lower())
    return None


def _polygon_layer(path: Path) -> str | None:
    """The layer to read: None (the first) unless the file lists a QGIS ``layer_styles`` table.

    A GeoPackage with an embedded default style (every ``geociss predict --vector`` output)
    lists ``layer_styles`` as a second layer; naming the other layer reads it without the
    "More than one layer found" warning. A file with several other layers reads the first.
    """
    import pyogrio

    try:
        names = [str(name) for name, _ in pyogrio.list_layers(path)]
    except Exception:  # unreadable: read_file reports it with the file name
        return None
    others = [name for name in names if name != _STYLE_TABLE]
    return others[0] if len(others) == 1 and len(names) > 1 else None


class VectorLabels:
    """A polygon label file, read once and rasterised onto image grids.

    Args:
        path: .gpkg, .shp, .geojson (or .json, .fgb) file of polygons.
        schema: the class schema whose names/ids the attribute holds.
        attribute: name of the class attribute.
        unlabelled: what pixels outside every polygon become: ``"background"`` (the schema's
            background class, which must exist) or ``"ignore"`` (255).

    Raises:
        DataError: the file does not exist.
        ConfigError: ``unlabelled="background"`` with a schema that has no background class.
    """

    def __init__(
        self, path: Path, schema: ClassSchema, attribute: str = "class",
        unlabelled: Literal["background", "ignore"] = "background",
    ) -> None:
        if not path.is_file():
            raise DataError(path, "vector label file not found")
        if unlabelled not in ("background", "ignore"):
            raise ConfigError(f"unlabelled must be 'background' or 'ignore', not {unlabelled!r}")
        if unlabelled == "background" and schema.background_id is None:
            raise ConfigError(
                f"class schema {schema.name!r} has no background class, so pixels outside the "
                f"polygons of {path} cannot be background; use unlabelled='ignore'"
            )
        self.path = path
        self.schema = schema
        self.attribute = attribute
        self.unlabelled = unlabelled
        bg = schema.background_id
        self.fill = IGNORE_INDEX if unlabelled == "ignore" or bg is None else bg
        self._frame: Any = None
        self._projected: dict[str, Any] = {}

    @property
    def frame(self) -> Any:
        """The polygons as a GeoDataFrame with a ``class id`` column (loaded on first use)."""
        if self._frame is None:
            self._frame = self._load()
        return self._frame

    def _load(self) -> Any:
        import geopandas as gpd

        try:
            frame = gpd.read_file(self.path, engine="pyogrio", layer=_polygon_layer(self.path))
        except Exception as err:  # pyogrio/GDAL raise many types for unreadable files
            detail = " ".join(str(err).split())
            raise DataError(self.path, f"cannot read vector labels: {detail}") from None
        if self.attribute not in frame.columns:
            cols = ", ".join(c for c in frame.columns if c != frame.geometry.name) or "none"
            raise DataError(
                self.path, f"has no attribute {self.attribute!r} (attributes: {cols})"
            )
        if frame.crs is None:
            raise DataError(self.path, "has no CRS; vector labels need one to meet the images")
        frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
        kinds = set(frame.geometry.geom_type) - _POLYGONAL
        if kinds:
            raise DataError(
                self.path, f"has {', '.join(sorted(kinds))} geometries; labels must be polygons"
            )
        ids = {}
        for value in frame[self.attribute].unique():
            value = value.item() if isinstance(value, np.generic) else value
            cid = _class_id(value, self.schema)
            if cid is None:
                raise DataError(
                    self.path,
                    f"unknown class value {value!r} in attribute {self.attribute!r}; use a class "
                    f"name or id of schema {self.schema.name!r}: {', '.join(self.schema.names)}",
                )
            ids[value] = cid
        frame = frame.assign(**{"class id": frame[self.attribute].map(ids).astype("uint8")})
        return frame[["class id", frame.geometry.name]]

    def rasterize(
        self, width: int, height: int, transform: tuple[float, ...], crs: str | None, image: Path
    ) -> np.ndarray:
        """Burn the polygons onto one image grid.

        Args:
            width: image columns.
            height: image rows.
            transform: the image's affine coefficients.
            crs: the image's CRS as WKT (None raises).
            image: the image, named in errors.

        Returns:
            (height, width) uint8 class ids, :attr:`fill` where no polygon lies.
        """
        import shapely
        from rasterio import Affine
        from rasterio.features import rasterize
        from rasterio.transform import array_bounds

        if crs is None:
            raise DataError(
                image, f"has no CRS; vector labels ({self.path.name}) need georeferenced images"
            )
        frame = self._projected.get(crs)
        if frame is None:
            frame = self.frame.to_crs(crs)
            self._projected = {crs: frame}
        affine = Affine(*transform[:6])
        west, south, east, north = array_bounds(height, width, affine)
        hits = np.sort(frame.sindex.query(shapely.box(west, south, east, north)))
        out = np.full((height, width), self.fill, dtype=np.uint8)
        if hits.size:
            part = frame.iloc[hits]
            shapes = zip(part.geometry.values, part["class id"].to_numpy(), strict=True)
            rasterize(shapes, out=out, transform=affine, all_touched=False)
        return out

    def cache_key(self) -> str:
        """Hash of what decides the rasterised values (file, attribute, unlabelled, schema)."""
        blob = json.dumps(
            [str(self.path.resolve()), self.attribute, self.unlabelled, self.schema.to_dict()],
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def rasterised(self, image: Path, stem: str, folder: Path) -> Path:
        """Path of ``image``'s rasterised label in ``folder``, writing it when missing or stale.

        Args:
            image: the image raster whose grid the labels are burnt onto.
            stem: the tile's name (used in the file name).
            folder: the cache folder for rasterised labels.
        """
        import rasterio

        from geociss.data.tile_scan import open_raster

        with open_raster(image) as src:
            crs = src.crs.to_wkt() if src.crs else None
            grid = (src.width, src.height, tuple(src.transform)[:6], crs)
        blob = json.dumps([source_fingerprint(self.path), self.cache_key(), grid], default=str)
        digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
        target = folder / self.cache_key() / f"{stem}.{digest}.tif"
        if target.is_file():
            return target
        ids = self.rasterize(grid[0], grid[1], grid[2], crs, image)
        profile = {
            "driver": "GTiff", "width": grid[0], "height": grid[1], "count": 1, "dtype": "uint8",
            "crs": crs, "transform": rasterio.Affine(*grid[2]), "nodata": IGNORE_INDEX,
            "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
        }
        try:
            with atomic_path(target) as tmp, rasterio.open(tmp, "w", **profile) as dst:
                dst.write(ids, 1)
                dst.write_colormap(1, self.schema.colormap())
        except OSError as err:
            raise DataError(
                folder, f"cannot write rasterised vector labels ({err.strerror or err}); "
                "set GEOCISS_CACHE to a writable folder"
            ) from None
        stale = re.compile(re.escape(stem) + r"\.[0-9a-f]{12}\.tif")
        for old in target.parent.iterdir():
            if old != target and stale.fullmatch(old.name):
                old.unlink(missing_ok=True)
        return target
