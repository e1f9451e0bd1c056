"""Batches cross the DataLoader's process boundary raw; the main process normalises them.

Workers hand over the raster's own dtype (uint8, uint16), uint8 masks and a bool ``nodata``
mask; ``normalise(..., nodata=...)`` in the main process must give exactly the float32 input of
the float path (NaN at invalid pixels, reflect padding, nodata → band mean → 0).
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from torch.utils.data import DataLoader

from geociss.data.classes import ClassSchema
from geociss.data.dataset import Collate, WindowDataset, wire_dtype
from geociss.data.normalise import input_columns, normalise
from geociss.data.reader import WindowReader
from geociss.data.records import Window
from geociss.engine.evaluate import owned_batches, owned_grid

from fakes import record_for, write_tif

ISPRS = ClassSchema.preset("isprs")
MEAN, STD = [900.0, 1200.5, 700.25], [300.0, 410.0, 95.5]
CLIP = ([50.0, 10.0, 0.0], [3000.0, 2500.0, 1800.0])
LUT = np.array([0, 0, 1, 2, 255, 3] + [255] * 250, np.uint8)
WINDOWS = [
    Window(0, 0, 0, 32, 32),  # inside, with part of the nodata block
    Window(0, 40, 40, 32, 32),  # inside, no invalid pixel
    Window(0, -6, -4, 32, 32),  # past two edges: the padding mirrors the nodata block
    Window(0, -6, 50, 32, 32),  # past two edges, nothing invalid
    Window(0, 90, 90, 32, 32),  # mostly outside
    Window(0, 200, 200, 32, 32),  # misses the raster: all nodata
]


def _tile(tmp_path, dtype, nodata):
    """A 3-band ``dtype`` tile (80²) with a nodata block at the top left and a NaN pixel."""
    rng = np.random.default_rng(3)
    top = 4000 if np.dtype(dtype).kind in "uf" and np.dtype(dtype).itemsize > 1 else 250
    data = rng.integers(1, top, (3, 80, 80)).astype(dtype)
    data[:, 2:12, 3:20] = nodata  # every band: invalid
    data[1, 20:24, 0:8] = nodata  # one band only: valid
    if np.dtype(dtype).kind == "f":
        data[2, 30, 30] = np.nan  # a NaN pixel of a float raster: invalid
    img = write_tif(tmp_path / "images" / "t.tif", data, nodata=nodata)
    label = np.kron(rng.integers(0, 6, (10, 10)), np.ones((8, 8), int)).astype(np.uint8)
    lbl = write_tif(tmp_path / "labels" / "t.tif", label)
    return record_for(img, lbl, ISPRS)


def _float_window(record, window):
    """The float32 window of the float path, computed directly from the whole raster."""
    with rasterio.open(record.image) as src:
        raw = src.read()
    image = raw.astype(np.float32)
    invalid = (raw == raw.dtype.type(record.nodata)).all(axis=0)
    if raw.dtype.kind == "f":
        invalid |= np.isnan(raw).any(axis=0)
    image[:, invalid] = np.nan
    _, height, width = raw.shape
    r0, c0 = max(window.row, 0), max(window.col, 0)
    r1, c1 = min(window.row + window.height, height), min(window.col + window.width, width)
    if r0 >= r1 or c0 >= c1:
        return np.full((raw.shape[0], window.height, window.width), np.nan, np.float32)
    pads = ((0, 0), (r0 - window.row, window.row + window.height - r1),
            (c0 - window.col, window.col + window.width - c1))
    return np.pad(image[:, r0:r1, c0:c1], pads, mode="reflect")


def _direct(record, window, clip):
    """The float path, computed directly: float32 with NaN, reflect pad, clip, scale, NaN → 0."""
    image = _float_window(record, window)
    reader = WindowReader([record], ISPRS)
    np.testing.assert_array_equal(reader.read_pair(window)[0], image)  # the reader agrees
    x = torch.from_numpy(image)[None]
    m, inv, low, high = input_columns(MEAN, STD, clip)
    if low is not None:
        x = torch.maximum(torch.minimum(x, high), low)  # NaN stays NaN
    out = (x - m) * inv
    return torch.where(torch.isnan(out), torch.zeros_like(out), out)


@pytest.mark.parametrize(("dtype", "nodata"), [(np.uint8, 0), (np.uint16, 65535)])
def test_worker_items_are_raw(tmp_path, dtype, nodata):
    record = _tile(tmp_path, dtype, nodata)
    ds = WindowDataset([record], ISPRS)
    batch = Collate(LUT)(ds.__getitems__(WINDOWS))
    assert batch["image"].dtype == torch.from_numpy(np.zeros(0, dtype)).dtype
    assert batch["mask"].dtype == torch.uint8 and batch["nodata"].dtype == torch.bool
    assert batch["nodata"].shape == batch["mask"].shape == (len(WINDOWS), 32, 32)
    assert batch["nodata"][0, 2:12, 3:20].all() and not batch["nodata"][1].any()
    assert batch["nodata"][2, 0, 0] and batch["nodata"][2, 4, 1]  # mirrored into the padding
    assert not batch["nodata"][3].any() and (batch["mask"][3, :6] == 255).all()
    assert batch["nodata"][5].all() and (batch["mask"][5] == 255).all()
    single = ds[WINDOWS[0]]
    assert single["image"].dtype == batch["image"].dtype and single["mask"].dtype == torch.uint8
    with_label = ds[WINDOWS[1]]  # a window without invalid pixels has no nodata mask
    assert with_label["nodata"] is None


@pytest.mark.parametrize(("dtype", "nodata"), [(np.uint8, 0), (np.uint16, 65535)])
@pytest.mark.parametrize("clip", [None, CLIP])
def test_main_process_conversion_equals_the_float_path(tmp_path, dtype, nodata, clip):
    record = _tile(tmp_path, dtype, nodata)
    ds = WindowDataset([record], ISPRS)
    m, inv, low, high = input_columns(MEAN, STD, clip)
    for samples in (ds.__getitems__(WINDOWS), [ds[w] for w in WINDOWS]):
        batch = Collate(LUT)(samples)
        got = normalise(batch["image"], m, inv, inplace=True, low=low, high=high,
                        nodata=batch["nodata"])
        assert got.dtype == torch.float32
        for i, window in enumerate(WINDOWS):
            expected = _direct(record, window, clip)[0]
            assert torch.equal(got[i], expected), window
    reader = WindowReader([record], ISPRS)
    for i, window in enumerate(WINDOWS):  # the masks are the float path's, through the table
        np.testing.assert_array_equal(batch["mask"][i].numpy(), LUT[reader.read(window)[1]])


def test_float_rasters_with_nan_and_float64_on_the_wire(tmp_path):
    record = _tile(tmp_path, np.float32, -9999.0)
    ds = WindowDataset([record], ISPRS)
    batch = Collate(LUT)(ds.__getitems__(WINDOWS))
    assert batch["image"].dtype == torch.float32 and batch["nodata"][0, 30, 30]  # the NaN pixel
    m, inv, _, _ = input_columns(MEAN, STD)
    got = normalise(batch["image"], m, inv, nodata=batch["nodata"])
    for i, window in enumerate(WINDOWS):
        assert torch.equal(got[i], _direct(record, window, None)[0]), window
    assert wire_dtype(np.dtype(np.float64)) == np.float32
    assert wire_dtype(np.dtype(np.uint16)) == np.uint16 and wire_dtype(np.int16) == np.int16


def test_collate_promotes_mixed_dtypes_and_missing_nodata():
    a = {"image": torch.full((1, 2, 2), 200, dtype=torch.uint8), "nodata": None,
         "mask": torch.zeros(2, 2, dtype=torch.uint8), "tile": 0}
    b = {"image": torch.full((1, 2, 2), 60000, dtype=torch.uint16),
         "nodata": torch.tensor([[True, False], [False, False]]),
         "mask": torch.ones(2, 2, dtype=torch.uint8), "tile": 1}
    batch = Collate()([a, b])
    assert batch["image"].dtype == torch.uint16
    assert batch["image"].flatten().tolist() == [200] * 4 + [60000] * 4
    assert batch["nodata"].tolist() == [[[False, False], [False, False]],
                                        [[True, False], [False, False]]]
    assert batch["mask"].dtype == torch.uint8 and batch["tile"] == [0, 1]


def test_workers_hand_over_raw_shared_batches(tmp_path):
    record = _tile(tmp_path, np.uint16, 65535)
    ds = WindowDataset([record], ISPRS)
    loader = DataLoader(ds, batch_size=2, sampler=WINDOWS, num_workers=2,
                        collate_fn=Collate(LUT), multiprocessing_context="fork")
    inline = list(DataLoader(ds, batch_size=2, sampler=WINDOWS, collate_fn=Collate(LUT)))
    m, inv, _, _ = input_columns(MEAN, STD)
    for a, b in zip(loader, inline, strict=True):
        assert a["image"].dtype == torch.uint16 and a["mask"].dtype == torch.uint8
        assert a["image"].is_shared() and a["mask"].is_shared()
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        x = normalise(a["image"], m, inv, nodata=a["nodata"])
        assert torch.equal(x, normalise(b["image"], m, inv, nodata=b["nodata"]))


def test_owned_batches_normalise_in_the_main_process(tmp_path):
    record = _tile(tmp_path, np.uint16, 65535)
    lut = np.arange(256, dtype=np.uint8)
    grid = owned_grid([record], 48, 16)
    batches = owned_batches([record], ISPRS, lut, MEAN, STD, size=48, overlap=16,
                            batch_size=3, device=torch.device("cpu"), clip=CLIP)
    seen = 0
    with torch.inference_mode():
        for chunk, x, target in batches:
            assert x.dtype == torch.float32 and target.dtype == torch.int64
            for i, item in enumerate(chunk):
                assert torch.equal(x[i], _direct(record, item.window, CLIP)[0])
            seen += len(chunk)
    assert seen == len(grid)


def test_prepass_batches_normalise_in_the_main_process(tmp_path):
    from types import SimpleNamespace

    from geociss.data.samplers import GridWindowSampler
    from geociss.engine.trainer import prepass_batches

    record = _tile(tmp_path, np.uint8, 0)
    cfg = SimpleNamespace(patch_size=48, batch_size=2, bands=None, num_workers=0)
    windows = list(GridWindowSampler(record.regions, 48, 48))
    batches = list(prepass_batches([record], ISPRS, record.regions, LUT, cfg, MEAN, STD,
                                   torch.device("cpu"), clip=CLIP))
    images = torch.cat([b["image"] for b in batches])
    masks = torch.cat([b["mask"] for b in batches])
    assert len(images) == len(windows) and masks.dtype == torch.int64
    reader = WindowReader([record], ISPRS)
    for i, window in enumerate(windows):
        assert torch.equal(images[i], _direct(record, window, CLIP)[0]), window
        np.testing.assert_array_equal(masks[i].numpy(), LUT[reader.read(window)[1]])
