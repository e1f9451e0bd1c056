"""The tile grid of one raster and the blending weight of each tile.

Tiles are ``tile`` x ``tile`` pixel windows on an integer grid with stride ``tile - overlap``
along each axis (:func:`geociss.data.samplers.grid_origins`: the last tile is pulled back to end
at the raster edge, so no tile leaves the raster). An axis shorter than ``tile`` has one tile,
read reflect-padded to ``tile`` and cropped back (zero padding would put dark borders into the
model's view).

Blending weight of a tile: the product of one weight per axis. Along an axis it is

* 0 on a margin of ``margin`` pixels at an edge the tile shares with a neighbour (the pixels
  whose prediction sees the tile border: keep ``margin`` >= the model's receptive-field halo);
* a raised-cosine ramp from 0 to 1 over the rest of the overlap with that neighbour, built so
  that the two neighbours' weights sum to exactly 1 at every pixel of the overlap;
* 1 everywhere else, including all the way to the raster edge on a side without a neighbour.

With ``margin`` at least the receptive-field halo, every pixel is predicted only by tiles that
see its full context, so tiled prediction equals whole-image prediction (up to float rounding).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from geociss.data.samplers import grid_origins
from geociss.errors import ConfigError


def default_margin(overlap: int) -> int:
    """The default zero-weight margin: an eighth of the overlap, at least 1."""
    return 0 if overlap < 3 else max(1, overlap // 8)


def ramp(overlap: int, margin: int) -> np.ndarray:
    """Weight of the later tile across an overlap of ``overlap`` pixels with the earlier one.

    Position 0 is the later tile's first pixel. The earlier tile's weight at the same pixels is
    ``ramp(...)[::-1]``, and the two sum to 1 everywhere.

    Args:
        overlap: pixels both tiles cover (> 2 * margin).
        margin: pixels of zero weight at the tile edge.

    Returns:
        float64 weights in [0, 1], length ``overlap``.
    """
    width = overlap - 2 * margin
    pos = (np.arange(overlap, dtype=np.float64) - margin + 0.5) / width
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(pos, 0.0, 1.0))


def check_tiling(tile: int, overlap: int, margin: int | None) -> int:
    """Validate tile settings; return the margin (the default when None).

    Raises:
        ConfigError: tile < 16, overlap outside 0..tile-1, or a margin not below overlap / 2.
    """
    if tile < 16:
        raise ConfigError(f"tile must be at least 16 pixels, got {tile}")
    if not 0 <= overlap < tile:
        raise ConfigError(f"overlap must be between 0 and tile - 1 ({tile - 1}), got {overlap}")
    margin = default_margin(overlap) if margin is None else margin
    if margin < 0 or (margin and 2 * margin >= overlap):
        raise ConfigError(
            f"margin must be >= 0 and less than half the overlap ({overlap}), got {margin}"
        )
    return margin


def axis_weights(origins: list[int], length: int, tile: int, margin: int) -> list[np.ndarray]:
    """Blending weight along one axis for each tile origin (float32, one array per tile).

    Args:
        origins: tile origins as :func:`grid_origins` returns them.
        length: length of the axis (pixels).
        tile: tile size.
        margin: zero-weight margin at inner tile edges.
    """
    size = min(tile, length)
    out = []
    for k, origin in enumerate(origins):
        w = np.ones(size, np.float64)
        if k > 0:
            ov = origins[k - 1] + tile - origin
            w[:ov] *= ramp(ov, margin)
        if k + 1 < len(origins):
            ov = origin + tile - origins[k + 1]
            w[size - ov :] *= ramp(ov, margin)[::-1]
        out.append(w.astype(np.float32))
    return out


@dataclass(frozen=True)
class TileGrid:
    """Tile origins and blending weights over one ``height`` x ``width`` raster.

    Build it with :meth:`build`. Tile ``(i, j)`` covers rows ``rows[i] .. rows[i] + tile_h`` and
    columns ``cols[j] .. cols[j] + tile_w`` (``tile_h = min(tile, height)``); the model always
    sees ``tile`` x ``tile`` pixels (reflect-padded when the raster is smaller).

    Attributes:
        height: raster rows.
        width: raster columns.
        tile: tile side in pixels.
        overlap: overlap between neighbouring tiles (at least; the last tile may overlap more).
        margin: zero-weight margin at inner tile edges.
        rows: tile row origins.
        cols: tile column origins.
    """

    height: int
    width: int
    tile: int
    overlap: int
    margin: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    _wy: list[np.ndarray] = field(repr=False, compare=False)
    _wx: list[np.ndarray] = field(repr=False, compare=False)

    @classmethod
    def build(
        cls, height: int, width: int, tile: int = 512, overlap: int = 128,
        margin: int | None = None,
    ) -> TileGrid:
        """Lay out the grid.

        Args:
            height: raster rows.
            width: raster columns.
            tile: tile side (>= 16 pixels).
            overlap: overlap between tiles, 0 <= overlap < tile.
            margin: zero-weight margin (default :func:`default_margin`); 2 * margin < overlap.

        Raises:
            ConfigError: an invalid size, overlap or margin.
        """
        if height < 1 or width < 1:
            raise ConfigError(f"raster size must be positive, got {width} x {height}")
        margin = check_tiling(tile, overlap, margin)
        stride = tile - overlap
        rows = grid_origins(height, tile, stride)
        cols = grid_origins(width, tile, stride)
        return cls(
            height, width, tile, overlap, margin, tuple(rows), tuple(cols),
            axis_weights(rows, height, tile, margin), axis_weights(cols, width, tile, margin),
        )

    @property
    def stride(self) -> int:
        """Step between tile origins."""
        return self.tile - self.overlap

    @property
    def tile_h(self) -> int:
        """Rows of a tile that lie inside the raster."""
        return min(self.tile, self.height)

    @property
    def tile_w(self) -> int:
        """Columns of a tile that lie inside the raster."""
        return min(self.tile, self.width)

    @property
    def padded(self) -> bool:
        """True when the raster is smaller than a tile along an axis (tiles are reflect-padded)."""
        return self.height < self.tile or self.width < self.tile

    @property
    def shape(self) -> tuple[int, int]:
        """``(tile rows, tile columns)``."""
        return len(self.rows), len(self.cols)

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def origin(self, index: int) -> tuple[int, int, int, int]:
        """``(i, j, row, col)`` of tile ``index`` (row-major order)."""
        i, j = divmod(index, len(self.cols))
        return i, j, self.rows[i], self.cols[j]

    def weight(self, i: int, j: int) -> np.ndarray:
        """Blending weight of tile ``(i, j)``: float32 ``(tile_h, tile_w)``."""
        return self._wy[i][:, None] * self._wx[j][None, :]

    def row_weight(self, i: int) -> np.ndarray:
        """Weight of tile row ``i`` along the rows (float32, ``tile_h``)."""
        return self._wy[i]

    def col_weight(self, j: int) -> np.ndarray:
        """Weight of tile column ``j`` along the columns (float32, ``tile_w``)."""
        return self._wx[j]

    @cached_property
    def row_total(self) -> np.ndarray:
        """Sum over tile rows of the row weights at each raster row (float32, ``height``).

        The weights are separable, so the total blending weight of pixel ``(y, x)`` over the
        tiles covering it is ``row_total[y] * col_total[x]``.
        """
        return _axis_total(self.rows, self._wy, self.height)

    @cached_property
    def col_total(self) -> np.ndarray:
        """Sum over tile columns of the column weights at each raster column (float32)."""
        return _axis_total(self.cols, self._wx, self.width)

    def tile_rows_for(self, y0: int, y1: int) -> range:
        """Tile rows that give rows ``y0 .. y1 - 1`` a non-zero weight, in order."""
        return _touching(self.rows, self._wy, y0, y1)

    def tile_cols_for(self, x0: int, x1: int) -> range:
        """Tile columns that give columns ``x0 .. x1 - 1`` a non-zero weight, in order."""
        return _touching(self.cols, self._wx, x0, x1)


def _axis_total(origins: tuple[int, ...], weights: list[np.ndarray], length: int) -> np.ndarray:
    total = np.zeros(length, np.float64)
    for o, w in zip(origins, weights, strict=True):
        total[o : o + len(w)] += w
    return total.astype(np.float32)


def _touching(origins: tuple[int, ...], weights: list[np.ndarray], a: int, b: int) -> range:
    """Indexes of the tiles whose non-zero weight meets ``[a, b)`` (a contiguous range)."""
    hits = [
        k for k, (o, w) in enumerate(zip(origins, weights, strict=True))
        if np.any(w[max(a - o, 0) : max(b - o, 0)] > 0)
    ]
    return range(hits[0], hits[-1] + 1) if hits else range(0)


def split_range(length: int, pieces: int, align: int) -> list[tuple[int, int]]:
    """Split ``0 .. length`` into at most ``pieces`` contiguous ranges of about equal size.

    Inner boundaries fall on multiples of ``align`` (a TIFF block size), so that every output
    block belongs to exactly one range; fewer ranges come back when ``length`` is too short.

    Args:
        length: length to split.
        pieces: wanted number of ranges (>= 1).
        align: boundary alignment (>= 1).

    Returns:
        ``[(start, stop), ...]`` covering ``0 .. length`` in order.
    """
    cuts = {0, length}
    for k in range(1, max(pieces, 1)):
        cut = round(k * length / pieces / align) * align
        if 0 < cut < length:
            cuts.add(cut)
    edges = sorted(cuts)
    return list(itertools.pairwise(edges))
