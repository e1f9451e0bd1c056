"""WindowDataset sample dicts, Collate with label look-up tables, DataLoader workers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from torch.utils.data import DataLoader

from geociss.data.classes import ClassSchema
from geociss.data.dataset import Collate, WindowDataset, collate_windows
from geociss.data.records import Window
from geociss.data.samplers import GridWindowSampler, RandomWindowSampler

from fakes import random_pair, record_for

ISPRS = ClassSchema.preset("isprs")


@pytest.fixture
def dataset(tmp_path):
    records = []
    for i, crs in enumerate(["EPSG:32632", None]):
        img, lbl = random_pair(tmp_path, f"t{i}", size=128, seed=i, crs=crs)
        records.append(record_for(img, lbl, ISPRS, tile=i, chip=64))
    return WindowDataset(records, ISPRS)


def test_sample_dict_types_and_georeferencing(dataset):
    sample = dataset[Window(0, 32, 48, 64, 64)]
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, 64, 64)
    assert sample["mask"].dtype == torch.uint8 and sample["mask"].shape == (64, 64)
    assert sample["nodata"] is None  # no invalid pixel in this window
    assert sample["tile"] == 0 and sample["window"] == (32, 48, 64, 64)
    record = dataset.tiles[0]
    with rasterio.open(record.image) as src:
        expected = src.window_transform(rasterio.windows.Window(48, 32, 64, 64))
        assert rasterio.crs.CRS.from_wkt(sample["crs"]) == src.crs
        raw = src.read(window=rasterio.windows.Window(48, 32, 64, 64))
    assert Affine(*sample["transform"]) == expected
    base = Affine(*record.transform)
    assert sample["transform"][2] == pytest.approx(base.c + 48 * base.a)
    assert sample["transform"][5] == pytest.approx(base.f + 32 * base.e)
    np.testing.assert_array_equal(sample["image"].numpy(), raw)
    assert dataset[Window(1, 0, 0, 16, 16)]["crs"] is None


def test_collate_stacks_and_remaps_with_lut(dataset):
    windows = [Window(0, 0, 0, 64, 64), Window(1, 100, 100, 64, 64)]  # the second is padded
    samples = [dataset[w] for w in windows]
    lut = np.full(256, 255, np.uint8)
    lut[[0, 1, 2, 3, 4, 5]] = [0, 0, 1, 2, 255, 3]
    batch = Collate(lut)(samples)
    assert batch["image"].shape == (2, 3, 64, 64) and batch["mask"].shape == (2, 64, 64)
    assert batch["mask"].dtype == torch.uint8 and batch["image"].dtype == torch.uint8
    raw = torch.stack([s["mask"] for s in samples])
    np.testing.assert_array_equal(batch["mask"].numpy(), lut[raw.numpy()])
    assert (batch["mask"][1, 28:] == 255).all()  # padding stays ignore
    assert batch["tile"] == [0, 1] and batch["window"][1] == (100, 100, 64, 64)
    assert batch["crs"][1] is None and len(batch["transform"]) == 2
    plain = collate_windows(samples)
    assert torch.equal(plain["mask"], raw)
    assert torch.equal(collate_windows(samples, lut)["mask"], batch["mask"])
    clone = pickle.loads(pickle.dumps(Collate(lut)))
    assert torch.equal(clone(samples)["mask"], batch["mask"])


def test_batched_reads_equal_single_reads(dataset):
    windows = [Window(0, 0, 0, 48, 48), Window(1, 100, -10, 48, 48), Window(0, 70, 80, 48, 48)]
    batch = dataset.__getitems__(windows)
    for window, sample in zip(windows, batch, strict=True):
        single = dataset[window]
        assert torch.equal(sample["image"], single["image"])
        assert torch.equal(sample["mask"], single["mask"])
        assert sample["transform"] == single["transform"] and sample["window"] == single["window"]
    lut = np.arange(256, dtype=np.uint8)[::-1].copy()
    lut[255] = 255
    singles = [dataset[w] for w in windows]
    for table in (None, lut):
        fast, slow = collate_windows(batch, table), collate_windows(singles, table)
        assert torch.equal(fast["image"], slow["image"]) and torch.equal(fast["mask"], slow["mask"])
    again = collate_windows(batch, lut)  # collating does not change the samples
    assert torch.equal(again["mask"], collate_windows(singles, lut)["mask"])
    mixed = dataset.__getitems__([Window(0, 0, 0, 16, 16), Window(0, 0, 0, 32, 32)])
    assert [s["mask"].shape for s in mixed] == [(16, 16), (32, 32)]


def test_batches_made_in_a_worker_are_shared_and_not_copied(dataset, monkeypatch):
    import geociss.data.dataset as module

    monkeypatch.setattr(module, "get_worker_info", lambda: object())  # as inside a worker
    samples = dataset.__getitems__([Window(0, 0, 0, 32, 32), Window(1, 8, 8, 32, 32)])
    batch = Collate(np.arange(256, dtype=np.uint8))(samples)
    assert batch["image"].is_shared() and batch["mask"].is_shared()
    assert batch["image"].data_ptr() == samples[0]["image"].data_ptr()  # no stacking copy
    assert torch.equal(batch["image"][1], dataset[Window(1, 8, 8, 32, 32)]["image"])


@pytest.mark.parametrize("lut", [np.zeros(255, np.uint8), np.full(256, 0.5), np.full(256, 300)])
def test_collate_rejects_bad_tables(lut):
    with pytest.raises(ValueError, match="look-up table"):
        Collate(lut)


def _batches(dataset, sampler, workers, context="fork"):
    lut = np.arange(256, dtype=np.uint8)
    lut[2] = 9
    loader = DataLoader(
        dataset, batch_size=4, sampler=sampler, num_workers=workers, collate_fn=Collate(lut),
        multiprocessing_context=context if workers else None,
    )
    return list(loader)


def _check_same_batches(dataset, context):
    dataset[Window(0, 0, 0, 8, 8)]  # the parent opens handles before the workers start
    sampler = RandomWindowSampler(
        [r for t in dataset.tiles for r in t.regions], 48, length=24, seed=5, tiles=dataset.tiles
    )
    single, multi = _batches(dataset, sampler, 0), _batches(dataset, sampler, 2, context)
    assert len(single) == len(multi) == 6
    for a, b in zip(single, multi, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        assert a["image"].dtype == torch.uint8 and a["mask"].dtype == torch.uint8
        assert (a["nodata"] is None) == (b["nodata"] is None)
        assert a["nodata"] is None or torch.equal(a["nodata"], b["nodata"])
        assert a["window"] == b["window"] and a["tile"] == b["tile"]
    assert any((b["mask"] == 9).any() for b in single)
    assert not any((b["mask"] == 2).any() for b in single)


def test_multiple_workers_yield_the_same_batches(dataset):
    _check_same_batches(dataset, "fork")


@pytest.mark.slow
def test_spawned_workers_yield_the_same_batches(dataset):
    _check_same_batches(dataset, "spawn")  # dataset, reader and collate travel pickled


def test_grid_batches_cover_the_tile(dataset):
    sampler = GridWindowSampler(dataset.tiles[:1], 48, 40)
    mosaic = np.full((128, 128), -1, np.int64)
    for batch in _batches(dataset, sampler, 0):
        for (row, col, h, w), mask in zip(batch["window"], batch["mask"].numpy(), strict=True):
            mosaic[row : row + h, col : col + w] = mask
    with rasterio.open(dataset.tiles[0].label) as src:
        expected = src.read(1).astype(np.int64)
    expected[expected == 2] = 9
    np.testing.assert_array_equal(mosaic, expected)
