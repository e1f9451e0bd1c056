"""The ISPRS-like scene generator: files, determinism, class shares, sizes, colour confusion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely.geometry

from geociss.data.classes import ClassSchema
from geociss.data.synthetic import generate_scenes, make_scene
from geociss.data.synthetic.canvas import Canvas, Sun
from geociss.data.synthetic.layout import layout_scene
from geociss.data.synthetic.noise import NoiseBank, value_noise
from geociss.data.synthetic.render import cast_shadows, render
from geociss.errors import ConfigError, DataError

GSD = 0.09
IMPERVIOUS, BUILDING, LOW_VEG, TREE, CAR, CLUTTER = range(6)


@pytest.fixture(scope="module")
def default_set() -> list[tuple[np.ndarray, np.ndarray]]:
    """The scenes of `geociss sample-data` with its defaults (6 × 1024 px, seed 0), in rgbir."""
    return [make_scene(1024, GSD, np.random.default_rng([0, i]), "rgbir") for i in range(6)]


def colour_bound_confusion(images: list[np.ndarray], labels: list[np.ndarray], levels: int = 32
                           ) -> np.ndarray:
    """Confusion matrix of the best per-pixel colour rule, fitted on the very pixels it scores.

    Each quantised colour is given its majority class: no per-pixel colour classifier can do
    better on these pixels, so its mIoU is an optimistic upper bound for colour alone.
    """
    key = np.zeros(sum(lab.size for lab in labels), dtype=np.int64)
    for band in range(images[0].shape[0]):
        values = np.concatenate([img[band].ravel() for img in images]).astype(np.int64)
        key = key * levels + values * levels // 256
    y = np.concatenate([lab.ravel() for lab in labels]).astype(np.int64)
    joint = np.bincount(key * 6 + y, minlength=levels ** images[0].shape[0] * 6).reshape(-1, 6)
    pred = joint.argmax(1)[key]
    return np.bincount(y * 6 + pred, minlength=36).reshape(6, 6)


def iou(cm: np.ndarray) -> np.ndarray:
    return np.diag(cm) / (cm.sum(0) + cm.sum(1) - np.diag(cm))


# ---------------------------------------------------------------------------------- in memory


def test_make_scene_bands_share_one_scene():
    imgs = {b: make_scene(128, GSD, np.random.default_rng([5, 0]), b)
            for b in ("rgb", "irrg", "rgbir")}
    rgb, label = imgs["rgb"]
    assert rgb.shape == (3, 128, 128) and rgb.dtype == np.uint8
    assert label.shape == (128, 128) and label.dtype == np.uint8 and label.max() <= 5
    assert imgs["rgbir"][0].shape == (4, 128, 128)
    np.testing.assert_array_equal(imgs["rgbir"][0][:3], rgb)
    np.testing.assert_array_equal(imgs["irrg"][0], imgs["rgbir"][0][[3, 0, 1]])
    for _, lab in imgs.values():
        np.testing.assert_array_equal(lab, label)


def test_make_scene_deterministic_per_seed():
    a = make_scene(192, GSD, np.random.default_rng([3, 1]))
    b = make_scene(192, GSD, np.random.default_rng([3, 1]))
    c = make_scene(192, GSD, np.random.default_rng([4, 1]))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_make_scene_rejects_unknown_bands():
    with pytest.raises(ConfigError, match="bands"):
        make_scene(64, GSD, np.random.default_rng(0), "bgr")


def test_value_noise_is_standardised():
    field = value_noise(np.random.default_rng(0), (300, 200), 12.0)
    assert field.shape == (300, 200) and field.dtype == np.float32
    assert abs(float(field.mean())) < 1e-3 and abs(float(field.std()) - 1) < 1e-3
    # smooth: neighbours correlate strongly at a 12 px feature size
    assert np.corrcoef(field[:, :-1].ravel(), field[:, 1:].ravel())[0, 1] > 0.9


def _canvas(size: int = 200, angle: float = 0.0) -> Canvas:
    noise = NoiseBank.create(np.random.default_rng(0), size, GSD)
    return Canvas(size, GSD, angle, Sun(math.pi, math.radians(45)), noise)


@pytest.mark.parametrize("angle", [0.0, 0.4, -1.1])
def test_rect_and_blob_areas_match_metres(angle):
    canvas = _canvas(angle=angle)
    rect = canvas.rect(1.0, -0.5, 4.5, 1.8, angle=0.3)
    assert rect is not None
    assert rect.mask.sum() * GSD**2 == pytest.approx(4.5 * 1.8, rel=0.04)
    blob = canvas.blob(0.0, 0.0, 3.0)
    assert blob is not None
    assert blob.mask.sum() * GSD**2 == pytest.approx(math.pi * 9.0, rel=0.02)
    assert canvas.rect(500.0, 0.0, 4.0, 2.0) is None  # off the tile


def test_shadows_fall_away_from_the_sun():
    height = np.zeros((200, 200), dtype=np.float32)
    height[100:120, 90:110] = 9.0  # a 9 m box; sun due south at 45°: shadow 9 m = 100 px north
    shadow = cast_shadows(height, Sun(math.pi, math.radians(45)), GSD)
    column = shadow[:, 100]
    assert not column[120:].any()  # nothing south of the box
    assert not shadow[100:120, 90:110].any()  # the roof is lit
    assert column[2:100].all() and not column[0]  # 100 px long, to a pixel
    assert not shadow[:, :88].any() and not shadow[:, 112:].any()


def test_shadows_darken_the_ground_but_keep_its_class():
    rng = np.random.default_rng([0, 3])
    canvas = layout_scene(512, GSD, rng)
    label = canvas.label.copy()
    shadow = cast_shadows(canvas.height, canvas.sun, GSD)
    image = render(canvas, rng, "rgb").astype(np.float32).mean(0)
    np.testing.assert_array_equal(canvas.label, label)
    for cls in (IMPERVIOUS, LOW_VEG):
        dark, lit = image[shadow & (label == cls)], image[~shadow & (label == cls)]
        assert dark.size > 1000 and lit.size > 1000
        assert dark.mean() < 0.7 * lit.mean()


# ---------------------------------------------------------------------------------- default set


def test_default_set_class_shares_like_potsdam(default_set):
    labels = np.stack([lab for _, lab in default_set])
    counts = np.bincount(labels.ravel(), minlength=6)
    shares = counts / counts.sum()
    assert len(counts) == 6 and (counts > 0).all()
    low = [0.18, 0.16, 0.14, 0.08, 0.004, 0.02]
    high = [0.40, 0.36, 0.34, 0.24, 0.02, 0.09]
    for c in range(6):
        assert low[c] <= shares[c] <= high[c], (c, shares)
    assert sum((lab == CAR).any() for lab in labels) >= 5


def test_cars_have_true_size(default_set):
    lengths, widths, areas = [], [], []
    for _, lab in default_set:
        mask = (lab == CAR).astype(np.uint8)
        for geom, _ in rasterio.features.shapes(mask, mask=mask.astype(bool), connectivity=4):
            poly = shapely.geometry.shape(geom)
            box = np.asarray(poly.minimum_rotated_rectangle.exterior.coords)
            sides = sorted(np.hypot(*np.diff(box[:3], axis=0).T) * GSD)
            widths.append(sides[0])
            lengths.append(sides[1])
            areas.append(poly.area * GSD**2)
    assert len(areas) >= 40
    assert 4.0 <= np.median(lengths) <= 5.2
    assert 1.6 <= np.median(widths) <= 2.2
    assert 6.0 <= np.median(areas) <= 10.0
    assert np.percentile(areas, 95) < 13.0  # no merged blobs of cars


def test_nir_marks_vegetation_but_not_tree_from_lawn(default_set):
    nir = np.stack([img[3] for img, _ in default_set]).astype(np.float32)
    labels = np.stack([lab for _, lab in default_set])
    veg = nir[(labels == LOW_VEG) | (labels == TREE)].mean()
    assert veg > nir[labels == IMPERVIOUS].mean() + 30
    tree, lawn = nir[labels == TREE], nir[labels == LOW_VEG]
    assert abs(tree.mean() - lawn.mean()) < 0.5 * tree.std()


def test_colour_alone_is_not_enough(default_set):
    images = [img[:3] for img, _ in default_set]
    cm = colour_bound_confusion(images, [lab for _, lab in default_set])
    scores = iou(cm)
    assert scores.mean() < 0.6, scores
    assert scores[TREE] < 0.6 and scores[BUILDING] < 0.7 and scores[CAR] < 0.35
    share = cm / cm.sum(1, keepdims=True)
    assert share[TREE, LOW_VEG] > 0.2  # crowns look like lawn
    assert share[BUILDING, IMPERVIOUS] > 0.15  # grey roofs look like roads
    assert share[CAR, IMPERVIOUS] + share[CAR, BUILDING] > 0.4  # cars look like roads and roofs


# ---------------------------------------------------------------------------------- files


@pytest.mark.parametrize(("bands", "names"), [
    ("rgb", ("red", "green", "blue")),
    ("irrg", ("nir", "red", "green")),
    ("rgbir", ("red", "green", "blue", "nir")),
])
def test_files_are_tiled_georeferenced_geotiffs(tmp_path, bands, names):
    scenes = generate_scenes(tmp_path / "s", tiles=3, size=320, seed=1, bands=bands)
    assert scenes.stems == ["scene_000", "scene_001", "scene_002"]
    listing = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert listing == ["classes.yaml", "images", "labels"]
    assert ClassSchema.from_yaml(scenes.schema) == ClassSchema.preset("isprs")
    assert sum(scenes.class_counts.values()) == 3 * 320 * 320
    bounds = []
    for stem in scenes.stems:
        with rasterio.open(scenes.images / f"{stem}.tif") as img, \
                rasterio.open(scenes.labels / f"{stem}.tif") as lab:
            for ds, count in ((img, len(names)), (lab, 1)):
                assert ds.crs.to_epsg() == 32632 and ds.count == count
                assert ds.res == pytest.approx((GSD, GSD)) and ds.dtypes[0] == "uint8"
                assert ds.profile["tiled"] and ds.block_shapes[0] == (256, 256)
                assert ds.compression.name == "deflate"
            assert img.descriptions == names and lab.descriptions == ("class",)
            assert img.transform == lab.transform and lab.nodata == 255
            cmap = lab.colormap(1)
            for cid, colour in ClassSchema.preset("isprs").colormap().items():
                assert cmap[cid] == colour
            assert lab.read(1).max() <= 5
            bounds.append(img.bounds)
    # a 2 × 2 grid: tile 1 right of tile 0, tile 2 below it
    assert bounds[1].left == pytest.approx(bounds[0].right)
    assert bounds[1].top == pytest.approx(bounds[0].top)
    assert bounds[2].top == pytest.approx(bounds[0].bottom)
    assert bounds[2].left == pytest.approx(bounds[0].left)
    assert 166_000 < bounds[0].left < 834_000 and 5_000_000 < bounds[0].top < 6_500_000


def test_same_seed_same_bytes(tmp_path):
    a = generate_scenes(tmp_path / "a", tiles=2, size=128, seed=7)
    b = generate_scenes(tmp_path / "b", tiles=2, size=128, seed=7)
    c = generate_scenes(tmp_path / "c", tiles=2, size=128, seed=8)
    for stem in a.stems:
        for folder in ("images", "labels"):
            first = (a.root / folder / f"{stem}.tif").read_bytes()
            assert first == (b.root / folder / f"{stem}.tif").read_bytes()
            assert first != (c.root / folder / f"{stem}.tif").read_bytes()


def test_refuses_to_overwrite_without_flag(tmp_path):
    out = tmp_path / "s"
    generate_scenes(out, tiles=3, size=64, seed=1)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(DataError, match="--overwrite"):
        generate_scenes(out, tiles=3, size=64, seed=2)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    scenes = generate_scenes(out, tiles=2, size=64, seed=2, overwrite=True)
    assert sorted(p.name for p in scenes.images.iterdir()) == ["scene_000.tif", "scene_001.tif"]
    assert sorted(p.name for p in scenes.labels.iterdir()) == ["scene_000.tif", "scene_001.tif"]
    first = out / "images" / "scene_000.tif"
    assert first.read_bytes() != before[first]


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"crs": "EPSG:4326"}, ConfigError, "not a projected CRS"),
    ({"crs": "EPSG:999999"}, ConfigError, "not a known CRS"),
    ({"crs": "EPSG:2263"}, ConfigError, "not metres"),
    ({"bands": "bgr"}, ConfigError, "--bands"),
    ({"size": 32}, ConfigError, "--size"),
    ({"gsd": 5.0}, ConfigError, "--gsd"),
    ({"tiles": 0}, ConfigError, "--tiles"),
    ({"seed": -1}, ConfigError, "--seed"),
])
def test_bad_options_fail_before_writing(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        generate_scenes(tmp_path / "s", **{"tiles": 1, "size": 64, **kwargs})
    assert not (tmp_path / "s" / "images").exists()


def test_output_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        generate_scenes(target, tiles=1, size=64)


def test_other_crs_places_grid_inside_it(tmp_path):
    scenes = generate_scenes(tmp_path / "s", tiles=1, size=64, crs="EPSG:32633")
    with rasterio.open(scenes.images / "scene_000.tif") as ds:
        assert ds.crs.to_epsg() == 32633
        lon, lat = rasterio.warp.transform(ds.crs, "EPSG:4326", [ds.bounds.left], [ds.bounds.top])
    assert 12.5 < lon[0] < 13.5 and 52.0 < lat[0] < 52.8  # Potsdam
    assert not list(tmp_path.rglob("*.part"))


@pytest.mark.slow
def test_small_cnn_beats_the_colour_bound():
    """Shape and context pay: a small CNN trained on other tiles beats the best colour rule."""
    bench = pytest.importorskip("benchmarks.bench_synthetic")
    rows, _ = bench.bench_colour_vs_cnn(train_tiles=8, test_tiles=6, steps=600)
    bound, honest, cnn = (scores.mean() for _, scores in rows)
    assert cnn > bound + 0.03
    assert cnn > honest + 0.12
