"""The forward pass around the model: input types, threads, and what the reader hands over."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_nets import MEAN, STD, conv_net, image

from geociss.inference.grid import TileGrid
from geociss.inference.predictor import Predictor, torch_threads
from geociss.inference.source import RasterInput, TileDataset, collate_tiles

from fakes import write_tif


@pytest.mark.parametrize("normalise", [True, False])
def test_integer_tiles_give_the_same_probabilities_as_float_tiles(normalise):
    stats = {"mean": MEAN, "std": STD} if normalise else {}
    predictor = Predictor(conv_net(), device="cpu", **stats)
    raw = torch.from_numpy(image(40, 48, seed=3)[None])
    assert raw.dtype == torch.uint8
    before = raw.clone()
    assert torch.equal(predictor(raw), predictor(raw.float()))
    assert torch.equal(raw, before)  # the caller's batch is never modified
    floats = raw.float()
    predictor(floats)
    assert torch.equal(floats, raw.float())


def test_elementwise_work_runs_on_one_thread_and_restores_the_count():
    threads = torch.get_num_threads()
    predictor = Predictor(conv_net(), device="cpu")
    with predictor.elementwise():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == threads
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError
    assert torch.get_num_threads() == threads
    with torch_threads(None):
        assert torch.get_num_threads() == threads


@pytest.mark.parametrize(("dtype", "sent"), [("uint8", np.uint8), ("uint16", np.float32)])
def test_reader_hands_over_exact_integer_types_as_read(tmp_path, dtype, sent):
    pixels = image(70, 90, seed=1).astype(dtype)
    pixels[:, :10, :20] = 0  # nodata corner
    src = RasterInput.open(write_tif(tmp_path / "in.tif", pixels, nodata=0), 3)
    grid = TileGrid.build(src.height, src.width, 64, 16)
    tiles = [TileDataset(src, grid)[i] for i in range(len(grid))]
    clean = collate_tiles(tiles[1:2])  # no nodata in the second tile: the type as read
    assert clean.images is not None and clean.images.numpy().dtype == sent
    first = tiles[0]  # nodata is NaN (the band mean after normalisation): float32
    assert first.image is not None and first.valid is not None
    assert not first.valid[:10, :20].any() and first.valid[10:, 20:].all()
    expected = pixels[:, :64, :64].astype(np.float32)
    expected[:, ~first.valid] = np.nan
    np.testing.assert_array_equal(first.image, expected)
    batch = collate_tiles(tiles)
    assert batch.images is not None and batch.images.numpy().dtype == np.float32
