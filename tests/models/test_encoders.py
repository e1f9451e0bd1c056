"""Encoder presets: shapes, output stride, pre-activations, parity with torchvision."""

from __future__ import annotations

import pytest
import torch
import torchvision

from geociss.models.encoders import ENCODERS, ResNetEncoder, TimmFeatureEncoder
from geociss.models.weights import apply_state_dict


def _randomise_norms(module: torch.nn.Module) -> None:
    """Make BatchNorm layers look trained (timm zero-inits the last BN of each block)."""
    gen = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.randn(m.weight.shape, generator=gen) * 0.5 + 1
            m.bias.data = torch.randn(m.bias.shape, generator=gen) * 0.1
            m.running_mean.data = torch.randn(m.running_mean.shape, generator=gen) * 0.1
            m.running_var.data = torch.rand(m.running_var.shape, generator=gen) + 0.5


def test_registry_lists_presets():
    assert {"resnet101", "resnet50", "resnet18", "mobilenetv3", "tiny"} <= set(ENCODERS.names())
    with pytest.raises(KeyError, match="choose one of"):
        ENCODERS.get("vgg")


@pytest.mark.parametrize("name", ["tiny", "resnet18", "mobilenetv3", "resnet50"])
def test_stage_shapes_at_output_stride_16(name):
    enc = ENCODERS.get(name)(3, 16).eval()
    with torch.no_grad():
        out = enc(torch.randn(1, 3, 64, 64))
    assert [s.shape[-1] for s in out.stages] == [16, 8, 4, 4]
    assert tuple(s.shape[1] for s in out.stages) == enc.channels
    assert enc.out_channels == enc.channels[-1]
    assert out.stages_pre is None


def test_output_stride_8_and_four_bands():
    enc = ENCODERS.get("tiny")(4, 8).eval()
    with torch.no_grad():
        out = enc(torch.randn(2, 4, 64, 64))
    assert [s.shape[-1] for s in out.stages] == [16, 8, 8, 8]


def test_pre_activations_are_residual_sums_before_relu():
    enc = ENCODERS.get("tiny")(3, 16).eval()
    _randomise_norms(enc)
    with torch.no_grad():
        out = enc(torch.randn(2, 3, 64, 64), pre_activation=True)
    assert out.stages_pre is not None and len(out.stages_pre) == 4
    for pre, post in zip(out.stages_pre, out.stages, strict=True):
        assert pre.shape == post.shape
        assert (pre < 0).any(), "pre-activation maps must keep negative values"
        assert (post >= 0).all()
        torch.testing.assert_close(torch.relu(pre), post, rtol=0, atol=0)


def test_pre_activation_keeps_state_dict_keys_of_timm():
    enc = ENCODERS.get("resnet18")(3, 16)
    assert isinstance(enc, ResNetEncoder)
    keys = set(enc.body.state_dict())
    assert "layer4.1.bn2.weight" in keys and "conv1.weight" in keys
    assert not any(k.startswith("stage_acts") for k in enc.state_dict())


def test_feature_encoder_refuses_pre_activations():
    enc = ENCODERS.get("mobilenetv3")(3, 16)
    assert isinstance(enc, TimmFeatureEncoder) and not enc.has_pre_activation
    with pytest.raises(ValueError, match="pre-activation"):
        enc(torch.randn(1, 3, 32, 32), pre_activation=True)


def test_resnet101_matches_torchvision_dilated_resnet101():
    """Paper parity: same weights → the same layer4 output as torchvision's OS16 ResNet-101.

    This is also the resnet101 preset's shape test (built once: it is the slowest preset).
    """
    torch.manual_seed(0)
    tv = torchvision.models.resnet101(replace_stride_with_dilation=[False, False, True]).eval()
    _randomise_norms(tv)
    enc = ENCODERS.get("resnet101")(3, 16).eval()
    apply_state_dict(enc, tv.state_dict(), "torchvision resnet101")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))))
        out = enc(x)
    ours = out.stages[-1]
    assert [s.shape[1:] for s in out.stages] == [
        (256, 16, 16), (512, 8, 8), (1024, 4, 4), (2048, 4, 4)
    ]
    assert enc.channels == (256, 512, 1024, 2048)
    assert ours.shape == ref.shape == (1, 2048, 4, 4)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
