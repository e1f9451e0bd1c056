"""ONNX export for QGIS Deepness: graph vs PyTorch, dynamic batch, metadata, CLI."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from geociss.cli.main import cli
from geociss.data.classes import ClassSchema
from geociss.engine.bundle import StepBundle, StepRecord
from geociss.inference.onnx_export import deepness_metadata, deepness_warnings
from geociss.models import ModelConfig, SegmentationModel

TILE = 64
MEAN = [92.0, 101.0, 87.0]
STD = [41.0, 38.0, 45.0]


def _bundle(**fields) -> StepBundle:
    torch.manual_seed(0)
    cfg = ModelConfig(encoder="tiny", weights="none", aspp_channels=16)
    model = SegmentationModel(cfg, [3])
    model.add_step(2)
    with torch.no_grad():  # make the classifiers matter so a wrong normalisation shows
        for p in model.classifier.parameters():
            p.mul_(20.0)
    fields = {"mean": MEAN, "std": STD, "bands": ["red", "green", "blue"], "gsd": 0.09,
              **fields}
    return StepBundle.from_model(
        model.eval(), schema=ClassSchema.preset("isprs"),
        steps=[StepRecord([None, 1, 2], method="joint"), StepRecord([4, 3], method="mib")],
        **fields,
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export through the CLI, shared by the tests (the exporter takes seconds)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    root = tmp_path_factory.mktemp("onnx")
    bundle = _bundle()
    path = bundle.save(root / "step1.safetensors")
    out = root / "model.onnx"
    result = CliRunner().invoke(
        cli, ["export", "onnx", "--model", str(path), str(out), "--tile", str(TILE),
              "--overlap", "20"],
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    return StepBundle.load(path), out


def _deepness_feed(session, x_uint8: np.ndarray) -> np.ndarray:
    """What Deepness does with a uint8 tile batch: /255, then the metadata standardisation."""
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    mean = np.array(meta["standardization_mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.array(meta["standardization_std"], np.float32).reshape(1, -1, 1, 1)
    x = (np.float32(x_uint8 * 1.0 / 255.0) - mean) / std
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_matches_pytorch_softmax(exported, batch):
    ort = pytest.importorskip("onnxruntime")
    bundle, out = exported
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(batch)
    x = rng.integers(0, 256, (batch, 3, TILE, TILE)).astype(np.uint8)
    got = _deepness_feed(session, x)

    model = bundle.build_model()
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        want = torch.softmax(model((torch.from_numpy(x).float() - mean) / std).logits, 1)
    assert got.shape == (batch, 5, TILE, TILE)
    assert np.abs(got - want.numpy()).max() < 1e-4
    assert np.allclose(got.sum(1), 1.0, atol=1e-5)
    assert (got.argmax(1) == want.numpy().argmax(1)).mean() > 0.999
    # a wrong normalisation would change the answer: the test can fail
    with torch.inference_mode():
        raw = torch.softmax(model(torch.from_numpy(x).float() / 255.0).logits, 1)
    assert np.abs(got - raw.numpy()).max() > 1e-2


def test_onnx_file_is_single_ir8_with_dynamic_batch(exported):
    onnx = pytest.importorskip("onnx")
    _, out = exported
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx", "step1.safetensors"]
    model = onnx.load(str(out), load_external_data=False)
    assert model.ir_version <= 9 and model.ir_version == 8
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [18]
    assert all(not t.external_data for t in model.graph.initializer)
    (inp,) = model.graph.input
    (outp,) = model.graph.output

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert dims(inp) == ["batch", 3, TILE, TILE]
    assert dims(outp) == ["batch", 5, TILE, TILE]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_deepness_metadata_is_json(exported):
    ort = pytest.importorskip("onnxruntime")
    bundle, out = exported
    raw = ort.InferenceSession(str(out)).get_modelmeta().custom_metadata_map
    meta = {k: json.loads(v) for k, v in raw.items()}  # Deepness json.loads every value
    assert meta["model_type"] == "Segmentor"
    names = meta["class_names"]
    assert list(names) == [str(i) for i in range(5)]
    assert list(names.values()) == bundle.channel_names
    assert names["0"] == "background"
    assert meta["resolution"] == pytest.approx(9.0)
    assert meta["tile_size"] == meta["tiles_size"] == TILE
    assert meta["tiles_overlap"] == 20
    assert meta["standardization_mean"] == [0.0] * 3
    assert meta["standardization_std"] == [1.0] * 3
    assert meta["seg_thresh"] == 0.0 and meta["seg_small_segment"] == 0
    assert meta["geociss_task_step"] == 1
    assert meta["geociss_classes_per_step"] == [3, 2]
    assert meta["geociss_normalization"] == {"mean": MEAN, "std": STD}
    assert meta["geociss_palette"][0] == "#808080" and len(meta["geociss_palette"]) == 5


def test_metadata_without_gsd_and_warnings():
    bundle = _bundle(gsd=None, mean=[1200.0, 1300.0, 1100.0], std=[300.0, 310.0, 280.0])
    assert "resolution" not in deepness_metadata(bundle, 256, 10)
    messages = deepness_warnings(bundle)
    assert any("does not look like uint8" in m for m in messages)
    assert any("no ground sampling distance" in m for m in messages)
    assert deepness_warnings(_bundle()) == []


def test_cli_errors_are_one_line(tmp_path, monkeypatch):
    runner = CliRunner()
    result = runner.invoke(cli, ["export", "onnx", "--model", str(tmp_path / "no.safetensors"),
                                 str(tmp_path / "m.onnx")])
    assert result.exit_code == 2
    assert "step bundle not found" in result.output or "onnx" in result.output
    path = _bundle().save(tmp_path / "b.safetensors")
    if _has("onnx") and _has("onnxscript"):
        result = runner.invoke(cli, ["export", "onnx", "--model", str(path),
                                     str(tmp_path / "m.onnx"), "--tile", "8"])
        assert result.exit_code == 2 and "--tile must be between 32 and 4096" in result.output
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    result = runner.invoke(cli, ["export", "onnx", "--model", str(path), str(tmp_path / "m.onnx")])
    assert result.exit_code == 2
    assert "pip install 'geociss[onnx]'" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()


def _has(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
