"""The catalogue of a GeoTIFF folder: validated image/label pairs with class histograms.

:meth:`Catalog.scan` pairs images with label rasters by name (:mod:`geociss.data.pairing`),
validates and reads each pair once (:func:`geociss.data.tile_scan.scan_tile`), and keeps the
results in a cached manifest (:mod:`geociss.data.manifest`) so that scanning an unchanged folder
again only stats its files. Labels may also be one polygon file (:mod:`geociss.data.vector_labels`),
rasterised onto each image's grid into the cache.

Across tiles, every image must have the same number of bands and the same data type; tiles may
differ in size and CRS (:attr:`Catalog.crs` is then None).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geociss.data import tile_scan
from geociss.data.classes import ClassSchema
from geociss.data.manifest import Manifest, cache_dir, file_fingerprint, manifest_key
from geociss.data.pairing import Pair, pair_files
from geociss.data.records import BandStats, Region, TileRecord, Window
from geociss.data.tile_scan import ScanOptions, crs_name
from geociss.data.vector_labels import VectorLabels, is_vector, source_fingerprint
from geociss.errors import ConfigError, DataError


def _options(
    bands: Sequence[int] | None, expected_bands: int | None, chip_size: int | None,
    nodata: float | None = None,
) -> ScanOptions:
    if bands is not None:
        if not bands or any(int(b) < 1 for b in bands):
            raise ConfigError(f"bands must be 1-based band numbers, got {list(bands)}")
        bands = tuple(int(b) for b in bands)
    if expected_bands is not None and expected_bands < 1:
        raise ConfigError(f"expected_bands must be at least 1, got {expected_bands}")
    if chip_size is not None and chip_size < 1:
        raise ConfigError(f"chip_size must be a positive number of pixels, got {chip_size}")
    if nodata is not None and not math.isfinite(nodata):
        raise ConfigError(f"nodata must be a finite number, got {nodata}")
    return ScanOptions(
        bands=bands, expected_bands=expected_bands, chip_size=chip_size, nodata=nodata
    )


def _reindexed(rec: TileRecord, index: int) -> TileRecord:
    """Point the record's region windows at tile ``index``."""
    if any(r.window.tile != index for r in rec.regions):
        rec.regions = [
            Region(Window(index, r.window.row, r.window.col, r.window.height, r.window.width),
                   r.hist, r.ignored)
            for r in rec.regions
        ]
    return rec


class Catalog:
    """Validated tiles of one image folder (and its labels), with class histograms.

    Args:
        tiles: the tile records, in catalogue order.
        schema: the class schema the histograms use.
        images_dir: the image folder.
        labels: the label folder or vector file, or None.
        chip_size: side of the chip regions, or None (one region per tile).
    """

    def __init__(
        self, tiles: Sequence[TileRecord], schema: ClassSchema, images_dir: Path,
        labels: Path | None = None, chip_size: int | None = None,
    ) -> None:
        self.schema = schema
        self.tiles = [_reindexed(t, i) for i, t in enumerate(tiles)]
        self.images_dir = images_dir
        self.labels = labels
        self.chip_size = chip_size

    @classmethod
    def scan(
        cls, images: Path, labels: Path | None, schema: ClassSchema, *,
        image_glob: str = "*.tif", label_glob: str | None = None,
        bands: Sequence[int] | None = None, expected_bands: int | None = None,
        label_attribute: str = "class", unlabelled: Literal["background", "ignore"] = "background",
        chip_size: int | None = None, cache: bool = True, progress: bool = False,
        nodata: float | None = None,
    ) -> Catalog:
        """Pair, validate and read an image folder and its labels.

        Args:
            images: folder of image rasters.
            labels: folder of label rasters, a polygon file (.gpkg/.shp/.geojson), or None.
            schema: class schema (label values -> class ids).
            image_glob: image file names (case-insensitive; ``.tif`` also matches ``.tiff``).
            label_glob: label file names (default: ``image_glob``).
            bands: 1-based image bands to use (default: all but alpha).
            expected_bands: number of non-alpha bands each image must have.
            label_attribute: class attribute of vector labels.
            unlabelled: vector labels only: pixels outside polygons are background or ignore.
            chip_size: cut tiles into chip regions of this size (default: one region per tile).
            cache: read and write the manifest cache.
            progress: show a progress bar while files are read.
            nodata: nodata value of images whose file declares none (a tag in the file wins).

        Raises:
            DataError: a missing, unreadable or inconsistent file (the message names it).
            ConfigError: contradictory options.
        """
        options = _options(bands, expected_bands, chip_size, nodata)
        images = Path(images).absolute()
        labels = None if labels is None else Path(labels).absolute()
        vector = None
        if labels is not None and is_vector(labels):
            vector = VectorLabels(labels, schema, label_attribute, unlabelled)
        elif labels is not None and labels.is_file():
            raise DataError(
                labels, "is a file; labels are a folder of rasters or a .gpkg/.shp/.geojson file"
            )
        pairs = pair_files(images, None if vector else labels, image_glob, label_glob)
        key = manifest_key({
            "images": str(images), "labels": None if labels is None else str(labels),
            "image_glob": image_glob, "label_glob": label_glob, "bands": options.bands,
            "expected_bands": expected_bands, "schema": schema.to_dict(), "chip_size": chip_size,
            "unlabelled": unlabelled, "label_attribute": label_attribute if vector else None,
            **({"nodata": nodata} if nodata is not None else {}),
        })
        tiles = _collect(pairs, schema, options, key, vector, cache, progress)
        catalog = cls(tiles, schema, images, labels, chip_size)
        catalog._check_consistent()
        return catalog

    @classmethod
    def from_pairs(
        cls, pairs: Sequence[Pair], schema: ClassSchema, source: Path, *,
        labels_source: Path | None = None, bands: Sequence[int] | None = None,
        expected_bands: int | None = None, chip_size: int | None = None, cache: bool = True,
        progress: bool = False, nodata: float | None = None,
    ) -> Catalog:
        """Validate and read image/label raster pairs found by other means than a folder glob.

        Used for datasets read from their distribution layout (:mod:`geociss.data.isprs`). The
        paths may be GDAL ``/vsizip/`` paths of rasters inside zip archives
        (:mod:`geociss.data.archives`).

        Args:
            pairs: the image/label pairs, in catalogue order (stems must be unique).
            schema: class schema (label values -> class ids).
            source: where the images were found (shown by ``geociss scan``, named in errors).
            labels_source: where the labels were found (default: ``source``).
            bands: 1-based image bands to use (default: all but alpha).
            expected_bands: number of non-alpha bands each image must have.
            chip_size: cut tiles into chip regions of this size (default: one region per tile).
            cache: read and write the manifest cache.
            progress: show a progress bar while files are read.
            nodata: nodata value of images whose file declares none (a tag in the file wins).

        Raises:
            DataError: a missing, unreadable or inconsistent file (the message names it).
            ConfigError: contradictory options.
        """
        options = _options(bands, expected_bands, chip_size, nodata)
        key = manifest_key({
            "pairs": [[p.stem, str(p.image), None if p.label is None else str(p.label)]
                      for p in pairs],
            "bands": options.bands, "expected_bands": expected_bands,
            "schema": schema.to_dict(), "chip_size": chip_size,
            **({"nodata": nodata} if nodata is not None else {}),
        })
        tiles = _collect(list(pairs), schema, options, key, None, cache, progress)
        labels = None
        if any(p.label is not None for p in pairs):
            labels = Path(labels_source or source)
        catalog = cls(tiles, schema, Path(source), labels, chip_size)
        catalog._check_consistent()
        return catalog

    # ------------------------------------------------------------------ accessors

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self) -> Iterator[TileRecord]:
        return iter(self.tiles)

    def __getitem__(self, index: int) -> TileRecord:
        return self.tiles[index]

    def regions(self) -> list[Region]:
        """All regions of all tiles (chips, or whole tiles without a chip size)."""
        return [r for t in self.tiles for r in t.regions]

    @property
    def band_stats(self) -> BandStats:
        """Band statistics over the valid pixels of all tiles."""
        try:
            return BandStats.merge([t.stats for t in self.tiles])
        except ValueError:
            problem = "no valid image pixels (all nodata or masked)"
            raise DataError(self.images_dir, problem) from None

    @property
    def class_counts(self) -> np.ndarray:
        """Pixels per class id over all tiles (int64, length = number of classes)."""
        counts = np.zeros(self.schema.num_classes, dtype=np.int64)
        for t in self.tiles:
            counts += t.hist
        return counts

    @property
    def ignored(self) -> int:
        """Label pixels that are ignore/nodata over all tiles."""
        return sum(t.ignored for t in self.tiles)

    @property
    def crs(self) -> str | None:
        """WKT of the CRS shared by all tiles, or None (pixel space or mixed CRSs)."""
        wkts = {t.crs for t in self.tiles}
        if not wkts or None in wkts:
            return None
        first = next(iter(wkts))
        if len(wkts) > 1:
            from rasterio.crs import CRS

            ref = CRS.from_wkt(first)
            if any(CRS.from_wkt(w) != ref for w in wkts):  # type: ignore[arg-type]
                return None
        return first

    def _check_consistent(self) -> None:
        """All images must have the same band count and data type as the first."""
        if not self.tiles:
            return
        first = self.tiles[0]
        for t in self.tiles[1:]:
            if t.bands != first.bands:
                raise DataError(
                    t.image, f"has {t.bands} image band(s) but {first.image} has {first.bands}; "
                    "all images must have the same bands"
                )
            if t.dtype != first.dtype:
                raise DataError(
                    t.image, f"has data type {t.dtype} but {first.image} has {first.dtype}; "
                    "all images must have the same data type"
                )

    def summary(self) -> dict[str, Any]:
        """Plain data describing the catalogue (for ``geociss scan`` tables and JSON)."""
        counts = self.class_counts
        labelled = int(counts.sum())
        sizes = np.asarray([(t.width, t.height) for t in self.tiles]).reshape(-1, 2)
        crss = {t.crs for t in self.tiles}
        crs = self.crs
        gsds = {(abs(t.transform[0]), abs(t.transform[4])) for t in self.tiles if t.crs}
        stats = self.band_stats
        indexes = self.tiles[0].band_indexes or tuple(range(1, self.tiles[0].bands + 1))
        return {
            "images": str(self.images_dir),
            "labels": None if self.labels is None else str(self.labels),
            "tiles": len(self.tiles),
            "pixels": int(sum(t.width * t.height for t in self.tiles)),
            "size_min": sizes.min(axis=0).tolist(),
            "size_max": sizes.max(axis=0).tolist(),
            "crs": None if crs is None else crs_name(crs),
            "crs_note": "pixel space" if crss == {None} else ("mixed" if crs is None else ""),
            "gsd": list(next(iter(gsds))) if len(gsds) == 1 else None,
            "bands": self.tiles[0].bands,
            "dtype": self.tiles[0].dtype,
            "nodata": _nodata_counts(self.tiles),
            "labelled": labelled,
            "ignored": self.ignored,
            "classes": [
                {"id": c.id, "name": c.name, "pixels": int(counts[c.id]),
                 "share": float(counts[c.id] / labelled) if labelled else 0.0}
                for c in self.schema.classes
            ],
            "band_stats": [
                {"band": b, "mean": m, "std": s, "min": lo, "max": hi}
                for b, m, s, lo, hi in zip(
                    indexes, stats.mean, stats.std, stats.min, stats.max, strict=True
                )
            ],
        }


def _nodata_counts(tiles: Sequence[TileRecord]) -> list[dict[str, Any]]:
    """Tiles per nodata value (the file's tag or ``--nodata``; None: none), most common first.

    A NaN nodata value is the string ``"nan"`` (JSON has no NaN).
    """
    counts = Counter(
        None if t.nodata is None else "nan" if math.isnan(t.nodata) else float(t.nodata)
        for t in tiles
    )
    return [{"value": v, "tiles": n} for v, n in counts.most_common()]


def _collect(
    pairs: list[Pair], schema: ClassSchema, options: ScanOptions, key: str,
    vector: VectorLabels | None, cache: bool, progress: bool,
) -> list[TileRecord]:
    """Tile records of ``pairs`` in their order: cached ones reused, the others scanned."""
    manifest = Manifest.load(key) if cache else Manifest(None)
    vector_fp = source_fingerprint(vector.path) if vector else None
    cached: list[TileRecord] = []
    todo: list[tuple[Pair, dict[str, list[int]]]] = []
    for pair in pairs:
        try:
            fp = {"image": file_fingerprint(pair.image)}
            if pair.label is not None:
                fp["label"] = file_fingerprint(pair.label)
            elif vector_fp is not None:
                fp["label"] = vector_fp
        except OSError as err:
            raise DataError(err.filename or pair.image, "file not found") from None
        rec = manifest.reusable(pair.image, pair.label, fp)
        if rec is None:
            todo.append((pair, fp))
        else:
            cached.append(rec)
    fresh = _scan_pairs(todo, schema, options, vector, manifest, cached, progress)
    order = {p.image: i for i, p in enumerate(pairs)}
    return sorted(cached + fresh, key=lambda r: order[r.image])


def _scan_pairs(
    todo: list[tuple[Pair, dict[str, list[int]]]], schema: ClassSchema, options: ScanOptions,
    vector: VectorLabels | None, manifest: Manifest, cached: list[TileRecord], progress: bool,
) -> list[TileRecord]:
    """Scan the pairs that the manifest could not answer; save the manifest even on failure."""
    fresh: list[TileRecord] = []
    items: Any = todo
    if progress and todo:
        from rich.progress import track

        items = track(todo, description="scanning rasters", transient=True)
    try:
        for pair, fp in items:
            label, encoded = pair.label, False
            if vector is not None:
                label = vector.rasterised(pair.image, pair.stem, cache_dir() / "vector-labels")
                encoded = True
            rec = tile_scan.scan_tile(pair.image, label, pair.stem, schema, options,
                                      label_encoded=encoded)
            rec.fingerprint = fp
            fresh.append(rec)
    finally:
        if fresh or len(cached) != len(manifest.records):
            manifest.save(cached + fresh)
    return fresh
