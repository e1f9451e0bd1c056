"""WindowReader: windows, padding, nodata/alpha masks, label encoding, handles."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp

from geociss.data.classes import ClassSchema
from geociss.data.reader import WindowReader
from geociss.data.records import Window
from geociss.errors import DataError, UnknownLabelValueError

from fakes import random_pair, record_for, write_tif

ISPRS = ClassSchema.preset("isprs")


def _read_all(path, indexes=None):
    with rasterio.open(path) as src:
        return src.read(indexes)


@pytest.fixture
def pair(tmp_path):
    img, lbl = random_pair(tmp_path, "a", size=96, seed=3)
    return img, lbl, WindowReader([record_for(img, lbl, ISPRS)], ISPRS)


def test_inside_window_matches_the_raster(pair):
    img, lbl, reader = pair
    image, mask, valid = reader.read(Window(0, 10, 20, 32, 40))
    assert image.dtype == np.float32 and image.shape == (3, 32, 40)
    assert mask.dtype == np.uint8 and mask.shape == (32, 40)
    assert valid.all()
    np.testing.assert_array_equal(image, _read_all(img)[:, 10:42, 20:60].astype(np.float32))
    np.testing.assert_array_equal(mask, _read_all(lbl, 1)[10:42, 20:60])


def test_edge_window_is_reflect_padded_and_ignored(pair):
    img, lbl, reader = pair
    image, mask, valid = reader.read(Window(0, 80, -8, 32, 32))  # rows 80..111, cols -8..23
    inside = _read_all(img)[:, 80:96, 0:24].astype(np.float32)
    np.testing.assert_array_equal(image[:, :16, 8:], inside)
    np.testing.assert_array_equal(mask[:16, 8:], _read_all(lbl, 1)[80:96, 0:24])
    assert (mask[16:] == 255).all() and (mask[:, :8] == 255).all()
    # the padding mirrors the edge (as predict pads its tiles), without repeating it
    np.testing.assert_array_equal(image, np.pad(inside, ((0, 0), (0, 16), (8, 0)), "reflect"))
    np.testing.assert_array_equal(image[:, 16, 8:], inside[:, 14])
    assert valid[:16, 8:].all() and not valid[16:].any() and not valid[:, :8].any()


def test_small_raster_centred_window_pads_all_sides(tmp_path):
    img, lbl = random_pair(tmp_path, "s", size=40, seed=1)
    reader = WindowReader([record_for(img, lbl, ISPRS)], ISPRS)
    image, mask, valid = reader.read(Window(0, -12, -12, 64, 64))
    assert valid.sum() == 40 * 40 and valid[12:52, 12:52].all()
    assert (mask[~valid] == 255).all()
    np.testing.assert_array_equal(mask[12:52, 12:52], _read_all(lbl, 1))
    expected = np.pad(_read_all(img).astype(np.float32), ((0, 0), (12, 12), (12, 12)), "reflect")
    np.testing.assert_array_equal(image, expected)


def test_read_into_out_equals_plain_read(tmp_path):
    data = np.full((3, 40, 40), 9, np.uint8)
    data[:, :5] = 0
    img = write_tif(tmp_path / "i.tif", data, nodata=0)
    lbl = write_tif(tmp_path / "l.tif", np.ones((40, 40), np.uint8))
    reader = WindowReader([record_for(img, lbl, ISPRS)], ISPRS)
    for window in [Window(0, 0, 0, 32, 32), Window(0, -4, 20, 32, 32), Window(0, 99, 0, 32, 32)]:
        out = np.full((3, 32, 32), -1.0, np.float32)
        image, mask, valid = reader.read(window)
        got, got_mask, invalid = reader.read_pair(window, out=out)
        assert got is out
        np.testing.assert_array_equal(out, image)
        np.testing.assert_array_equal(got_mask, mask)
        np.testing.assert_array_equal(~valid, np.zeros_like(valid) if invalid is None else invalid)
    with pytest.raises(ValueError, match="float32"):
        reader.read_pair(Window(0, 0, 0, 32, 32), out=np.zeros((3, 32, 32), np.float64))


def test_window_outside_raster_is_all_ignore(pair):
    _, _, reader = pair
    image, mask, valid = reader.read(Window(0, 200, 200, 16, 16))
    assert (mask == 255).all() and not valid.any() and np.isnan(image).all()


def test_image_nodata_becomes_ignore(tmp_path):
    data = np.full((3, 32, 32), 50, np.uint8)
    data[:, :8, :] = 0  # all bands nodata -> invalid
    data[0, 8:16, :] = 0  # one band only -> still valid
    img = write_tif(tmp_path / "i.tif", data, nodata=0)
    lbl = write_tif(tmp_path / "l.tif", np.full((32, 32), 2, np.uint8))
    reader = WindowReader([record_for(img, lbl, ISPRS)], ISPRS)
    image, mask, valid = reader.read(Window(0, 0, 0, 32, 32))
    assert not valid[:8].any() and valid[8:].all()
    assert (mask[:8] == 255).all() and (mask[8:] == 2).all()
    assert np.isnan(image[:, :8]).all() and (image[1, 8:16] == 50).all()  # NaN: the band mean
    assert not np.isnan(image[:, 8:]).any()


def test_float_nan_pixels_are_invalid(tmp_path):
    data = np.ones((2, 16, 16), np.float32)
    data[1, 3, 4] = np.nan
    img = write_tif(tmp_path / "f.tif", data)
    reader = WindowReader([record_for(img, None, ISPRS)], ISPRS)
    image, mask, valid = reader.read(Window(0, 0, 0, 16, 16))
    assert not valid[3, 4] and valid.sum() == 255
    assert np.isnan(image[:, 3, 4]).all() and np.isfinite(image[:, valid]).all()
    assert (mask == 255).all()  # no label raster: everything ignored


def test_alpha_band_is_excluded_and_masks(tmp_path):
    rgba = np.full((4, 32, 32), 90, np.uint8)
    rgba[3] = 255
    rgba[3, :, :10] = 0
    path = tmp_path / "rgba.tif"
    profile = {"driver": "GTiff", "width": 32, "height": 32, "count": 4, "dtype": "uint8",
               "crs": "EPSG:32632", "transform": Affine(0.1, 0, 0, 0, -0.1, 0)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(rgba)
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    lbl = write_tif(tmp_path / "l.tif", np.ones((32, 32), np.uint8))
    reader = WindowReader([record_for(path, lbl, ISPRS)], ISPRS)
    image, mask, valid = reader.read(Window(0, 0, 0, 32, 32))
    assert image.shape == (3, 32, 32)
    assert not valid[:, :10].any() and valid[:, 10:].all()
    assert (mask[:, :10] == 255).all() and (mask[:, 10:] == 1).all()


def test_internal_mask_is_honoured(tmp_path):
    path = write_tif(tmp_path / "m.tif", np.full((3, 32, 32), 7, np.uint8))
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "r+") as dst:
        m = np.full((32, 32), 255, np.uint8)
        m[20:, :] = 0
        dst.write_mask(m)
    lbl = write_tif(tmp_path / "l.tif", np.zeros((32, 32), np.uint8))
    reader = WindowReader([record_for(path, lbl, ISPRS)], ISPRS)
    _, mask, valid = reader.read(Window(0, 0, 0, 32, 32))
    assert valid[:20].all() and not valid[20:].any()
    assert (mask[20:] == 255).all() and (mask[:20] == 0).all()


def test_raw_labels_are_encoded_and_label_nodata_ignored(tmp_path):
    schema = ClassSchema.from_dict({
        "classes": [
            {"id": 0, "name": "road", "color": "#ffffff", "values": [10]},
            {"id": 1, "name": "house", "color": "#0000ff", "values": [20, 21]},
        ],
        "ignore_values": [0],
    })
    raw = np.full((16, 16), 10, np.uint16)
    raw[4:8] = 21
    raw[8:10] = 0
    raw[12:] = 999  # label nodata
    img = write_tif(tmp_path / "i.tif", np.zeros((3, 16, 16), np.uint8))
    lbl = write_tif(tmp_path / "l.tif", raw, nodata=999)
    reader = WindowReader([record_for(img, lbl, schema)], schema)
    _, mask, _ = reader.read(Window(0, 0, 0, 16, 16))
    expected = np.zeros((16, 16), np.uint8)
    expected[4:8] = 1
    expected[8:10] = 255
    expected[12:] = 255
    np.testing.assert_array_equal(mask, expected)


def test_ignore_values_in_id_labels_pass_through(tmp_path):
    raw = np.zeros((16, 16), np.uint8)
    raw[:4] = 255
    raw[4:8] = 5
    img = write_tif(tmp_path / "i.tif", np.zeros((3, 16, 16), np.uint8))
    lbl = write_tif(tmp_path / "l.tif", raw)
    reader = WindowReader([record_for(img, lbl, ISPRS)], ISPRS)
    _, mask, valid = reader.read(Window(0, 0, 0, 16, 16))
    np.testing.assert_array_equal(mask, raw)
    assert valid.all()


def test_non_identity_index_schema_is_encoded(tmp_path):
    schema = ClassSchema.from_dict({
        "classes": [
            {"id": 0, "name": "a", "color": "#000000", "values": [1]},
            {"id": 1, "name": "b", "color": "#ffffff", "values": [0]},
        ],
    })
    raw = np.zeros((8, 8), np.uint8)
    raw[:, 4:] = 1
    img = write_tif(tmp_path / "i.tif", np.zeros((3, 8, 8), np.uint8))
    lbl = write_tif(tmp_path / "l.tif", raw)
    _, mask, _ = WindowReader([record_for(img, lbl, schema)], schema).read(Window(0, 0, 0, 8, 8))
    np.testing.assert_array_equal(mask, 1 - raw)


def test_rgb_labels_are_encoded(tmp_path):
    schema = ClassSchema.preset("isprs-rgb")
    colours = np.array(schema.colors, np.uint8)  # (classes, 3)
    ids = np.arange(16 * 16).reshape(16, 16) % schema.num_classes
    img = write_tif(tmp_path / "i.tif", np.zeros((3, 16, 16), np.uint8))
    lbl = write_tif(tmp_path / "l.tif", np.moveaxis(colours[ids], -1, 0).copy())
    reader = WindowReader([record_for(img, lbl, schema)], schema)
    _, mask, _ = reader.read(Window(0, 2, 3, 10, 10))
    np.testing.assert_array_equal(mask, ids[2:12, 3:13])


@pytest.mark.parametrize("with_ignore", [False, True])
def test_unknown_label_value_names_the_file(tmp_path, with_ignore):
    raw = np.zeros((16, 16), np.uint8)
    raw[5, 5] = 77
    raw[6, 6] = 255 if with_ignore else 0
    img = write_tif(tmp_path / "i.tif", np.zeros((3, 16, 16), np.uint8))
    lbl = write_tif(tmp_path / "bad_label.tif", raw)
    record = record_for(img, None, ISPRS)
    record.label = lbl
    reader = WindowReader([record], ISPRS)
    reader.read(Window(0, 8, 8, 8, 8))  # the bad pixel is not in this window
    with pytest.raises(UnknownLabelValueError, match=r"bad_label\.tif.*77"):
        reader.read(Window(0, 0, 0, 8, 8))


def test_pre_encoded_labels_are_used_as_is(tmp_path):
    img, lbl = random_pair(tmp_path, "e", size=32, classes=9, seed=5)  # ids 6-8 unknown to ISPRS
    reader = WindowReader([record_for(img, lbl, ISPRS, label_encoded=True)], ISPRS)
    _, mask, _ = reader.read(Window(0, 0, 0, 32, 32))
    np.testing.assert_array_equal(mask, _read_all(lbl, 1))


def test_band_selection(pair):
    img, lbl, _ = pair
    reader = WindowReader([record_for(img, lbl, ISPRS)], ISPRS, bands=[3, 1])
    image, _, _ = reader.read(Window(0, 0, 0, 8, 8))
    np.testing.assert_array_equal(image, _read_all(img, [3, 1])[:, :8, :8])
    with pytest.raises(DataError, match="3 band"):
        WindowReader([record_for(img, lbl, ISPRS)], ISPRS, bands=[4]).read(Window(0, 0, 0, 8, 8))


def test_window_transform_is_offset_raster_transform(pair):
    img, _, reader = pair
    with rasterio.open(img) as src:
        base = src.transform
    for row, col in [(0, 0), (17, 33), (-5, 90)]:
        t = reader.transform(Window(0, row, col, 16, 16))
        assert t == base @ Affine.translation(col, row)
        assert t.c == pytest.approx(base.c + col * base.a)
        assert t.f == pytest.approx(base.f + row * base.e)


def test_unreadable_raster_is_a_data_error(tmp_path):
    img, lbl = random_pair(tmp_path, "x", size=16)
    record = record_for(img, lbl, ISPRS)
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    record.image = tmp_path / "broken.tif"
    with pytest.raises(DataError, match=r"broken\.tif: cannot open"):
        WindowReader([record], ISPRS).read(Window(0, 0, 0, 8, 8))


def test_handles_are_cached_per_process_and_not_pickled(pair):
    _, _, reader = pair
    reader.read(Window(0, 0, 0, 8, 8))
    first = reader._source(0, False).src
    reader.read(Window(0, 8, 8, 8, 8))
    assert reader._source(0, False).src is first  # cached
    reader._pid = os.getpid() + 1  # as if inherited by a forked worker
    reopened = reader._source(0, False).src
    assert reopened is not first and not reopened.closed
    clone = pickle.loads(pickle.dumps(reader))
    assert not clone._open
    win = Window(0, 0, 0, 8, 8)
    np.testing.assert_array_equal(clone.read(win)[1], reader.read(win)[1])
    reader.close()
    assert reopened.closed


def test_least_recently_used_handles_are_closed(tmp_path):
    records = []
    for i in range(3):
        img, lbl = random_pair(tmp_path, f"t{i}", size=16, seed=i)
        records.append(record_for(img, lbl, ISPRS, tile=i))
    reader = WindowReader(records, ISPRS, max_open=2)
    reader.read(Window(0, 0, 0, 8, 8))
    first = reader._open[(0, False)].src
    reader.read(Window(1, 0, 0, 8, 8))
    assert first.closed and len(reader._open) == 2
    _, mask, _ = reader.read(Window(0, 0, 0, 8, 8))  # reopened after eviction
    np.testing.assert_array_equal(mask, _read_all(records[0].label, 1)[:8, :8])
