"""Tile grid and blending weights: coverage, margins, borders, small rasters, bad settings."""

from __future__ import annotations

import numpy as np
import pytest

from geociss.errors import ConfigError
from geociss.inference.grid import TileGrid, axis_weights, default_margin, ramp, split_range


def _weight_sum(grid: TileGrid) -> np.ndarray:
    total = np.zeros((grid.height, grid.width))
    for t in range(len(grid)):
        i, j, y, x = grid.origin(t)
        total[y : y + grid.tile_h, x : x + grid.tile_w] += grid.weight(i, j)
    return total


def test_grid_covers_a_non_divisible_raster_inside_its_bounds():
    grid = TileGrid.build(300, 250, tile=64, overlap=32)
    assert grid.margin == default_margin(32) == 4 and grid.stride == 32
    assert grid.rows == (0, 32, 64, 96, 128, 160, 192, 224, 236)
    assert grid.cols[-1] == 250 - 64 and grid.shape == (9, 7) and len(grid) == 63
    assert not grid.padded
    total = _weight_sum(grid)
    assert total.min() > 0.5  # every pixel is predicted by some tile with real weight


def test_ramps_of_neighbours_sum_to_one_and_vanish_on_the_margin():
    r = ramp(32, 4)
    assert np.allclose(r + r[::-1], 1.0)
    assert (r[:4] == 0).all() and (r[-4:] == 1).all() and (np.diff(r) >= 0).all()
    # a regular overlap: the two tiles' weights are a partition of unity
    w = axis_weights([0, 32, 64], 128, 64, 4)
    assert np.allclose(w[0][32:] + w[1][:32], 1.0)


def test_weight_is_zero_at_inner_edges_and_one_at_raster_borders():
    grid = TileGrid.build(200, 200, tile=64, overlap=32, margin=6)
    first, inner = grid.row_weight(0), grid.row_weight(1)
    assert first[0] == 1.0 and (first[:32] == 1.0).all()  # raster border: no neighbour
    assert (first[-6:] == 0).all() and (inner[:6] == 0).all() and (inner[-6:] == 0).all()
    last = grid.row_weight(len(grid.rows) - 1)
    assert last[-1] == 1.0
    w = grid.weight(1, 0)
    assert w.shape == (64, 64) and w.dtype == np.float32
    assert (w[:6] == 0).all() and (w[:, 0] > 0).any()


def test_clamped_last_tile_still_blends_to_positive_weight():
    # origins 0, 32, 36: three tiles overlap near the bottom edge
    grid = TileGrid.build(100, 64, tile=64, overlap=32)
    assert grid.rows == (0, 32, 36)
    total = _weight_sum(grid)
    assert total.min() > 0.5  # normalised by the weight sum, so it need not be exactly 1


def test_raster_smaller_than_a_tile_is_one_padded_tile_of_weight_one():
    grid = TileGrid.build(40, 50, tile=64, overlap=16)
    assert grid.padded and len(grid) == 1 and (grid.tile_h, grid.tile_w) == (40, 50)
    assert (grid.weight(0, 0) == 1).all()


def test_tile_rows_touching_a_row_range():
    grid = TileGrid.build(300, 250, tile=64, overlap=32)
    assert list(grid.tile_rows_for(0, 300)) == list(range(9))
    touching = grid.tile_rows_for(100, 140)
    for i in range(9):
        y, w = grid.rows[i], grid.row_weight(i)
        hits = (w[max(100 - y, 0) : max(140 - y, 0)] > 0).any()
        assert hits == (i in touching)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"tile": 8}, "at least 16"),
        ({"tile": 64, "overlap": 64}, "overlap"),
        ({"tile": 64, "overlap": 32, "margin": 16}, "margin"),
        ({"tile": 64, "overlap": -1}, "overlap"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, text):
    with pytest.raises(ConfigError, match=text):
        TileGrid.build(100, 100, **kwargs)


def test_split_range_is_block_aligned():
    assert split_range(2000, 3, 512) == [(0, 512), (512, 1536), (1536, 2000)]
    assert split_range(300, 4, 512) == [(0, 300)]
    assert split_range(1024, 1, 512) == [(0, 1024)]
