from pathlib import Path
from typing import ClassVar

import torch
import yaml

from geociss.losses.contrastive import uncertainty_contrastive_loss
from geociss.methods import get_method
from geociss.methods.mib import MiB

from conformance import MethodConformance, batch, make_method, prepare_step1, run_losses

CONFIG = Path(__file__).parents[2] / "configs" / "methods" / "ucd.yaml"


def prepared_eval(params):
    """A step-1 UCD with the student in eval mode (no dropout: deterministic terms)."""
    method, student, teacher = prepare_step1("ucd", params)
    return method, student.eval(), teacher


class TestUCD(MethodConformance):
    method_name = "ucd"


class TestUCDOriginalShiftNoKD(MethodConformance):
    method_name = "ucd"
    params: ClassVar[dict] = {"original_shift": True, "kd_weight": 0.0, "max_pixels": 5}


def test_config_file_matches_the_defaults():
    spec = yaml.safe_load(CONFIG.read_text())["method"]
    cls = get_method(spec["name"])
    assert issubclass(cls, MiB)
    assert cls.Params.model_validate(spec["params"]) == cls.Params()


def test_features_requested_only_at_incremental_steps():
    step0 = make_method("ucd", {}, 0)
    assert step0.student_features() == set() and not step0.uses_teacher()
    step1 = make_method("ucd", {}, 1)
    assert step1.student_features() == {"aspp"}
    assert step1.teacher_features() == {"aspp", "logits_low"}
    assert make_method("ucd", {"kd_weight": 0.0}, 1).uses_teacher()
    assert make_method("ucd", {"ucd_weight": 0.0}, 1).student_features() == set()


def test_terms_are_mib_plus_weighted_contrastive_distillation():
    data = batch(5, range(3, 5), seed=3)
    method, student, teacher = prepared_eval({})
    terms = run_losses(method, student, teacher, data)
    mib_terms = run_losses(*prepared_eval({"ucd_weight": 0.0}), data)
    assert set(terms) == {"unce", "unkd", "ucd"} and set(mib_terms) == {"unce", "unkd"}
    for name in ("unce", "unkd"):
        torch.testing.assert_close(terms[name], mib_terms[name])
    out = student(data["image"], features={"aspp"})
    with torch.no_grad():
        old = teacher(data["image"], features={"aspp", "logits_low"})
    expected = 0.01 * uncertainty_contrastive_loss(out.aspp, old.aspp, old.logits_low, data["mask"])
    torch.testing.assert_close(terms["ucd"], expected)
    assert float(terms["ucd"].detach()) > 0


def test_kd_weight_zero_drops_the_distillation_term():
    terms = run_losses(*prepared_eval({"kd_weight": 0.0}), batch(5, range(3, 5), seed=3))
    assert set(terms) == {"unce", "ucd"}


def test_freeze_base_classifier_freezes_step0_head_only():
    _, student, _ = prepare_step1("ucd", {"freeze_base_classifier": True})
    assert not any(p.requires_grad for p in student.classifier.head(0).parameters())
    assert all(p.requires_grad for p in student.classifier.head(1).parameters())
    _, default, _ = prepare_step1("ucd", {})
    assert all(p.requires_grad for p in default.classifier.parameters())
