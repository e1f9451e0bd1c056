"""`extend_bundle`: one new step from a bundle and data labelled for the new classes only."""

import numpy as np
import pytest
import torch

from geociss.config.experiment import DataConfig, MethodConfig, TrainConfig
from geociss.data.classes import ClassSchema
from geociss.engine.bundle import StepBundle, StepRecord
from geociss.engine.increment import ExtendRequest, extend_bundle
from geociss.engine.new_classes import (
    auto_colors,
    extend_schema,
    extended_scenario,
    new_label_schema,
)
from geociss.errors import ConfigError, DataError
from geociss.evaluation.retention import Retention
from geociss.models.config import ModelConfig
from geociss.models.segmenter import SegmentationModel

from fakes import UTM32, write_tif

SIZE, GSD, ORIGIN = 64, 0.09, (368000.0, 5806000.0)


def base_schema():
    return ClassSchema.from_dict(
        {
            "name": "base",
            "background": "road",
            "classes": [
                {"id": 0, "name": "road", "color": "#ffffff"},
                {"id": 1, "name": "building", "color": "#0000ff"},
                {"id": 2, "name": "tree", "color": "#00ff00"},
            ],
        }
    )


def make_bundle(path, in_channels=3, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(
        encoder="tiny",
        weights="none",
        aspp_channels=32,
        norm="group",
        norm_groups=8,
        in_channels=in_channels,
    )
    model = SegmentationModel(cfg, [3])
    bundle = StepBundle.from_model(
        model,
        schema=base_schema(),
        steps=[StepRecord(channels=[0, 1, 2], method="finetune")],
        mean=[120.0] * in_channels,
        std=[60.0] * in_channels,
        bands=[f"band {b}" for b in range(1, in_channels + 1)],
        gsd=GSD,
    )
    return bundle.save(path)


def new_class_tiles(root, n=3, values=(1, 2), bands=3):
    """Tiles whose labels hold 0 (anything else), two new classes and a strip of 255."""
    rng = np.random.default_rng(1)
    for i in range(n):
        write_tif(
            root / "images" / f"t{i}.tif", rng.integers(0, 256, (bands, SIZE, SIZE), dtype=np.uint8)
        )
        label = np.zeros((SIZE, SIZE), np.uint8)
        label[8:24, 8:24] = values[0]
        label[40:50, 30:60] = values[1]
        label[:2] = 255
        write_tif(root / "labels" / f"t{i}.tif", label)
    return root


def request(root, model, out, labels=None, **kw):
    data = DataConfig(
        images=root / "images",
        labels=labels or root / "labels",
        patch_size=32,
        batch_size=2,
        samples_per_epoch=2,
        num_workers=0,
        eval_tile=64,
        eval_overlap=0,
        val_fraction=0.34,
    )
    train = TrainConfig(
        epochs=1, lr_incremental=kw.pop("lr", 1e-3), accelerator="cpu", channels_last=False
    )
    return ExtendRequest(
        model=model,
        out=out,
        new_classes=kw.pop("names", ["car", "solar panel"]),
        data=data,
        train=train,
        method=MethodConfig(name="finetune"),
        **kw,
    )


def write_polygons(path):
    import geopandas as gpd
    from shapely.geometry import box

    x0, y1 = ORIGIN
    cells = [
        box(x0 + 8 * GSD, y1 - 24 * GSD, x0 + 24 * GSD, y1 - 8 * GSD),
        box(x0 + 30 * GSD, y1 - 50 * GSD, x0 + 60 * GSD, y1 - 40 * GSD),
    ]
    gpd.GeoDataFrame({"class": ["car", "Solar Panel"]}, geometry=cells, crs=UTM32).to_file(path)
    return path


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    """One extend run with vector labels and a vanishing learning rate."""
    root = new_class_tiles(tmp_path_factory.mktemp("new"))
    model = make_bundle(root / "base.safetensors")
    before = model.read_bytes()
    req = request(
        root,
        model,
        root / "out.safetensors",
        labels=write_polygons(root / "new.gpkg"),
        lr=1e-9,
        colors=["#ff00ff", "#ffff00"],
    )
    logs = []
    result = extend_bundle(req, log=logs.append, progress=False)
    return result, model, before, logs


def test_extend_appends_classes_channels_and_history(extended):
    result, _, _, logs = extended
    out = StepBundle.load(result.path)
    assert out.schema.names == ["road", "building", "tree", "car", "solar panel"]
    assert out.schema.colors[3:] == [(255, 0, 255), (255, 255, 0)]
    assert out.classes_per_step == [3, 2]
    assert out.steps[1].channels == [3, 4] and out.steps[1].method == "finetune"
    assert out.channel_names[3:] == ["car", "solar panel"]
    assert out.mean == [120.0] * 3 and out.std == [60.0] * 3  # the bundle's, not the data's
    assert out.scenario["steps"] == [["road", "building", "tree"], ["car", "solar panel"]]
    assert out.build_model().classes_per_step == (3, 2)
    assert any("learning car, solar panel" in m for m in logs)


def test_extend_stores_new_vs_rest_metrics(extended):
    result, *_ = extended
    metrics = StepBundle.load(result.path).steps[1].metrics
    assert "old classes not evaluated" in metrics["scope"]
    assert metrics["miou"]["old"] is None
    assert [c["name"] for c in metrics["channels"]][1:] == ["car", "solar panel"]
    cm = np.asarray(metrics["confusion"])
    # one held-out 64x64 tile; polygons: 16x16 car, 10x30 solar panel; outside = rest
    assert cm.sum(1).tolist() == [SIZE * SIZE - 256 - 300, 256, 300]
    assert result.held_out and result.eval_tiles == 1


def test_extend_stores_old_class_retention(extended):
    result, *_ = extended
    stored = StepBundle.load(result.path).steps[1].info["retention"]
    assert Retention.from_dict(stored) == result.retention
    names = [c.name for c in result.retention.classes]
    assert names == ["road", "building", "tree"]
    assert result.retention.background == "road"  # its warning would name the remedy
    # new-class pixels (16x16 car, 10x30 solar panel) are left out; the rest is scored
    assert result.retention.pixels == SIZE * SIZE - 256 - 300
    for c in result.retention.classes:
        if c.teacher_pixels:
            # lr 1e-9: the old logits are the teacher's, so a pixel the student takes from an
            # old class can only have gone to a new one
            assert c.kept + c.to_new == pytest.approx(1.0)


def test_input_bundle_is_untouched(extended):
    _, model, before, _ = extended
    assert model.read_bytes() == before


def test_old_logits_come_from_the_teacher(extended):
    result, model, *_ = extended
    teacher = StepBundle.load(model)
    new = StepBundle.load(result.path)
    for key, value in teacher.state_dict.items():
        if "running" in key or "num_batches" in key:
            continue  # BatchNorm statistics follow the new data in training mode
        assert torch.allclose(new.state_dict[key], value, atol=1e-6), key
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        old = teacher.build_model()(x).logits
        now = new.build_model()(x).logits[:, :3]
        other = make_bundle(model.parent / "other.safetensors", seed=5)
        random = StepBundle.load(other).build_model()(x).logits
    assert (now - old).abs().max() < 0.2 * (random - old).abs().max()


def test_label_values_map_raw_values(tmp_path):
    root = new_class_tiles(tmp_path, n=2, values=(7, 9))
    schema, ids = extend_schema(base_schema(), ["car", "pool"])
    labels = new_label_schema(schema, ids, [7, 9])
    from geociss.data.catalog import Catalog

    cat = Catalog.scan(root / "images", root / "labels", labels, cache=False)
    assert cat.class_counts.tolist() == [2 * (SIZE * (SIZE - 2) - 556), 512, 600]


def test_unknown_label_value_is_one_line_error(tmp_path):
    root = new_class_tiles(tmp_path, n=2, values=(1, 5))
    model = make_bundle(tmp_path / "m.safetensors")
    with pytest.raises(DataError) as err:
        extend_bundle(request(root, model, tmp_path / "o.safetensors"), progress=False)
    msg = str(err.value)
    assert "t0.tif" in msg and "unknown label value(s) 5" in msg and "\n" not in msg
    assert not (tmp_path / "o.safetensors").exists()


def test_refuses_existing_output_and_the_input_itself(tmp_path):
    root = new_class_tiles(tmp_path, n=2)
    model = make_bundle(tmp_path / "m.safetensors")
    out = tmp_path / "o.safetensors"
    out.write_bytes(b"keep")
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        extend_bundle(request(root, model, out), progress=False)
    assert out.read_bytes() == b"keep"
    with pytest.raises(DataError, match="is the input bundle"):
        extend_bundle(request(root, model, model, overwrite=True), progress=False)


def test_band_count_mismatch_names_the_file(tmp_path):
    root = new_class_tiles(tmp_path, n=2)
    model = make_bundle(tmp_path / "m.safetensors", in_channels=4)
    with pytest.raises(DataError, match=r"t0\.tif: has 3 image band\(s\) but the model m"):
        extend_bundle(request(root, model, tmp_path / "o.safetensors"), progress=False)


def test_bad_class_names_colours_and_values():
    schema = base_schema()
    with pytest.raises(ConfigError, match="Tree already in the model"):
        extend_schema(schema, ["Tree"])
    with pytest.raises(ConfigError, match="reserved"):
        extend_schema(schema, ["background"])
    with pytest.raises(ConfigError, match="distinct"):
        extend_schema(schema, ["car", "Car"])
    with pytest.raises(ConfigError, match="--colors gives 1"):
        extend_schema(schema, ["car", "pool"], ["#ff0000"])
    with pytest.raises(ConfigError, match="invalid colour"):
        extend_schema(schema, ["car"], ["red"])
    ext, ids = extend_schema(schema, ["car"])
    with pytest.raises(ConfigError, match="0 means background"):
        new_label_schema(ext, ids, [0])
    with pytest.raises(ConfigError, match="2 value"):
        new_label_schema(ext, ids, [4, 5])


def test_unlearned_schema_class_keeps_its_id_and_values():
    schema = ClassSchema.preset("isprs")  # a 4-1 step 0 learned ids 0-3; car (4) is still new
    ext, ids = extend_schema(schema, ["Car", "pool"], learned=[0, 1, 2, 3])
    assert ids == [4, 6] and ext.names[4] == "car" and ext.names[6] == "pool"
    assert ext.classes[4].values == schema.classes[4].values and ext.classes[6].values == [6]
    with pytest.raises(ConfigError, match="building already in the model"):
        extend_schema(schema, ["building"], learned=[0, 1, 2, 3])
    labels = new_label_schema(ext, ids)
    assert labels.names == ["background", "car", "pool"]
    rgb, ids = extend_schema(ClassSchema.preset("isprs-rgb"), ["pool"], ["#123456"])
    assert ids == [6] and rgb.classes[6].values == [(0x12, 0x34, 0x56)]


def test_auto_colours_are_distinct_and_far_from_taken():
    taken = [(255, 255, 255), (0, 0, 255), (0, 255, 0)]
    colours = auto_colors(taken, 4)
    assert len(set(colours)) == 4 and not set(colours) & set(taken)
    dist = min(sum((a - b) ** 2 for a, b in zip(c, t, strict=True)) for c in colours for t in taken)
    assert dist > 40**2


def test_joint_cannot_extend(tmp_path):
    root = new_class_tiles(tmp_path, n=2)
    model = make_bundle(tmp_path / "m.safetensors")
    req = request(root, model, tmp_path / "o.safetensors")
    req.method = MethodConfig(name="joint")
    with pytest.raises(ConfigError, match="needs the old data"):
        extend_bundle(req, progress=False)


def test_full_labels_keep_the_new_values_and_make_the_rest_background(tmp_path):
    schema, ids = extend_schema(base_schema(), ["car", "pool"])
    labels = new_label_schema(schema, ids, [7, 0], full_labels=True)
    raw = np.array([[0, 1, 2, 7], [9, 255, 300, 0]], dtype=np.uint16)
    # 7 = car (1), 0 = pool (2: with full labels 0 may be a class value), 255 ignored, rest 0
    assert labels.encode(raw).tolist() == [[2, 0, 0, 1], [0, 255, 0, 2]]
    with pytest.raises(ConfigError, match="--full-labels needs --label-values"):
        new_label_schema(schema, ids, None, full_labels=True)
    with pytest.raises(ConfigError, match="0 means background"):
        new_label_schema(schema, ids, [7, 0])


def test_full_label_rasters_train_an_extend_step(tmp_path):
    # the original labels: 3 and 5 are old classes, 7 and 9 the new ones
    root = new_class_tiles(tmp_path, n=2, values=(7, 9))
    for path in (root / "labels").glob("*.tif"):
        import rasterio

        with rasterio.open(path, "r+") as dst:
            label = dst.read(1)
            label[30:40, :] = np.where(label[30:40, :] == 0, 3, label[30:40, :])
            label[56:, :] = 5
            dst.write(label, 1)
    model = make_bundle(root / "base.safetensors")
    req = request(root, model, root / "out.safetensors", label_values=[7, 9], lr=1e-9)
    with pytest.raises(DataError, match="unknown label value"):
        extend_bundle(req, log=lambda _: None, progress=False)
    req.full_labels = True
    result = extend_bundle(req, log=lambda _: None, progress=False)
    cm = np.asarray(StepBundle.load(result.path).steps[1].metrics["confusion"])
    assert cm.sum(1).tolist()[1:] == [256, 300]  # the 16x16 car and the 10x30 pool


def test_full_labels_refuse_polygons(tmp_path):
    root = new_class_tiles(tmp_path, n=2)
    model = make_bundle(root / "base.safetensors")
    req = request(
        root,
        model,
        root / "o.safetensors",
        labels=write_polygons(root / "n.gpkg"),
        label_values=[1, 2],
    )
    req.full_labels = True
    with pytest.raises(ConfigError, match="polygon file"):
        extend_bundle(req, log=lambda _: None, progress=False)


def test_extended_scenario_lists_steps_channels_and_what_is_still_unlearned():
    schema = ClassSchema.preset("isprs")  # 4-1: step 0 learned ids 0-3 with a background channel
    ext, ids = extend_schema(schema, ["car"], learned=[0, 1, 2, 3])
    steps = [StepRecord([None, 0, 1, 2, 3]), StepRecord(ids)]
    out = extended_scenario({"task": "4-1", "steps": [["old"]]}, ext, steps)
    assert out["task"] == "4-1"  # other keys kept, the step list replaced
    assert out["steps"] == [[ext.names[i] for i in range(4)], ["car"]]
    assert out["channels"] == ["background", *ext.names[:4], "car"]
    assert out["classes_per_step"] == [5, 1]
    assert out["unlearned"] == [n for i, n in enumerate(ext.names) if i not in {0, 1, 2, 3, 4}]
