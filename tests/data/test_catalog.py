"""Catalogue scan: pairing, validation errors, pixel space, nodata/alpha, chip regions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geociss.data.catalog import Catalog
from geociss.data.classes import IGNORE_INDEX, ClassSchema
from geociss.data.tile_scan import ScanOptions, scan_tile, valid_pixels
from geociss.data.tile_stats import chip_spans
from geociss.errors import ConfigError, DataError, UnknownLabelValueError

from fakes import random_pair, write_tif

ISPRS = ClassSchema.preset("isprs")


def scan(root: Path, **kw):
    return Catalog.scan(root / "images", root / "labels", kw.pop("schema", ISPRS), **kw)


def expected_hist(label: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    ids = label.astype(np.int64).copy()
    if valid is not None:
        ids[~valid] = IGNORE_INDEX
    counts = np.bincount(ids.ravel(), minlength=256)
    return counts[:6], int(counts[IGNORE_INDEX])


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


# ---------------------------------------------------------------------------- good folders


def test_scan_pairs_counts_and_stats(tmp_path):
    for i in range(3):
        random_pair(tmp_path, f"t{i}", size=40, seed=i)
    cat = scan(tmp_path)
    assert len(cat) == 3 and [t.stem for t in cat] == ["t0", "t1", "t2"]
    total = np.zeros(6, np.int64)
    pixels = []
    for t in cat:
        hist, ignored = expected_hist(read(t.label)[0])
        assert t.hist.tolist() == hist.tolist() and t.ignored == ignored == 0
        assert (t.width, t.height, t.bands, t.dtype) == (40, 40, 3, "uint8")
        assert t.label_encoded is False and t.band_indexes == (1, 2, 3)
        total += hist
        pixels.append(read(t.image).reshape(3, -1).astype(np.float64))
    assert cat.class_counts.tolist() == total.tolist()
    allpx = np.concatenate(pixels, axis=1)
    np.testing.assert_allclose(cat.band_stats.mean, allpx.mean(axis=1))
    np.testing.assert_allclose(cat.band_stats.std, allpx.std(axis=1))
    assert cat.band_stats.min == tuple(allpx.min(axis=1))
    assert cat.band_stats.max == tuple(allpx.max(axis=1))
    assert rasterio.crs.CRS.from_wkt(cat.crs) == rasterio.crs.CRS.from_epsg(32632)
    assert len(cat.regions()) == 3 and [r.tile for r in cat.regions()] == [0, 1, 2]


def test_case_insensitive_tiff_and_custom_globs(tmp_path):
    img, _ = random_pair(tmp_path, "a", size=16)
    img.rename(img.with_name("a.TIFF"))
    cat = scan(tmp_path)
    assert len(cat) == 1 and cat[0].image.name == "a.TIFF"
    # Potsdam-style names pair on the wildcard part
    root = tmp_path / "potsdam"
    arr = np.zeros((3, 16, 16), np.uint8)
    write_tif(root / "images" / "top_potsdam_2_10_RGBIR.tif", arr)
    write_tif(root / "labels" / "top_potsdam_2_10_label.tif", arr[0])
    cat = Catalog.scan(root / "images", root / "labels", ISPRS,
                       image_glob="top_potsdam_*_RGBIR.tif", label_glob="top_potsdam_*_label.tif")
    assert cat[0].stem == "2_10" and cat[0].label.name == "top_potsdam_2_10_label.tif"


def test_no_labels_for_prediction(tmp_path):
    random_pair(tmp_path, "a", size=24)
    cat = Catalog.scan(tmp_path / "images", None, ISPRS)
    assert cat[0].label is None and cat.class_counts.sum() == 0
    assert cat.summary()["labels"] is None and cat.band_stats.count == 24 * 24


def test_non_georeferenced_pair_works_in_pixel_space(tmp_path):
    random_pair(tmp_path, "a", size=32, crs=None)
    cat = scan(tmp_path)
    t = cat[0]
    assert t.crs is None and not t.georeferenced and t.transform == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert cat.crs is None and cat.summary()["crs_note"] == "pixel space"
    assert t.hist.sum() == 32 * 32


def test_label_without_georeferencing_next_to_georeferenced_image(tmp_path):
    _, lbl = random_pair(tmp_path, "a", size=32)
    write_tif(lbl, read(lbl)[0], crs=None)
    cat = scan(tmp_path)
    assert cat[0].georeferenced and cat[0].hist.sum() == 32 * 32


def test_image_nodata_is_ignored_and_left_out_of_stats(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(1, 256, (3, 32, 32), dtype=np.uint8)
    image[:, :, :5] = 0  # all bands nodata: invalid
    image[0, 10, 10] = 0  # one band only: still valid
    write_tif(tmp_path / "images/a.tif", image, nodata=0)
    label = np.full((32, 32), 2, np.uint8)
    write_tif(tmp_path / "labels/a.tif", label)
    cat = scan(tmp_path)
    valid = np.ones((32, 32), bool)
    valid[:, :5] = False
    assert cat[0].hist[2] == valid.sum() and cat[0].ignored == (~valid).sum()
    assert cat[0].nodata == 0 and not cat[0].has_mask
    np.testing.assert_allclose(cat.band_stats.mean, image[:, valid].mean(axis=1))
    assert cat.band_stats.count == valid.sum() and cat.band_stats.min[0] == 0


def test_alpha_band_is_a_mask_not_a_band(tmp_path):
    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 256, (4, 32, 32), dtype=np.uint8)
    rgba[3] = 255
    rgba[3, :8] = 0
    path = tmp_path / "images/a.tif"
    path.parent.mkdir(parents=True)
    with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=4, dtype="uint8",
                       crs="EPSG:32632", transform=from_origin(0, 0, 1, 1), photometric="RGB",
                       alpha="YES") as dst:
        dst.write(rgba)
    write_tif(tmp_path / "labels/a.tif", np.full((32, 32), 1, np.uint8), origin=(0, 0), gsd=1)
    cat = scan(tmp_path, expected_bands=3)
    t = cat[0]
    assert t.bands == 3 and t.has_mask and t.band_indexes == (1, 2, 3)
    assert t.hist[1] == 24 * 32 and t.ignored == 8 * 32
    np.testing.assert_allclose(cat.band_stats.mean, rgba[:3, 8:].reshape(3, -1).mean(axis=1))
    # asking for the alpha band (or for 4 bands) makes it data
    t = scan(tmp_path, bands=[1, 2, 3, 4])[0]
    assert t.bands == 4 and not t.has_mask and t.ignored == 0
    assert scan(tmp_path, expected_bands=4)[0].band_indexes == (1, 2, 3, 4)


def test_alpha_tagged_band_with_data_values_is_a_band(tmp_path):
    # rasterio writes 4-band uint8 GeoTIFFs as RGBA by default: an RGB+NIR file looks like RGBA
    img, _ = random_pair(tmp_path, "a", size=32, bands=4)
    with rasterio.open(img) as src:
        assert src.colorinterp[3] == rasterio.enums.ColorInterp.alpha
    t = scan(tmp_path)[0]
    assert t.bands == 4 and not t.has_mask and t.ignored == 0 and t.stats.count == 32 * 32


def test_valid_pixels_helper_matches_the_scan(tmp_path):
    image = np.random.default_rng(8).integers(1, 256, (3, 16, 16), dtype=np.uint8)
    image[:, 3:6] = 7
    path = write_tif(tmp_path / "images/a.tif", image, nodata=7)
    write_tif(tmp_path / "labels/a.tif", np.zeros((16, 16), np.uint8))
    t = scan(tmp_path)[0]
    with rasterio.open(path) as src:
        win = rasterio.windows.Window(0, 0, 16, 16)
        valid = valid_pixels(src, src.read(list(t.band_indexes), window=win), win, t.has_mask,
                             t.nodata)
    assert (~valid).sum() == t.ignored == 48


def test_internal_mask_and_float_nan(tmp_path):
    img = np.random.default_rng(3).random((2, 16, 16)).astype(np.float32)
    img[:, 0, :] = np.nan
    path = write_tif(tmp_path / "images/a.tif", img)
    with rasterio.open(path, "r+") as dst:
        mask = np.full((16, 16), 255, np.uint8)
        mask[15] = 0
        dst.write_mask(mask)
    write_tif(tmp_path / "labels/a.tif", np.zeros((16, 16), np.uint8))
    t = scan(tmp_path)[0]
    assert t.has_mask and t.ignored == 32 and t.hist[0] == 14 * 16
    assert t.stats.count == 14 * 16
    np.testing.assert_allclose(t.stats.sum, img[:, 1:15].reshape(2, -1).astype(np.float64).sum(1))


def test_label_nodata_not_a_class_value_is_ignore(tmp_path):
    label = np.full((16, 16), 3, np.uint8)
    label[:4] = 200
    write_tif(tmp_path / "images/a.tif", np.ones((3, 16, 16), np.uint8))
    write_tif(tmp_path / "labels/a.tif", label, nodata=200)
    t = scan(tmp_path)[0]
    assert t.hist[3] == 12 * 16 and t.ignored == 4 * 16
    # nodata that is a class value stays that class
    write_tif(tmp_path / "labels/a.tif", label.clip(0, 3), nodata=3)
    t = scan(tmp_path)[0]
    assert t.hist[3] == 16 * 16 and t.ignored == 0


def test_rgb_labels(tmp_path):
    schema = ClassSchema.preset("isprs-rgb")
    rgb = np.zeros((3, 16, 16), np.uint8)
    rgb[:, :8] = 255  # white = impervious surfaces
    rgb[2, 8:] = 255  # blue = building
    rgb[:, 15] = 0  # black = ignore
    write_tif(tmp_path / "images/a.tif", np.ones((3, 16, 16), np.uint8))
    write_tif(tmp_path / "labels/a.tif", rgb)
    t = scan(tmp_path, schema=schema)[0]
    assert t.hist.tolist() == [8 * 16, 7 * 16, 0, 0, 0, 0] and t.ignored == 16


# ---------------------------------------------------------------------------- chip regions


def test_chip_regions_sum_to_tile_histogram(tmp_path):
    random_pair(tmp_path, "a", size=64, seed=4)
    cat = scan(tmp_path, chip_size=16)
    regions = cat.regions()
    assert len(regions) == 16
    assert np.sum([r.hist for r in regions], axis=0).tolist() == cat[0].hist.tolist()
    assert {(r.window.height, r.window.width) for r in regions} == {(16, 16)}


def test_chip_regions_clamped_inside_raster(tmp_path):
    random_pair(tmp_path, "a", size=50, seed=5)
    random_pair(tmp_path, "b", size=20, seed=6)
    cat = scan(tmp_path, chip_size=32)
    assert chip_spans(50, 32) == [(0, 32), (18, 32)]
    label = read(cat[0].label)[0]
    a_regions = [r for r in cat.regions() if r.tile == 0]
    assert [(r.window.row, r.window.col) for r in a_regions] == [(0, 0), (0, 18), (18, 0), (18, 18)]
    for r in a_regions:
        w = r.window
        hist, _ = expected_hist(label[w.row : w.row + w.height, w.col : w.col + w.width])
        assert r.hist.tolist() == hist.tolist()
    (small,) = [r for r in cat.regions() if r.tile == 1]
    assert (small.window.height, small.window.width) == (20, 20) and small.labelled == 400


def test_band_rows_do_not_change_results(tmp_path):
    img, lbl = random_pair(tmp_path, "a", size=70, seed=7)
    whole = scan_tile(img, lbl, "a", ISPRS, ScanOptions(chip_size=32))
    banded = scan_tile(img, lbl, "a", ISPRS, ScanOptions(chip_size=32, band_rows=7))
    assert [r.hist.tolist() for r in banded.regions] == [r.hist.tolist() for r in whole.regions]
    assert banded.hist.tolist() == whole.hist.tolist()
    np.testing.assert_allclose(banded.stats.sum, whole.stats.sum)
    assert banded.stats.min == whole.stats.min and banded.stats.count == whole.stats.count


# ---------------------------------------------------------------------------- bad input


def test_missing_label_names_the_image_and_expected_label(tmp_path):
    random_pair(tmp_path, "a", size=16)
    img, lbl = random_pair(tmp_path, "x", size=16)
    lbl.unlink()
    with pytest.raises(DataError) as err:
        scan(tmp_path)
    assert str(img) in str(err.value) and "no label raster" in str(err.value)
    assert str(tmp_path / "labels" / "x.tif") in str(err.value)


def test_missing_image_names_the_label(tmp_path):
    random_pair(tmp_path, "a", size=16)
    img, lbl = random_pair(tmp_path, "x", size=16)
    img.unlink()
    with pytest.raises(DataError, match="no image raster") as err:
        scan(tmp_path)
    assert str(lbl) in str(err.value)


@pytest.mark.parametrize("case", ["size", "crs", "transform"])
def test_label_grid_mismatch(tmp_path, case):
    img, lbl = random_pair(tmp_path, "a", size=32)
    label = read(lbl)[0]
    if case == "size":
        write_tif(lbl, label[:30])
        problem = "is 32x30 pixels"
    elif case == "crs":
        write_tif(lbl, label, crs="EPSG:32633")
        problem = "CRS EPSG:32633 differs from EPSG:32632"
    else:
        write_tif(lbl, label, origin=(368000.5, 5806000.0))
        problem = "transform differs"
    with pytest.raises(DataError, match=problem) as err:
        scan(tmp_path)
    assert str(err.value).startswith(str(lbl)) and str(img) in str(err.value)


def test_corrupt_file(tmp_path):
    img, _ = random_pair(tmp_path, "a", size=16)
    img.write_bytes(b"this is not a tiff" * 20)
    with pytest.raises(DataError, match="cannot open as a raster") as err:
        scan(tmp_path)
    assert str(err.value).startswith(str(img))


def test_truncated_file_found_when_reading_blocks(tmp_path):
    img, _ = random_pair(tmp_path, "a", size=300)
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt or truncated") as err:
        scan(tmp_path)
    assert str(err.value).startswith(str(img))


def test_empty_folder_and_glob_matching_nothing(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(DataError, match=r"no files match '\*.tif'") as err:
        scan(tmp_path)
    assert str(err.value).startswith(str(tmp_path / "images"))
    random_pair(tmp_path, "a", size=16)
    with pytest.raises(DataError, match=r"no files match '\*.png'"):
        scan(tmp_path, image_glob="*.png")
    with pytest.raises(DataError, match="folder not found"):
        Catalog.scan(tmp_path / "nope", None, ISPRS)


def test_unknown_label_value_index_schema(tmp_path):
    _, lbl = random_pair(tmp_path, "a", size=16)
    label = read(lbl)[0]
    label[3, 3] = 9
    write_tif(lbl, label)
    with pytest.raises(UnknownLabelValueError, match="unknown label value") as err:
        scan(tmp_path)
    assert str(err.value).startswith(str(lbl)) and err.value.values == ["9"]


def test_unknown_label_value_rgb_schema(tmp_path):
    write_tif(tmp_path / "images/a.tif", np.ones((3, 8, 8), np.uint8))
    rgb = np.full((3, 8, 8), 255, np.uint8)
    rgb[:, 2, 2] = (1, 2, 3)
    lbl = write_tif(tmp_path / "labels/a.tif", rgb)
    with pytest.raises(UnknownLabelValueError, match="#010203") as err:
        scan(tmp_path, schema=ClassSchema.preset("isprs-rgb"))
    assert str(err.value).startswith(str(lbl))


def test_label_band_count_and_dtype(tmp_path):
    _, lbl = random_pair(tmp_path, "a", size=16)
    with pytest.raises(DataError, match=r"has 1 band\(s\); the class schema 'isprs' uses rgb"):
        scan(tmp_path, schema=ClassSchema.preset("isprs-rgb"))
    write_tif(lbl, read(lbl)[0].astype(np.float32))
    with pytest.raises(DataError, match="data type float32; label rasters must hold integers"):
        scan(tmp_path)


def test_wrong_band_count(tmp_path):
    img, _ = random_pair(tmp_path, "a", size=16, bands=4)
    with pytest.raises(DataError, match=r"has 4 band\(s\), expected 3") as err:
        scan(tmp_path, expected_bands=3)
    assert str(err.value).startswith(str(img))
    with pytest.raises(DataError, match="band 5 was requested"):
        scan(tmp_path, bands=[1, 5])
    assert scan(tmp_path, bands=[4, 1])[0].band_indexes == (4, 1)


def test_inconsistent_bands_and_dtype_across_images(tmp_path):
    random_pair(tmp_path, "a", size=16)
    img, _ = random_pair(tmp_path, "b", size=16, bands=4)
    with pytest.raises(DataError, match=r"has 4 image band\(s\) but .*a.tif has 3") as err:
        scan(tmp_path)
    assert str(err.value).startswith(str(img))
    write_tif(img, read(img)[:3].astype(np.uint16))
    with pytest.raises(DataError, match="has data type uint16 but .*a.tif has uint8"):
        scan(tmp_path)


def test_two_files_with_the_same_name(tmp_path):
    img, _ = random_pair(tmp_path, "a", size=16)
    (tmp_path / "images" / "a.tiff").write_bytes(img.read_bytes())
    with pytest.raises(DataError, match="has the same name as"):
        scan(tmp_path)


def test_bad_options(tmp_path):
    random_pair(tmp_path, "a", size=16)
    with pytest.raises(ConfigError, match="chip_size"):
        scan(tmp_path, chip_size=0)
    with pytest.raises(ConfigError, match="1-based"):
        scan(tmp_path, bands=[0])
    with pytest.raises(ConfigError, match="same number of wildcards"):
        scan(tmp_path, label_glob="a.tif")
    with pytest.raises(DataError, match="is a file"):
        Catalog.scan(tmp_path / "images", tmp_path / "labels" / "a.tif", ISPRS)
