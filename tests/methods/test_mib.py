from typing import ClassVar

import pytest
import torch

from geociss.errors import ConfigError
from geociss.losses.ce import cross_entropy
from geociss.losses.unbiased import unbiased_cross_entropy, unbiased_kd

from conformance import BASE, MethodConformance, batch, make_method, prepare_step1, tiny_model


class TestMiB(MethodConformance):
    method_name = "mib"


class TestMiBValidReductionNoInit(MethodConformance):
    method_name = "mib"
    params: ClassVar[dict] = {"ce_reduction": "valid", "init_balanced": False, "alpha": 0.5}


def test_defaults_are_the_authors():
    p = make_method("mib", {}, 1).params
    assert (p.kd_weight, p.alpha, p.ce_reduction, p.init_balanced) == (10.0, 1.0, "all", True)
    with pytest.raises(ConfigError, match="kd_weight"):
        make_method("mib", {"kd_weight": -1}, 1)


def test_step1_terms_are_unce_plus_weighted_unkd():
    method, student, teacher = prepare_step1("mib", {"kd_weight": 3.0})
    assert method.uses_teacher() and not method.keep_old_labels
    data = batch(5, range(3, 5), seed=1)
    data["mask"][0, :2, :2] = 1  # an old label in the data: must count as background
    before = data["mask"].clone()
    out = student(data["image"])
    with torch.no_grad():
        old = teacher(data["image"])
    terms = method.losses(data, out, old)
    assert set(terms) == {"unce", "unkd"}
    assert torch.equal(data["mask"], before)
    assert torch.allclose(terms["unce"], unbiased_cross_entropy(out.logits, before, 3, "all"))
    assert torch.allclose(terms["unkd"], 3.0 * unbiased_kd(out.logits, old.logits))


def test_step0_is_plain_cross_entropy():
    method = make_method("mib", {}, 0)
    model = tiny_model(BASE[:1])
    data = batch(3, range(1, 3))
    out = model(data["image"])
    terms = method.losses(data, out, None)
    assert set(terms) == {"ce"}
    assert torch.allclose(terms["ce"], cross_entropy(out.logits, data["mask"], "all"))


def test_balanced_init_applied_only_when_asked():
    _, student, teacher = prepare_step1("mib", {})
    new = student.classifier.head(-1).weight
    assert torch.equal(new, teacher.classifier.head(0).weight[:1].expand_as(new))
    _, student, teacher = prepare_step1("mib", {"init_balanced": False})
    assert not torch.equal(student.classifier.head(-1).weight[0], teacher.classifier.weight[0])
    assert torch.equal(student.classifier.head(0).bias, teacher.classifier.head(0).bias)


def test_zero_kd_weight_drops_the_teacher():
    method, student, _ = prepare_step1("mib", {"kd_weight": 0})
    assert not method.uses_teacher()
    data = batch(5, range(3, 5))
    assert set(method.losses(data, student(data["image"]), None)) == {"unce"}


def test_missing_teacher_output_is_an_error():
    method, student, _ = prepare_step1("mib", {})
    data = batch(5, range(3, 5))
    with pytest.raises(RuntimeError, match="teacher"):
        method.losses(data, student(data["image"]), None)


def test_balanced_init_makes_the_student_match_the_teacher_for_unkd():
    """At initialisation UNKD is at its minimum, the teacher's entropy / C_old."""
    _, student, teacher = prepare_step1("mib", {})
    student.eval()
    x = batch(5, range(3, 5))["image"]
    with torch.no_grad():
        z, z_old = student(x).logits.double(), teacher(x).logits.double()
    q = torch.softmax(z_old, 1)
    entropy = -(q * q.log()).sum(1).div(3).mean()
    assert torch.allclose(unbiased_kd(z, z_old), entropy, rtol=1e-6)
