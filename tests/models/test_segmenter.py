"""SegmentationModel: outputs, requested features, incremental steps, parameter groups."""

from __future__ import annotations

import pytest
import torch

from geociss.errors import ConfigError
from geociss.models import FEATURES, ModelConfig, SegmentationModel


def tiny(classes=(3,), **kw) -> SegmentationModel:
    torch.manual_seed(0)
    cfg = {"encoder": "tiny", "weights": "none", "aspp_channels": 32, "norm_groups": 8, **kw}
    return SegmentationModel(ModelConfig(**cfg), list(classes))


def test_logits_at_input_size_and_nothing_else_by_default():
    model = tiny((3, 2)).eval()
    out = model(torch.randn(2, 3, 64, 48))
    assert out.logits.shape == (2, 5, 64, 48)
    assert all(getattr(out, name) is None for name in FEATURES)


def test_every_feature_on_request():
    model = tiny((3, 2)).eval()
    out = model(torch.randn(2, 3, 64, 64), features=FEATURES)
    assert out.logits_low is not None and out.logits_low.shape == (2, 5, 4, 4)
    assert out.aspp is not None and out.aspp.shape == (2, 32, 4, 4)
    assert (out.aspp >= 0).all()  # post-activation
    assert out.aspp_branches is not None and len(out.aspp_branches) == 5
    assert all(b.shape == (2, 32, 4, 4) for b in out.aspp_branches)
    assert out.stages is not None and out.stages_pre is not None and out.encoder is not None
    assert len(out.stages) == len(out.stages_pre) == 4
    assert out.encoder is out.stages[-1]
    upsampled = torch.nn.functional.interpolate(
        out.logits_low, size=(64, 64), mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(upsampled, out.logits)


def test_only_requested_features_are_returned():
    model = tiny().eval()
    out = model(torch.randn(1, 3, 32, 32), features=["aspp"])
    assert out.aspp is not None
    assert out.stages is None and out.stages_pre is None and out.logits_low is None
    single = model(torch.randn(1, 3, 32, 32), features="encoder")  # one name as a string
    assert single.encoder is not None and single.aspp is None


def test_unknown_feature_lists_valid_names():
    with pytest.raises(ValueError, match="valid: logits_low, aspp"):
        tiny()(torch.randn(1, 3, 32, 32), features=["pre_logits"])


def test_stages_pre_needs_a_resnet_encoder():
    model = tiny(encoder="mobilenetv3")
    assert "stages_pre" not in model.available_features
    with pytest.raises(ConfigError, match="no pre-activation"):
        model(torch.randn(1, 3, 32, 32), features=["stages_pre"])


def test_output_stride_8_doubles_the_feature_resolution():
    out = tiny(output_stride=8).eval()(torch.randn(1, 3, 64, 64), features=["logits_low"])
    assert out.logits_low is not None and out.logits_low.shape[-2:] == (8, 8)


def test_four_band_input():
    model = tiny(in_channels=4).eval()
    assert model(torch.randn(1, 4, 32, 32)).logits.shape == (1, 3, 32, 32)


def test_add_step_grows_channels_and_keeps_old_outputs():
    model = tiny((3,)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x).logits
    model.add_step(2)
    assert model.classes_per_step == (3, 2)
    assert model.num_classes == 5 and model.old_channels == 3 and model.num_steps == 2
    with torch.no_grad():
        after = model(x).logits
    assert after.shape[1] == 5
    torch.testing.assert_close(after[:, :3], before, rtol=0, atol=0)
    with pytest.raises(ValueError, match="at least one channel"):
        model.add_step(0)


def test_gradients_reach_encoder_and_head():
    model = tiny((2, 2)).train()
    out = model(torch.randn(2, 3, 32, 32))
    out.logits.square().mean().backward()
    for name, params in (("backbone", model.backbone_parameters()),
                         ("head", model.head_parameters())):
        grads = [p.grad for p in params]
        assert all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name


def test_parameter_groups_partition_the_model():
    model = tiny((3, 1))
    backbone = {id(p) for p in model.backbone_parameters()}
    head = {id(p) for p in model.head_parameters()}
    assert backbone and head and not backbone & head
    assert backbone | head == {id(p) for p in model.parameters()}


def test_freeze_parts():
    model = tiny((3, 2))
    model.freeze("encoder", "old_classifiers")
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert not any(p.requires_grad for p in model.classifier.head(0).parameters())
    assert all(p.requires_grad for p in model.classifier.head(1).parameters())
    assert all(p.requires_grad for p in model.aspp.parameters())
    with pytest.raises(ValueError, match="unknown part"):
        model.freeze("decoder")  # type: ignore[arg-type]


def test_frozen_norm_stays_in_eval_mode_after_train():
    model = tiny()
    model.freeze("norm")
    model.train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    assert all(not m.weight.requires_grad for m in bns)
    before = [m.running_mean.clone() for m in bns]
    model(torch.randn(2, 3, 32, 32))
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, bns, strict=True))
    assert model.classifier.dropout.training


def test_group_norm_head_trains_with_batch_of_one():
    model = tiny(norm="group").train()
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.aspp.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.aspp.modules())
    model(torch.randn(1, 3, 32, 32)).logits.mean().backward()


def test_channels_last_and_bfloat16_autocast():
    model = tiny((3, 2)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x).logits
    model = model.to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(model(xc).logits, ref, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(xc, features=["aspp"])
    assert low.logits.dtype == torch.bfloat16 and low.logits.shape == (2, 5, 64, 64)
    assert torch.isfinite(low.logits.float()).all()
    assert (low.logits.float().argmax(1) == ref.argmax(1)).float().mean() > 0.5


def test_unknown_encoder_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown encoder 'vgg16'; choose one of"):
        SegmentationModel(ModelConfig(encoder="vgg16", weights="none"), [2])


def test_context_is_the_aspp_output_before_the_decoder():
    import torch as _t

    plain = SegmentationModel(
        ModelConfig(encoder="tiny", weights="none", aspp_channels=32, norm_groups=8), [5]
    ).eval()
    out = plain(_t.randn(1, 3, 64, 64), features={"context", "aspp"})
    assert out.context is out.aspp  # no decoder: the same tensor
    plus = SegmentationModel(
        ModelConfig(
            encoder="tiny", weights="none", aspp_channels=32, norm_groups=8,
            decoder="deeplabv3plus", decoder_low_channels=8,
        ),
        [5],
    ).eval()
    out = plus(_t.randn(1, 3, 64, 64), features={"context", "aspp"})
    assert out.context.shape == (1, 32, 4, 4) and out.aspp.shape == (1, 32, 16, 16)
    assert plus(_t.randn(1, 3, 64, 64)).context is None  # only when asked
