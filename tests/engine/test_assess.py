"""`assess_bundle`: full-tile scores of a bundle whose prediction is known in advance."""

import numpy as np
import pytest
import torch

from geociss.data.classes import IGNORE_INDEX, ClassSchema
from geociss.engine.assess import (
    assess_bundle,
    bundle_bands,
    bundle_eval_lut,
    resolve_device,
    warn_statistics,
)
from geociss.engine.bundle import StepBundle, StepRecord
from geociss.errors import ConfigError, DataError
from geociss.models.config import ModelConfig
from geociss.models.segmenter import SegmentationModel

from fakes import write_tif


def schema(background="road"):
    names = ["building", "tree", "clutter"]
    names = ["road", *names] if background else names
    return ClassSchema.from_dict(
        {
            "name": "s",
            "background": background,
            "classes": [
                {"id": i, "name": n, "color": f"#{i:02x}{i:02x}{i:02x}"}
                for i, n in enumerate(names)
            ],
        }
    )


def forced_bundle(path, sch, steps, winner, in_channels=3, scenario=None):
    """A bundle whose logits are constant: channel ``winner`` wins every pixel."""
    cfg = ModelConfig(
        encoder="tiny",
        weights="none",
        aspp_channels=16,
        norm="group",
        norm_groups=4,
        in_channels=in_channels,
    )
    model = SegmentationModel(cfg, [len(s) for s in steps])
    with torch.no_grad():
        for i in range(model.num_steps):
            model.classifier.head(i).weight.zero_()
            model.classifier.head(i).bias.zero_()
        first = [sum(len(s) for s in steps[:i]) for i in range(len(steps))]
        step = max(i for i, f in enumerate(first) if f <= winner)
        model.classifier.head(step).bias[winner - first[step]] = 5.0
    bundle = StepBundle.from_model(
        model,
        schema=sch,
        steps=[StepRecord(channels=list(s)) for s in steps],
        mean=[0.0] * in_channels,
        std=[1.0] * in_channels,
        scenario=scenario,
        bands=[f"band {b}" for b in range(1, in_channels + 1)],
    )
    bundle.save(path)
    return StepBundle.load(path)


def labelled_tiles(root, label_sets, size=40):
    rng = np.random.default_rng(0)
    counts = np.zeros(256, np.int64)
    for i, values in enumerate(label_sets):
        label = np.asarray(values, np.uint8)[rng.integers(0, len(values), (size, size))]
        counts += np.bincount(label.ravel(), minlength=256)
        write_tif(root / "images" / f"t{i}.tif", rng.integers(0, 255, (3, size, size), np.uint8))
        write_tif(root / "labels" / f"t{i}.tif", label)
    return counts


def test_forced_prediction_gives_known_ious(tmp_path):
    counts = labelled_tiles(tmp_path, [[0, 1, 2, 3, 255], [0, 1, 3]])
    bundle = forced_bundle(tmp_path / "m.safetensors", schema(), [[0, 1], [2]], winner=1)
    result = assess_bundle(
        bundle,
        tmp_path / "images",
        tmp_path / "labels",
        size=32,
        overlap=8,
        progress=False,
        device="cpu",
    )
    s = result.scores
    n = counts[0] + counts[1] + counts[2]  # clutter (never learned) and 255 are ignored
    assert s.confusion.tolist() == [[0, counts[0], 0], [0, counts[1], 0], [0, counts[2], 0]]
    assert s.iou.tolist() == pytest.approx([0.0, counts[1] / n, 0.0])
    assert s.old_channels == (0, 1) and s.new_channels == (2,)
    assert s.miou_old == pytest.approx(counts[1] / n / 2)
    assert s.miou_new == 0.0
    assert s.miou_all == pytest.approx(counts[1] / n / 3)
    assert result.unlearned == {"clutter": "ignored"} and result.tiles == 2
    assert list(s.channel_steps) == [0, 0, 1]


def test_implicit_background_counts_unlearned_classes_as_background(tmp_path):
    counts = labelled_tiles(tmp_path, [[0, 1, 2]])
    sch = schema(background=None)  # building, tree, clutter; channel 0 = implicit background
    bundle = forced_bundle(tmp_path / "m.safetensors", sch, [[None, 0, 1]], winner=0)
    result = assess_bundle(
        bundle,
        tmp_path / "images",
        tmp_path / "labels",
        size=64,
        overlap=0,
        progress=False,
        device="cpu",
    )
    s = result.scores
    assert s.confusion[:, 0].tolist() == [counts[2], counts[0], counts[1]]
    assert s.iou[0] == pytest.approx(counts[2] / counts[:3].sum())
    assert result.unlearned == {"clutter": "background"}


def test_eval_lut_future_classes_follow_the_scenario(tmp_path):
    sch = schema()
    scenario = {"steps": [["road", "building"], ["tree"]], "future": "ignore"}
    bundle = forced_bundle(tmp_path / "m.safetensors", sch, [[0, 1]], 0, scenario=scenario)
    lut, unlearned = bundle_eval_lut(bundle, sch)
    assert lut[:4].tolist() == [0, 1, IGNORE_INDEX, IGNORE_INDEX]
    bundle.scenario = {**scenario, "future": "background"}
    lut, _ = bundle_eval_lut(bundle, sch)
    assert lut[2] == 0 and lut[3] == IGNORE_INDEX
    other = ClassSchema.from_dict(
        {
            "classes": [
                {"id": 0, "name": "TREE", "color": "#000000"},
                {"id": 1, "name": "Building", "color": "#010101"},
            ]
        }
    )
    lut, unlearned = bundle_eval_lut(bundle, other)  # matched by name, case-insensitive
    assert lut[:2].tolist() == [0, 1] and unlearned == {"TREE": "background"}


def test_band_mismatch_and_missing_normalisation(tmp_path):
    labelled_tiles(tmp_path, [[0, 1]])
    bundle = forced_bundle(tmp_path / "m.safetensors", schema(), [[0, 1]], 0, in_channels=4)
    with pytest.raises(DataError, match=r"t0\.tif: has 3 image band\(s\) but the model"):
        assess_bundle(bundle, tmp_path / "images", tmp_path / "labels", progress=False)
    bundle.mean = None
    with pytest.raises(DataError, match="no input normalisation"):
        warn_statistics([0.0] * 4, bundle, print)


def test_band_selection_and_statistics_warning(tmp_path):
    bundle = forced_bundle(tmp_path / "m.safetensors", schema(), [[0, 1]], 0)
    assert bundle_bands(bundle) is None
    bundle.bands = ["band 2", "band 3", "band 4"]
    assert bundle_bands(bundle) == [2, 3, 4]
    logs = []
    assert warn_statistics([0.5, 0.0, 9.0], bundle, logs.append) == [3]
    assert "band(s) 3" in logs[0]


def test_device_choice():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(ConfigError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")
