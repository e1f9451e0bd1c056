"""Grid and random window samplers: bounds, coverage, reproducibility, weighting, ranks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from geociss.data.classes import ClassSchema
from geociss.data.reader import WindowReader
from geociss.data.records import BandStats, Region, TileRecord, Window
from geociss.data.samplers import (
    GridWindowSampler,
    RandomWindowSampler,
    grid_origins,
    region_weights,
)
from geociss.errors import ConfigError, DataError

from fakes import record_for, write_tif

ISPRS = ClassSchema.preset("isprs")


def _tile(height: int, width: int) -> TileRecord:
    stats = BandStats(1, (0.0,), (0.0,), (0.0,), (0.0,))
    return TileRecord(
        stem="t", image=None, label=None, label_encoded=False, width=width, height=height,  # type: ignore[arg-type]
        bands=3, dtype="uint8", crs=None, transform=(1, 0, 0, 0, -1, 0), nodata=None,
        has_mask=False, hist=np.zeros(6, np.int64), ignored=0, stats=stats,
    )


def _region(tile, row, col, h, w, hist=None) -> Region:
    hist = np.array([h * w, 0, 0, 0, 0, 0]) if hist is None else np.asarray(hist)
    return Region(Window(tile, row, col, h, w), hist, 0)


def _coverage(windows, height, width):
    count = np.zeros((height, width), np.int64)
    for w in windows:
        assert w.row >= 0 and w.row + w.height <= height
        assert w.col >= 0 and w.col + w.width <= width
        count[w.row : w.row + w.height, w.col : w.col + w.width] += 1
    return count


def test_grid_origins_cover_with_last_window_clamped():
    assert grid_origins(1000, 256, 192) == [0, 192, 384, 576, 744]
    assert grid_origins(2048, 256, 256) == [256 * i for i in range(8)]  # no float drift: 8, not 9
    assert grid_origins(256, 256, 64) == [0]
    assert grid_origins(100, 256, 256) == [0]
    assert grid_origins(257, 256, 256) == [0, 1]
    for n, size, stride in [(1000, 256, 192), (777, 64, 50), (513, 128, 1)]:
        o = grid_origins(n, size, stride)
        assert o == sorted(set(o)) and o[-1] == n - size
        assert all(b - a <= stride for a, b in itertools.pairwise(o))


@pytest.mark.parametrize("args", [(0, 256, 256), (100, 0, 1), (1000, 256, 0), (1000, 256, 300)])
def test_grid_origins_reject_bad_arguments(args):
    with pytest.raises(ConfigError):
        grid_origins(*args)


def test_grid_sampler_covers_every_pixel_once_or_more_inside_bounds():
    sampler = GridWindowSampler([_tile(1000, 1000)], 256, 192)
    windows = list(sampler)
    assert len(windows) == len(sampler) == 25
    assert len(set(windows)) == 25
    count = _coverage(windows, 1000, 1000)
    assert count.min() >= 1
    no_overlap = GridWindowSampler([_tile(2048, 2048)], 256)
    assert len(no_overlap) == 64
    assert (_coverage(list(no_overlap), 2048, 2048) == 1).all()


def test_grid_sampler_order_rectangular_and_small_tiles():
    tiles = [_tile(300, 500), _tile(100, 60)]
    windows = list(GridWindowSampler(tiles, (256, 128), (128, 128)))
    first = [w for w in windows if w.tile == 0]
    assert [(w.row, w.col) for w in first[:5]] == [(0, 0), (0, 128), (0, 256), (0, 372), (44, 0)]
    assert len(first) == 2 * 4
    assert windows[-1] == Window(1, 0, 0, 256, 128)  # smaller than the window: one, padded
    assert windows == list(GridWindowSampler(tiles, (256, 128), (128, 128)))


def test_grid_sampler_over_regions_and_ranks():
    regions = [_region(3, 512, 256, 512, 512), _region(0, 0, 0, 100, 512)]
    windows = list(GridWindowSampler(regions, 256))
    assert windows[:4] == [Window(3, r, c, 256, 256) for r in (512, 768) for c in (256, 512)]
    assert windows[4:] == [Window(0, 0, c, 256, 256) for c in (0, 256)]
    parts = [list(GridWindowSampler(regions, 256, rank=r, world_size=4)) for r in range(4)]
    assert sorted(itertools.chain(*parts), key=windows.index) == windows
    assert sum(len(p) for p in parts) == len(windows)


def test_random_windows_inside_regions_and_reproducible():
    regions = [_region(0, 0, 0, 512, 512), _region(1, 256, 128, 300, 400)]
    sampler = RandomWindowSampler(regions, 256, length=500, seed=7)
    windows = list(sampler)
    assert len(windows) == len(sampler) == 500
    for w in windows:
        reg = regions[w.tile].window
        assert (w.height, w.width) == (256, 256)
        assert reg.row <= w.row <= reg.row + reg.height - 256
        assert reg.col <= w.col <= reg.col + reg.width - 256
        assert isinstance(w.row, int) and isinstance(w.col, int)
    assert windows == list(RandomWindowSampler(regions, 256, length=500, seed=7))
    assert windows != list(RandomWindowSampler(regions, 256, length=500, seed=8))
    rows = [w.row for w in windows if w.tile == 0]  # spread over the whole allowed range
    assert min(rows) <= 10 and max(rows) >= 246


def test_random_sampler_epochs_change_the_stream_deterministically():
    sampler = RandomWindowSampler([_region(0, 0, 0, 1000, 1000)], 64, length=50, seed=1)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    sampler.set_epoch(0)
    assert list(sampler) == epoch0 and epoch1 != epoch0


def test_random_sampler_ranks_split_one_stream():
    regions = [_region(0, 0, 0, 1000, 1000), _region(1, 0, 0, 500, 800)]
    full = list(RandomWindowSampler(regions, 64, length=40, seed=3))
    parts = [list(RandomWindowSampler(regions, 64, length=40, seed=3, rank=r, world_size=4))
             for r in range(4)]
    assert [len(p) for p in parts] == [10] * 4
    assert [parts[k % 4][k // 4] for k in range(40)] == full
    uneven = RandomWindowSampler(regions, 64, length=41, seed=3, rank=1, world_size=4)
    assert len(uneven) == len(list(uneven)) == 11
    with pytest.raises(ConfigError):
        RandomWindowSampler(regions, 64, length=10, rank=4, world_size=4)


def test_small_regions_and_rasters():
    tiles = [_tile(1000, 1000), _tile(100, 1000)]
    small = [_region(0, 500, 950, 40, 50), _region(1, 0, 0, 100, 1000)]
    for w in RandomWindowSampler(small, 128, length=200, seed=0, tiles=tiles):
        if w.tile == 0:  # window contains the region and stays inside the raster
            assert w.row <= 500 and w.row + 128 >= 540 and w.row >= 0
            assert w.col <= 950 and w.col + 128 >= 1000 and w.col + 128 <= 1000
        else:  # raster shorter than the window: centred (padded) along rows
            assert w.row == -14 and 0 <= w.col <= 1000 - 128
    untiled = list(RandomWindowSampler([small[0]], 128, length=5, seed=0))
    assert {(w.row, w.col) for w in untiled} == {(500 - 44, 950 - 39)}  # centred on the region


def test_region_weights_and_empty_regions():
    regions = [_region(0, 0, 0, 10, 10, [10, 0, 0, 0, 5, 0]), _region(0, 0, 0, 10, 10, [0] * 6)]
    np.testing.assert_allclose(region_weights(regions), [15, 0])
    np.testing.assert_allclose(region_weights(regions, {4: 10.0, 0: 0.5}), [55, 0])
    windows = list(RandomWindowSampler(regions, 8, length=100, seed=0))
    assert all(w.row <= 2 for w in windows)
    with pytest.raises(DataError, match="no labelled pixels"):
        RandomWindowSampler(regions[1:], 8, length=10)
    with pytest.raises(ConfigError):
        RandomWindowSampler(regions, 8, length=10, class_weights={4: -1.0})
    with pytest.raises(ConfigError):
        RandomWindowSampler(regions, 8, length=10, class_weights={9: 1.0})
    with pytest.raises(ConfigError):
        RandomWindowSampler(regions, 8, length=0)


def test_class_weights_raise_the_share_of_windows_with_a_rare_class(tmp_path):
    label = np.zeros((256, 256), np.uint8)
    label[:, 128:] = 2
    label[40:64, 40:72] = 4  # a few cars in one of four 128-px regions
    img = write_tif(tmp_path / "i.tif", np.zeros((3, 256, 256), np.uint8))
    lbl = write_tif(tmp_path / "l.tif", label)
    record = record_for(img, lbl, ISPRS, chip=128)
    reader = WindowReader([record], ISPRS)

    def car_share(weights):
        sampler = RandomWindowSampler(
            record.regions, 96, length=400, seed=11, class_weights=weights
        )
        return np.mean([(reader.read(w)[1] == 4).any() for w in sampler])

    # plain: 1 region of 4 holds cars, equal areas -> 1/4; weighted: 169216 / 218368 = 0.77
    plain, weighted = car_share(None), car_share({4: 200.0})
    assert 0.17 < plain < 0.33
    assert 0.7 < weighted < 0.85
