"""Pretrained weights: local files, weight enums, band adaptation, offline failures."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from torchvision.models._api import WeightsEnum

from geociss.errors import ConfigError, DataError
from geociss.models import ModelConfig, SegmentationModel
from geociss.models.encoders import ENCODERS
from geociss.models.weights import adapt_first_conv, load_encoder_weights


def _model(weights: str, encoder: str = "tiny", in_channels: int = 3) -> SegmentationModel:
    cfg = ModelConfig(encoder=encoder, weights=weights, in_channels=in_channels, aspp_channels=16)
    return SegmentationModel(cfg, [2])


def _reference_state(encoder: str = "tiny") -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    return {k: v.clone() for k, v in ENCODERS.get(encoder)(3, 16).body.state_dict().items()}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every download fails as it does without a network."""
    original = timm.create_model

    def create_model(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("[Errno -2] Name or service not known")
        return original(*args, **kwargs)

    def get_state_dict(self, *args, **kwargs):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(timm, "create_model", create_model)
    monkeypatch.setattr(WeightsEnum, "get_state_dict", get_state_dict)


def test_imagenet_offline_is_one_clear_line(offline):
    with pytest.raises(ConfigError) as err:
        _model("imagenet", encoder="resnet18")
    msg = str(err.value)
    assert msg.startswith("could not download ImageNet weights for resnet18 (offline?): ")
    assert msg.endswith("use weights: none or a local file") and "\n" not in msg


def test_weight_enum_offline_is_one_clear_line(offline):
    with pytest.raises(ConfigError, match=r"could not download weights ResNet18_Weights\."
                       r"SENTINEL2_RGB_MOCO for resnet18 \(offline\?\)"):
        _model("ResNet18_Weights.SENTINEL2_RGB_MOCO", encoder="resnet18")


def test_imagenet_weights_go_through_timm(monkeypatch):
    state = _reference_state()
    original = timm.create_model
    seen = []

    def create_model(name, *args, **kwargs):
        net = original(name, *args, **{**kwargs, "pretrained": False})
        if kwargs.get("pretrained"):
            seen.append(name)
            net.load_state_dict(state, strict=False)
        return net

    monkeypatch.setattr(timm, "create_model", create_model)
    model = _model("imagenet")
    assert seen == ["test_resnet.r160_in1k"]
    assert torch.equal(model.encoder.body.state_dict()["layer3.0.conv2.weight"],
                       state["layer3.0.conv2.weight"])


def test_torchgeo_enum_loads_its_state_dict(monkeypatch):
    state = _reference_state("resnet18")
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, **kw: state)
    model = _model("ResNet18_Weights.SENTINEL2_RGB_MOCO", encoder="resnet18")
    loaded = model.encoder.body.layer4[1].conv2.weight
    torch.testing.assert_close(loaded, state["layer4.1.conv2.weight"])


def test_torchvision_enum_and_keys_load_into_the_timm_resnet(monkeypatch):
    tv_state = torchvision.models.resnet18().state_dict()
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, **kw: tv_state)
    model = _model("ResNet18_Weights.IMAGENET1K_V1", encoder="resnet18")
    assert torch.equal(model.encoder.body.conv1.weight, tv_state["conv1.weight"])


def test_weights_of_another_architecture_are_refused():
    with pytest.raises(ConfigError, match="made for resnet50, not for encoder resnet18"):
        _model("ResNet50_Weights.SENTINEL2_RGB_MOCO", encoder="resnet18")


def test_unknown_weight_name():
    with pytest.raises(ConfigError, match="unknown weights 'imagenet21k'; use none, imagenet"):
        _model("imagenet21k")
    with pytest.raises(ConfigError, match="unknown weights"):
        _model("ResNet18_Weights.NOPE")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_state_dict_file(tmp_path, suffix):
    state = _reference_state()
    path = tmp_path / f"enc{suffix}"
    if suffix == ".safetensors":
        save_file({f"encoder.body.{k}": v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = _model(str(path))
    for key, value in model.encoder.body.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_rgb_weights_into_four_bands_copy_rgb_and_mean(tmp_path):
    state = _reference_state()
    path = tmp_path / "rgb.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = _model(str(path), in_channels=4)
    first = model.encoder.body.conv1[0].weight
    rgb = state["conv1.0.weight"]
    assert first.shape[1] == 4
    assert torch.equal(first[:, :3], rgb)
    torch.testing.assert_close(first[:, 3], rgb.mean(dim=1))


def test_adapt_first_conv_refuses_fewer_bands():
    with pytest.raises(ConfigError, match="made for 13 input bands, the model has in_channels=3"):
        adapt_first_conv(torch.zeros(8, 13, 3, 3), 3, "weights X")


def test_missing_corrupt_and_mismatched_files(tmp_path):
    enc = ENCODERS.get("tiny")(3, 16)
    with pytest.raises(DataError, match="weights file not found"):
        load_encoder_weights(enc, str(tmp_path / "nope.pth"))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DataError, match=r"junk\.safetensors: cannot read weights"):
        load_encoder_weights(enc, str(junk))
    other = tmp_path / "resnet18.pth"
    torch.save(ENCODERS.get("resnet18")(3, 16).body.state_dict(), other)
    with pytest.raises(DataError, match=r"resnet18\.pth: does not fit encoder tiny"):
        load_encoder_weights(enc, str(other))
    pickled = tmp_path / "object.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, pickled)  # a pickled module, not a state dict
    with pytest.raises(DataError, match=r"object\.pth: cannot read weights"):
        load_encoder_weights(enc, str(pickled))
