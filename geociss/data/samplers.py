"""Window samplers: random windows for training, a regular grid for evaluation and prediction.

All window arithmetic is in integer pixels of each raster's own grid, so there is no float
drift (torchgeo 0.8's grid sampler works in CRS units: on a 2048² tile at 0.09 m, rounding makes
81 chips of 256² where 8 x 8 = 64 fit, the extra ones past the tile edge).

Both samplers are ``torch.utils.data.Sampler`` s of :class:`Window` s; pair them with
:class:`geociss.data.dataset.WindowDataset`. They run in the main process (DataLoader workers
only receive the windows), so the stream is the same for any ``num_workers``.

**Distributed training (DDP).** Give each rank its ``rank`` and ``world_size``: the random
sampler draws one global stream per epoch (the same on every rank, from ``seed`` and the
epoch) and rank ``r`` takes windows ``r, r + world_size, ...``, so ranks see disjoint windows
and equal counts. With Lightning, either pass ``rank``/``world_size`` yourself and set
``Trainer(use_distributed_sampler=False)``, or leave them at 0/1 and let Lightning wrap the
sampler in its ``DistributedSamplerWrapper``, which shards the same stream across ranks.
Either way Lightning calls :meth:`set_epoch` each epoch (the wrapper forwards it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from torch.utils.data import Sampler

from geociss.data.records import Region, TileRecord, Window
from geociss.errors import ConfigError, DataError

Size = int | tuple[int, int]


def _pair(value: Size, name: str) -> tuple[int, int]:
    h, w = (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))
    if h < 1 or w < 1:
        raise ConfigError(f"{name} must be a positive number of pixels, got {value}")
    return h, w


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is not in 0..world_size-1 (world_size={world_size})")


def grid_origins(n: int, size: int, stride: int) -> list[int]:
    """First pixels of windows of ``size`` that cover ``0..n-1`` with step ``stride``.

    Origins are ``0, stride, 2*stride, ...`` while the window fits, and the last window is
    pulled back to end exactly at ``n`` (no window leaves the raster, none is repeated). When
    ``n <= size`` there is one window at 0, which runs past the end (read it padded).

    Args:
        n: length of the axis in pixels.
        size: window length.
        stride: step between windows, 1 <= stride <= size.

    Returns:
        Sorted distinct origins.

    Raises:
        ConfigError: a non-positive length or size, or a stride outside 1..size.
    """
    if n < 1 or size < 1:
        raise ConfigError(f"axis length and window size must be positive, got {n} and {size}")
    if not 1 <= stride <= size:
        raise ConfigError(f"stride must be between 1 and the window size {size}, got {stride}")
    if n <= size:
        return [0]
    origins = list(range(0, n - size + 1, stride))
    if origins[-1] != n - size:
        origins.append(n - size)
    return origins


class GridWindowSampler(Sampler[Window]):
    """Every window of a regular grid over tiles or regions, in a fixed order.

    Over tiles, the grid covers the whole raster (tile ``i`` of the sequence is ``Window.tile``
    ``i``). Over regions, it covers each region's window. Along each axis the origins are
    :func:`grid_origins`: windows stay inside the raster/region, the last one is pulled back
    to its far edge, and an axis shorter than the window gets one window at the start that is
    read padded. Order: tiles/regions as given, then rows, then columns.

    Args:
        items: catalogue tiles, or regions.
        size: window size in pixels, ``int`` or ``(height, width)``.
        stride: step between windows (default: ``size``, no overlap).
        rank: this process's rank; windows ``rank, rank + world_size, ...`` are yielded.
        world_size: number of processes sharing the grid (ranks may differ by one window).

    Raises:
        ConfigError: invalid size, stride or rank.
    """

    def __init__(
        self,
        items: Sequence[TileRecord] | Sequence[Region],
        size: Size,
        stride: Size | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        _check_rank(rank, world_size)
        self.size = _pair(size, "size")
        self.stride = self.size if stride is None else _pair(stride, "stride")
        self.rank, self.world_size = rank, world_size
        windows: list[Window] = []
        for i, item in enumerate(items):
            if isinstance(item, Region):
                r = item.window
                tile, row, col, height, width = r.tile, r.row, r.col, r.height, r.width
            else:
                tile, row, col, height, width = i, 0, 0, item.height, item.width
            rows = grid_origins(height, self.size[0], self.stride[0])
            cols = grid_origins(width, self.size[1], self.stride[1])
            windows.extend(
                Window(tile, row + r0, col + c0, self.size[0], self.size[1])
                for r0 in rows
                for c0 in cols
            )
        self.windows = windows

    def __iter__(self) -> Iterator[Window]:
        return iter(self.windows[self.rank :: self.world_size])

    def __len__(self) -> int:
        return len(range(self.rank, len(self.windows), self.world_size))


class RandomWindowSampler(Sampler[Window]):
    """Random training windows drawn inside regions, reproducible from a seed and the epoch.

    Each draw picks a region with probability proportional to its weight, then a window
    position uniformly among the integer positions allowed:

    * **Region weight.** Without ``class_weights``, the region's labelled area
      ``Σ_c hist_c`` (ignore/nodata pixels do not count). With ``class_weights`` ``w``, it is
      ``Σ_c w_c · hist_c`` (``w_c`` = 1 for classes not listed), i.e. the labelled area times
      the mean class weight of its pixels: a region that holds rare classes (cars) is drawn
      more often, in proportion to how much of them it holds. Regions of weight 0 are never
      drawn.
    * **Position.** Along an axis where the region is at least as long as the window, the
      window lies inside the region. Where the region is shorter, the window contains the
      whole region, kept inside the raster when ``tiles`` gives its size; when the raster
      itself is shorter than the window (or ``tiles`` is not given), the window is centred on
      the region and read padded.

    The stream of epoch ``e`` is drawn from ``numpy.random.default_rng([seed, e])``: the same
    seed and epoch give the same windows, another epoch gives other windows.

    Args:
        regions: the regions to draw from; ``Window.tile`` of a region is kept.
        size: window size in pixels, ``int`` or ``(height, width)``.
        length: windows per epoch, over all ranks.
        seed: random seed.
        class_weights: optional weight per class id (see above), all >= 0.
        tiles: catalogue tiles (indexed by ``Window.tile``), to keep windows inside rasters.
        rank: this process's rank in a distributed run.
        world_size: number of processes; each yields ``ceil(length / world_size)`` windows.

    Raises:
        ConfigError: invalid size, length, weights or rank.
        DataError: no region has a positive weight.
    """

    def __init__(
        self,
        regions: Sequence[Region],
        size: Size,
        length: int,
        seed: int = 0,
        class_weights: Mapping[int, float] | None = None,
        tiles: Sequence[TileRecord] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        _check_rank(rank, world_size)
        if length < 1:
            raise ConfigError(f"length must be a positive number of windows, got {length}")
        self.size = _pair(size, "size")
        self.length, self.seed, self.epoch = int(length), int(seed), 0
        self.rank, self.world_size = rank, world_size
        self.regions = list(regions)
        weights = region_weights(self.regions, class_weights)
        if not self.regions or weights.sum() <= 0:
            raise DataError(None, "no labelled pixels in the regions to draw training windows from")
        self.probabilities = weights / weights.sum()
        self._bounds = _position_bounds(self.regions, self.size, tiles)

    def set_epoch(self, epoch: int) -> None:
        """Select the stream of ``epoch`` (call before each epoch; Lightning does)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-self.length // self.world_size)

    def __iter__(self) -> Iterator[Window]:
        total = len(self) * self.world_size
        rng = np.random.default_rng([self.seed, self.epoch])
        picks = rng.choice(len(self.regions), size=total, p=self.probabilities)
        lo, hi = self._bounds[0][picks], self._bounds[1][picks]
        origins = rng.integers(lo, hi, endpoint=True)
        h, w = self.size
        for k in range(self.rank, total, self.world_size):
            tile = self.regions[int(picks[k])].tile
            yield Window(tile, int(origins[k, 0]), int(origins[k, 1]), h, w)


def region_weights(
    regions: Sequence[Region], class_weights: Mapping[int, float] | None = None
) -> np.ndarray:
    """Drawing weight of each region: ``Σ_c w_c · hist_c`` (``w_c`` = 1 unless given).

    Args:
        regions: regions with class histograms of equal length.
        class_weights: weight per class id; classes not listed weigh 1.

    Returns:
        float64 weights, one per region.

    Raises:
        ConfigError: a negative or non-finite weight, or a class id outside the histogram.
    """
    if not regions:
        return np.zeros(0)
    hist = np.stack([np.asarray(r.hist, dtype=np.float64) for r in regions])
    w = np.ones(hist.shape[1])
    for cls, value in (class_weights or {}).items():
        if not 0 <= int(cls) < hist.shape[1]:
            raise ConfigError(f"class weight for unknown class id {cls} (0..{hist.shape[1] - 1})")
        if not np.isfinite(value) or value < 0:
            raise ConfigError(f"class weight of class {cls} must be finite and >= 0, got {value}")
        w[int(cls)] = float(value)
    return hist @ w


def _axis_bounds(start: int, extent: int, size: int, raster: int | None) -> tuple[int, int]:
    """Lowest and highest allowed window origin along one axis (integers, inclusive)."""
    if extent >= size:
        return start, start + extent - size
    if raster is None or raster < size:
        centre_on, length = (start, extent) if raster is None else (0, raster)
        origin = centre_on - (size - length) // 2
        return origin, origin
    lo = max(start + extent - size, 0)
    hi = min(start, raster - size)
    return lo, hi


def _position_bounds(
    regions: Sequence[Region], size: tuple[int, int], tiles: Sequence[TileRecord] | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` arrays of shape (regions, 2): allowed (row, col) origins per region."""
    lo = np.zeros((len(regions), 2), np.int64)
    hi = np.zeros((len(regions), 2), np.int64)
    for i, region in enumerate(regions):
        r = region.window
        rows = None if tiles is None else tiles[r.tile].height
        cols = None if tiles is None else tiles[r.tile].width
        lo[i, 0], hi[i, 0] = _axis_bounds(r.row, r.height, size[0], rows)
        lo[i, 1], hi[i, 1] = _axis_bounds(r.col, r.width, size[1], cols)
    return lo, hi
