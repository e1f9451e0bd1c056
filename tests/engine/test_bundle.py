"""Step bundles: exact round trip, model rebuild, corrupt files."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from geociss.data.classes import ClassSchema
from geociss.engine.bundle import FORMAT_VERSION, StepBundle, StepRecord
from geociss.errors import DataError
from geociss.models import ModelConfig, SegmentationModel


@pytest.fixture
def schema() -> ClassSchema:
    return ClassSchema.preset("isprs")


def _model(in_channels: int = 3, **kw) -> SegmentationModel:
    torch.manual_seed(0)
    cfg = ModelConfig(encoder="tiny", weights="none", aspp_channels=16, in_channels=in_channels,
                      **kw)
    model = SegmentationModel(cfg, [2])
    model.add_step(3)
    return model


def _bundle(model: SegmentationModel, schema: ClassSchema, **kw) -> StepBundle:
    steps = [
        StepRecord([0, 1], method="joint", data_fingerprint="abc", metrics={"miou": 0.61}),
        StepRecord([2, 3, 4], method="mib", metrics={"miou": np.float32(0.5), "iou": [0.1, 0.9]},
                   info={"epochs": 3, "lr": 1e-3}),
    ]
    fields = {"mean": [0.3, 0.3, 0.3], "std": [0.2, 0.2, 0.25], "bands": ["red", "green", "blue"],
              "gsd": 0.05, "scenario": {"task": "2-3", "setting": "overlap"}, **kw}
    return StepBundle.from_model(model, schema=schema, steps=steps, **fields)


def test_round_trip_is_exact(tmp_path, schema):
    model = _model().eval()
    aux = torch.randn(1, 16, 1, 1)
    bundle = _bundle(model, schema, extra_tensors={"dkd.aux.weight": aux})
    path = bundle.save(tmp_path / "step1.safetensors")
    loaded = StepBundle.load(path)

    assert loaded.source == path
    assert loaded == bundle  # every metadata field
    assert loaded.metadata() == bundle.metadata()
    assert loaded.steps[1].metrics["miou"] == pytest.approx(0.5)
    assert loaded.channels == [0, 1, 2, 3, 4] and loaded.classes_per_step == [2, 3]
    assert loaded.channel_names[:2] == ["impervious surfaces", "building"]
    assert loaded.state_dict.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        got = loaded.state_dict[key]
        assert got.dtype == value.dtype and torch.equal(got, value), key
    assert torch.equal(loaded.extra_tensors["dkd.aux.weight"], aux)

    rebuilt = loaded.build_model()
    assert not rebuilt.training and rebuilt.classes_per_step == (2, 3)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(rebuilt(x).logits, model(x).logits)


def test_snapshot_does_not_follow_later_training(schema):
    model = _model()
    bundle = _bundle(model, schema)
    with torch.no_grad():
        model.classifier.head(0).bias.add_(1.0)
    assert not torch.equal(bundle.state_dict["classifier.heads.0.bias"],
                           model.classifier.head(0).bias)


def test_build_model_never_downloads(tmp_path, schema, monkeypatch):
    bundle = _bundle(_model(), schema)
    bundle.model_config = bundle.model_config.model_copy(update={"weights": "imagenet"})

    def no_download(*args, **kwargs):
        raise AssertionError("build_model must not fetch initial weights")

    monkeypatch.setattr("geociss.models.segmenter.load_encoder_weights",
                        lambda enc, w: no_download() if w != "none" else None)
    model = StepBundle.load(bundle.save(tmp_path / "b.safetensors")).build_model()
    assert model.config.weights == "imagenet"


def test_shared_and_channels_last_tensors_are_saved(tmp_path, schema):
    model = _model(in_channels=4).to(memory_format=torch.channels_last).eval()
    weight = model.classifier.head(0).weight
    bundle = _bundle(model, schema, mean=None, std=None, bands=[])
    bundle.state_dict["classifier.heads.0.weight"] = weight.detach()
    bundle.extra_tensors["tied"] = weight.detach()  # same storage as a model tensor
    loaded = StepBundle.load(bundle.save(tmp_path / "cl.safetensors"))
    assert torch.equal(loaded.extra_tensors["tied"], weight)
    rebuilt = loaded.build_model()
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x).logits, model(x).logits, rtol=1e-5, atol=1e-6)


def test_from_model_checks_steps(schema):
    model = _model()
    with pytest.raises(ValueError, match=r"\[2, 2\] channels per step, the model has \[2, 3\]"):
        StepBundle.from_model(model, schema=schema,
                              steps=[StepRecord([0, 1]), StepRecord([2, 3])])
    with pytest.raises(ValueError, match="not in the class schema"):
        StepBundle.from_model(model, schema=schema,
                              steps=[StepRecord([0, 1]), StepRecord([2, 3, 9])])
    with pytest.raises(ValueError, match="mean has 2 entries for 3 input bands"):
        _bundle(model, schema, mean=[0.0, 0.0])


def test_failed_save_leaves_previous_file(tmp_path, schema, monkeypatch):
    path = _bundle(_model(), schema).save(tmp_path / "b.safetensors")
    before = path.read_bytes()
    bad = _bundle(_model(), schema)
    bad.steps[0].metrics["oops"] = object()
    with pytest.raises(TypeError, match="cannot store a object"):
        bad.save(path)
    assert path.read_bytes() == before

    def half_written(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", half_written)
    with pytest.raises(OSError, match="No space left"):
        _bundle(_model(), schema).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["b.safetensors"]


def _raw_safetensors(path, metadata):
    save_file({"w": torch.zeros(2)}, str(path), metadata=metadata)
    return path


def test_unreadable_files_are_data_errors_naming_the_file(tmp_path, schema):
    good = _bundle(_model(), schema).save(tmp_path / "good.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(struct.pack("<Q", 10**12) + b"{not json")
    cases = {
        tmp_path / "missing.safetensors": "step bundle not found",
        truncated: "not a readable safetensors file",
        garbage: "not a readable safetensors file",
        _raw_safetensors(tmp_path / "plain.safetensors", None): "not a geociss step bundle",
        _raw_safetensors(tmp_path / "badjson.safetensors", {"geociss": "{"}): "corrupt bundle",
        _raw_safetensors(tmp_path / "future.safetensors",
                         {"geociss": json.dumps({"format_version": FORMAT_VERSION + 1})}):
            "format version 2 is not supported",
        _raw_safetensors(tmp_path / "nokeys.safetensors",
                         {"geociss": json.dumps({"format_version": 1})}): "missing 'model_config'",
    }
    for path, problem in cases.items():
        with pytest.raises(DataError) as err:
            StepBundle.load(path)
        assert str(err.value).startswith(f"{path}: "), str(err.value)
        assert problem in str(err.value), str(err.value)
        assert "\n" not in str(err.value)


def test_inconsistent_metadata_and_weights(tmp_path, schema):
    bundle = _bundle(_model(), schema)
    meta = bundle.metadata()
    meta["model_config"]["encoder_typo"] = "x"
    path = tmp_path / "badcfg.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"geociss": json.dumps(meta)})
    with pytest.raises(DataError, match=r"badcfg\.safetensors: .*encoder_typo"):
        StepBundle.load(path)

    del bundle.state_dict["aspp.project.0.weight"]
    loaded = StepBundle.load(bundle.save(tmp_path / "partial.safetensors"))
    with pytest.raises(DataError, match=r"partial\.safetensors: weights do not match"):
        loaded.build_model()
