from pathlib import Path
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
import yaml

from geociss.errors import ConfigError
from geociss.losses.distill import output_distillation

from conformance import BASE, MethodConformance, batch, make_method, prepare_step1, tiny_model


class TestILT(MethodConformance):
    method_name = "ilt"


class TestILTOutput(MethodConformance):
    method_name = "ilt"
    params: ClassVar[dict] = {"variant": "output"}


class TestILTFeature(MethodConformance):
    method_name = "ilt"
    params: ClassVar[dict] = {"variant": "feature"}


class TestILTEncoderFrozen(MethodConformance):
    method_name = "ilt"
    params: ClassVar[dict] = {"variant": "ef"}


class TestILTEncoderFrozenOutput(MethodConformance):
    method_name = "ilt"
    params: ClassVar[dict] = {"variant": "ef+output", "distill_pixels": "all"}


class TestILTOutputFeature(MethodConformance):
    method_name = "ilt"
    params: ClassVar[dict] = {
        "variant": "output+feature"
    }  # 'old' pixels: the suite's labels have no old class


def step1_outputs(params, seed=0, old_labels=False):
    method, student, teacher = prepare_step1("ilt", params)
    data = batch(5, range(3, 5), seed=seed)
    if old_labels:  # ILT's protocol: old classes keep their labels
        data["mask"][:, :8] = torch.randint(0, 3, data["mask"][:, :8].shape)
    out = student(data["image"], features=method.student_features())
    with torch.no_grad():
        old = teacher(data["image"], features=method.teacher_features())
    return method, data, out, old


def test_mib_variant_is_ce_plus_100_kd_plus_100_mse():
    method, data, out, old = step1_outputs({})
    assert not method.keep_old_labels and method.student_features() == {"encoder"}
    terms = method.losses(data, out, old)
    assert set(terms) == {"ce", "kd", "feature"}
    mask = data["mask"]
    ce = F.cross_entropy(out.logits, mask, ignore_index=255, reduction="sum") / mask.numel()
    # KD by its definition: truncated softmax, averaged over the 3 old classes and all pixels
    log_p = F.log_softmax(out.logits[:, :3], 1)
    q = F.softmax(old.logits, 1)
    kd = -(q * log_p).sum(1).div(3).mean()
    mse = ((out.encoder - old.encoder) ** 2).mean()
    assert torch.allclose(terms["ce"], ce, rtol=1e-5)
    assert torch.allclose(terms["kd"], 100 * kd, rtol=1e-5)
    assert torch.allclose(terms["feature"], 100 * mse, rtol=1e-5)


@pytest.mark.parametrize(
    ("pixels", "select"),
    [
        ("old_bgr", lambda m: m < 3),
        ("old", lambda m: (m >= 1) & (m < 3)),
        ("all", lambda m: m != 255),
    ],
)
def test_output_variant_distils_the_selected_pixels(pixels, select):
    method, data, out, old = step1_outputs(
        {"variant": "output", "distill_pixels": pixels}, old_labels=True
    )
    assert method.keep_old_labels and method.uses_teacher()
    mask = data["mask"]
    terms = method.losses(data, out, old)
    assert set(terms) == {"ce", "kd"}
    ce = F.cross_entropy(out.logits, mask, ignore_index=255)  # mean over labelled pixels
    assert torch.allclose(terms["ce"], ce, rtol=1e-5)
    expected = output_distillation(out.logits, old.logits, select(mask))
    assert torch.allclose(terms["kd"], expected)
    assert select(mask).any() and not select(mask).all()


def test_feature_variant_weight_50_and_no_output_term():
    method, data, out, old = step1_outputs({"variant": "feature"})
    terms = method.losses(data, out, old)
    assert set(terms) == {"ce", "feature"}
    assert torch.allclose(terms["feature"], 50 * ((out.encoder - old.encoder) ** 2).mean())


def test_encoder_frozen_variants():
    for variant in ("ef", "ef+output"):
        method, student, _ = prepare_step1("ilt", {"variant": variant})
        assert all(not p.requires_grad for p in student.encoder.parameters())
        assert all(p.requires_grad for p in student.aspp.parameters())
        assert student.aspp.training and not student.encoder.training
        assert method.uses_teacher() == (variant == "ef+output")
    step0 = make_method("ilt", {"variant": "ef"}, 0)
    model = tiny_model(BASE[:1])
    step0.configure_model(model)
    step0.train_mode(model)
    assert all(p.requires_grad for p in model.parameters()) and model.encoder.training


def test_ef_variant_trains_only_the_decoder():
    method, student, _ = prepare_step1("ilt", {"variant": "ef"})
    data = batch(5, range(3, 5))
    terms = method.losses(data, student(data["image"]), None)
    assert set(terms) == {"ce"}
    terms["ce"].backward()
    assert all(p.grad is None for p in student.encoder.parameters())


def test_defaults_resolve_per_variant_and_can_be_overridden():
    p = make_method("ilt", {}, 1).params
    assert (p.kd_weight, p.feature_weight, p.ce_reduction, p.keep_old_labels) == (
        100.0,
        100.0,
        "all",
        False,
    )
    p = make_method("ilt", {"variant": "output"}, 1).params
    assert (p.kd_weight, p.feature_weight, p.ce_reduction, p.keep_old_labels) == (
        1.0,
        0.0,
        "valid",
        True,
    )
    m = make_method("ilt", {"variant": "output", "keep_old_labels": False, "kd_weight": 2}, 1)
    assert not m.keep_old_labels and m.params.kd_weight == 2.0


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"variant": "feature", "kd_weight": 1}, "kd_weight does not apply"),
        ({"variant": "ef+output", "feature_weight": 1}, "feature_weight does not apply"),
        ({"distill_pixels": "old"}, "distill_pixels does not apply"),
        ({"variant": "output", "distill_pixels": "old", "keep_old_labels": False}, "no pixel"),
        ({"variant": "lwf"}, "variant"),
        ({"kd_weight": -1}, "kd_weight"),
    ],
)
def test_bad_params_are_one_line_config_errors(params, problem):
    with pytest.raises(ConfigError, match=problem) as err:
        make_method("ilt", params, 1)
    assert "\n" not in str(err.value) and "method ilt" in str(err.value)


def test_missing_teacher_output_is_an_error():
    method, student, _ = prepare_step1("ilt", {})
    data = batch(5, range(3, 5))
    with pytest.raises(RuntimeError, match="teacher"):
        method.losses(data, student(data["image"], features={"encoder"}), None)


@pytest.mark.parametrize(
    "variant", ["mib", "output", "feature", "ef", "ef+output", "output+feature"]
)
def test_shipped_config_validates_for_every_variant(variant):
    path = Path(__file__).parents[2] / "configs" / "methods" / "ilt.yaml"
    method = yaml.safe_load(path.read_text())["method"]
    assert method["name"] == "ilt"
    m = make_method("ilt", {**method["params"], "variant": variant}, 1)
    assert m.params.kd_weight is not None and m.params.ce_reduction in ("valid", "all")
    assert m.keep_old_labels == (variant != "mib")


def test_shipped_mib_config_is_the_default():
    path = Path(__file__).parents[2] / "configs" / "methods" / "mib.yaml"
    method = yaml.safe_load(path.read_text())["method"]
    assert method["name"] == "mib"
    assert make_method("mib", method["params"], 1).params == make_method("mib", {}, 1).params
