"""Plain records shared by the catalogue, the scenarios and the window sampler.

All windows are integer pixel windows ``(row, col, height, width)`` in the raster's own grid;
georeferencing is derived from the raster's affine transform, never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Window:
    """An integer pixel window of one catalogue tile.

    Attributes:
        tile: index of the tile in :attr:`Catalog.tiles`.
        row: first row (may be negative or run past the raster only for boundless reads).
        col: first column.
        height: rows.
        width: columns.
    """

    tile: int
    row: int
    col: int
    height: int
    width: int

    def as_rasterio(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((row_start, row_stop), (col_start, col_stop))``, as ``Window.from_slices`` takes."""
        return (self.row, self.row + self.height), (self.col, self.col + self.width)


@dataclass(frozen=True)
class BandStats:
    """Per-band statistics over the valid pixels of a tile (mergeable across tiles)."""

    count: int
    sum: tuple[float, ...]
    sumsq: tuple[float, ...]
    min: tuple[float, ...]
    max: tuple[float, ...]

    @staticmethod
    def merge(stats: list[BandStats]) -> BandStats:
        """Combine statistics of several tiles."""
        stats = [s for s in stats if s.count > 0]
        if not stats:
            raise ValueError("no valid pixels to compute band statistics from")
        return BandStats(
            count=sum(s.count for s in stats),
            sum=tuple(np.sum([s.sum for s in stats], axis=0).tolist()),
            sumsq=tuple(np.sum([s.sumsq for s in stats], axis=0).tolist()),
            min=tuple(np.min([s.min for s in stats], axis=0).tolist()),
            max=tuple(np.max([s.max for s in stats], axis=0).tolist()),
        )

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-band mean."""
        return tuple((np.asarray(self.sum) / max(self.count, 1)).tolist())

    @property
    def std(self) -> tuple[float, ...]:
        """Per-band standard deviation (population), floored at 1e-6.

        Infinite values in the data give NaN or infinity here (without a numpy warning); the
        callers refuse such statistics (:func:`geociss.integrity.check_normalization`).
        """
        m = np.asarray(self.mean)
        with np.errstate(invalid="ignore", over="ignore"):
            var = np.asarray(self.sumsq) / max(self.count, 1) - m * m
            return tuple(np.sqrt(np.maximum(var, 1e-12)).tolist())


@dataclass(frozen=True)
class Region:
    """A selectable unit of training data: a chip of a tile with its class histogram.

    Scenarios select regions (overlap/disjoint, :mod:`geociss.data.scenarios`) on their original
    labels; the training sampler draws random windows inside the selected regions. With no chip
    size a region is a whole tile.

    Attributes:
        window: the region's pixel window (inside the raster).
        hist: pixel count per class id (length = number of classes of the schema).
        ignored: pixels labelled ignore (255), nodata included.
    """

    window: Window
    hist: np.ndarray
    ignored: int

    @property
    def tile(self) -> int:
        """Index of the tile the region belongs to."""
        return self.window.tile

    @property
    def labelled(self) -> int:
        """Pixels with a class label."""
        return int(self.hist.sum())

    def classes(self) -> set[int]:
        """Ids of the classes present in the region."""
        return {int(i) for i in np.flatnonzero(self.hist)}


@dataclass
class TileRecord:
    """One image raster (and its label raster, if any) as validated by the catalogue.

    Attributes:
        stem: file stem shared by image and label.
        image: image path.
        label: label raster path (for vector labels: the rasterised copy in the cache), or None.
        label_encoded: True when ``label`` already holds class ids (rasterised vectors);
            False when it holds raw values that :meth:`ClassSchema.encode` maps.
        width: columns.
        height: rows.
        bands: number of image bands read (alpha band excluded).
        dtype: image data type name.
        crs: CRS as WKT, or None for rasters in pixel space.
        transform: affine transform coefficients ``(a, b, c, d, e, f)``.
        nodata: image nodata value, or None.
        has_mask: the image carries an alpha band or an internal mask.
        hist: pixel count per class over the whole tile (zeros when there is no label).
        ignored: label pixels that are ignore/nodata.
        stats: band statistics over valid pixels.
        fingerprint: size and mtime of the image and label files, for the manifest cache.
        regions: chips of the tile with their histograms.
        band_indexes: 1-based image bands that ``bands`` counts (alpha excluded, in the order
            read); empty means ``1..bands``.
    """

    stem: str
    image: Path
    label: Path | None
    label_encoded: bool
    width: int
    height: int
    bands: int
    dtype: str
    crs: str | None
    transform: tuple[float, float, float, float, float, float]
    nodata: float | None
    has_mask: bool
    hist: np.ndarray
    ignored: int
    stats: BandStats
    fingerprint: dict[str, list[float]] = field(default_factory=dict)
    regions: list[Region] = field(default_factory=list)
    band_indexes: tuple[int, ...] = ()

    @property
    def georeferenced(self) -> bool:
        """True when the tile has a CRS (otherwise it is used in pixel space)."""
        return self.crs is not None
