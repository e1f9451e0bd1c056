"""The streaming engine: tiled = whole-image, nodata, georeferencing, padding, column groups."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.enums import ColorInterp
from tiny_nets import conv_net, image, loaded, read, whole_image

from geociss.inference.georef import PIXEL_SPACE
from geociss.inference.grid import TileGrid
from geociss.inference.model import PredictOptions
from geociss.inference.run import predict_many
from geociss.inference.stream import RowBandAccumulator, encode_rows

from fakes import write_tif

OPTS = {"tile": 64, "overlap": 32, "batch_size": 4, "workers": 0}


def _predict(tmp_path, img, name="scene", *, net=None, classes=4, write=None, **opts):
    src = (write or write_tif)(tmp_path / "in" / f"{name}.tif", img)
    net = net or conv_net(classes)
    options = PredictOptions(**{**OPTS, **opts})
    results = predict_many([src], loaded(net, classes, img.shape[0]), options, tmp_path / "out")
    assert [r.status for r in results] == ["written"], results
    return src, tmp_path / "out", results[0], net


def test_accumulator_ring_matches_plain_weighted_means():
    rng = np.random.default_rng(1)
    grid = TileGrid.build(90, 40, tile=16, overlap=6)
    k = 3
    acc = RowBandAccumulator(k, grid.tile_h, 0, 40, grid.row_total, grid.col_total)
    scores, weights = np.zeros((k, 90, 40)), np.zeros((90, 40))
    rows: list[np.ndarray] = []
    frontier = 0
    for t in range(len(grid)):
        i, j, y, x = grid.origin(t)
        if y > frontier:
            rows.append(acc.finish(frontier, y, 0, 40, confidence=True, probabilities=True))
            frontier = y
        p = rng.uniform(0, 1, (k, 16, 16)).astype(np.float32)
        w = grid.weight(i, j)
        acc.add(y, x, torch.from_numpy(p), torch.from_numpy(w))
        scores[:, y : y + 16, x : x + 16] += p * w
        weights[y : y + 16, x : x + 16] += w
        if (y, x) == (40, 10):
            acc.mark_invalid(40, 10, (16, 16), torch.from_numpy(np.eye(16, dtype=bool)))
    rows.append(acc.finish(frontier, 90, 0, 40, confidence=True, probabilities=True))
    got = {key: np.concatenate([r[key] for r in rows], axis=1) for key in rows[0]}
    mean = scores / weights
    diagonal = np.zeros((90, 40), bool)
    diagonal[np.arange(40, 56), np.arange(10, 26)] = True
    assert (got["classes"][0][diagonal] == 255).all()
    assert (got["classes"][0][~diagonal] == mean.argmax(0)[~diagonal]).all()
    expected = np.rint(mean * 254)
    assert np.abs(got["probabilities"][:, ~diagonal] - expected[:, ~diagonal]).max() <= 1
    assert np.abs(got["confidence"][0][~diagonal] - expected.max(0)[~diagonal]).max() <= 1


def test_encode_rows_marks_invalid_pixels_as_nodata():
    scores = torch.tensor([[[0.4, 1.4]], [[1.6, 0.6]]])  # (K=2, 1 row, 2 cols), weight sum 2
    norm = torch.full((1, 2), 0.5)
    invalid = torch.tensor([[False, True]])
    out = encode_rows(scores, invalid, norm, confidence=True, probabilities=True)
    assert out["classes"].tolist() == [[[1, 255]]]
    assert out["confidence"].tolist() == [[[round(0.8 * 254), 255]]]
    assert out["probabilities"][:, 0, 0].tolist() == [round(0.2 * 254), round(0.8 * 254)]
    assert (out["probabilities"][:, 0, 1] == 255).all()
    assert encode_rows(scores, invalid, None, confidence=False, probabilities=False)[
        "classes"].tolist() == [[[1, 255]]]


def test_tiled_prediction_equals_whole_image_without_seams(tmp_path):
    img = image(300, 250)
    _, out, result, net = _predict(tmp_path, img, confidence=True, probabilities=True)
    assert result.tiles == 63 and result.skipped_tiles == 0
    full = whole_image(net, img)
    expected = np.rint(full * 254)
    probs = read(out / "scene_probabilities.tif", None).astype(np.float64)
    # the margin (4) covers the receptive-field halo (3): tiles see what the whole image sees
    assert np.abs(probs - expected).max() <= 1
    assert (probs == expected).mean() > 0.999
    classes = read(out / "scene_classes.tif")
    top2 = np.sort(full, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-4
    assert (classes == full.argmax(0))[clear].all()
    # no seam: tile edges (where a naive mosaic switches tiles) agree as well as the interior
    edges = sorted({c for c in range(16, 250, 32)})
    assert (classes[:, edges] == full.argmax(0)[:, edges])[clear[:, edges]].all()
    conf = read(out / "scene_confidence.tif").astype(np.float64)
    assert np.abs(conf - np.rint(full.max(0) * 254)).max() <= 1


def test_nodata_pixels_give_255_and_empty_tiles_are_skipped(tmp_path):
    img = image(300, 250)
    img[:, :130] = 0  # rows 0..129: nodata, spanning whole tile rows
    img[:, 200:210, 100:120] = 0
    write = lambda p, a: write_tif(p, a, nodata=0)  # noqa: E731
    _, out, result, _ = _predict(tmp_path, img, write=write, confidence=True)
    classes = read(out / "scene_classes.tif")
    invalid = (img == 0).all(axis=0)
    assert (classes[invalid] == 255).all()
    assert (classes[~invalid] != 255).all()
    assert (read(out / "scene_confidence.tif")[invalid] == 255).all()
    assert result.skipped_tiles >= 21 and result.tiles + result.skipped_tiles == 63


def test_alpha_band_masks_pixels_and_is_not_fed_to_the_model(tmp_path):
    img = image(120, 100)
    alpha = np.full((1, 120, 100), 255, np.uint8)
    alpha[0, 50:70, 20:90] = 0

    def write(path, arr):
        write_tif(path, np.concatenate([arr, alpha]))
        with rasterio.open(path, "r+") as dst:
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue,
                               ColorInterp.alpha]
        return path

    _, out, _, _ = _predict(tmp_path, img, write=write)
    classes = read(out / "scene_classes.tif")
    assert (classes[alpha[0] == 0] == 255).all() and (classes[alpha[0] > 0] != 255).all()


def test_outputs_keep_the_input_grid_and_crs(tmp_path):
    img = image(130, 90)
    transform = Affine(0.25, 0.0, 500000.0, 0.0, -0.25, 4600000.0)
    write = lambda p, a: write_tif(p, a, crs="EPSG:25832", transform=transform)  # noqa: E731
    src, out, _, _ = _predict(tmp_path, img, write=write, confidence=True, probabilities=True)
    with rasterio.open(src) as s:
        ref = (s.width, s.height, s.transform, s.crs)
    for name in ("scene_classes.tif", "scene_confidence.tif", "scene_probabilities.tif"):
        with rasterio.open(out / name) as o:
            assert (o.width, o.height, o.transform, o.crs) == ref, name
            assert o.nodata == 255 and o.dtypes[0] == "uint8"


def test_raster_smaller_than_a_tile_is_reflect_padded(tmp_path):
    img = image(40, 50)
    _, out, result, net = _predict(tmp_path, img)
    assert result.tiles == 1
    padded = np.pad(img, ((0, 0), (0, 24), (0, 14)), mode="reflect")
    expected = whole_image(net, padded)[:, :40, :50].argmax(0)
    classes = read(out / "scene_classes.tif")
    assert classes.shape == (40, 50) and (classes == expected).mean() > 0.999


def test_non_georeferenced_input_gives_pixel_space_outputs(tmp_path):
    img = image(100, 80)
    write = lambda p, a: write_tif(p, a, crs=None)  # noqa: E731
    _, out, _, _ = _predict(tmp_path, img, write=write)
    with rasterio.open(out / "scene_classes.tif") as o:  # where QGIS draws the input
        assert o.crs is None and o.transform == PIXEL_SPACE and (o.width, o.height) == (80, 100)


def test_column_groups_and_workers_give_identical_output(tmp_path):
    img = image(70, 700, seed=3)
    net = conv_net(classes=8)
    _, out, res, _ = _predict(tmp_path / "a", img, net=net, classes=8, confidence=True)
    # a 1 MiB buffer holds (8 + 1) x 64 rows x 455 columns: two column groups (cut at 512)
    _, out2, res2, _ = _predict(tmp_path / "b", img, net=net, classes=8, confidence=True,
                                buffer_mb=1, workers=1)
    for name in ("scene_classes.tif", "scene_confidence.tif"):
        assert np.array_equal(read(out / name), read(out2 / name)), name
    # the tile column at the group boundary is predicted twice (once per group)
    assert res.tiles == 2 * 21 and res2.tiles == res.tiles + 2


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_other_band_types_and_nan(tmp_path, dtype):
    img = image(70, 90).astype(dtype) * (4 if dtype == "uint16" else 1)
    if dtype == "float32":
        img[:, 10:20, 10:30] = np.nan
    net = conv_net()
    _, out, _, _ = _predict(tmp_path, img, net=net)
    classes = read(out / "scene_classes.tif")
    if dtype == "float32":
        assert (classes[10:20, 10:30] == 255).all() and (classes[30:] != 255).all()
    else:
        full = whole_image(net, img.astype(np.float32))
        assert (classes == full.argmax(0)).mean() > 0.999
