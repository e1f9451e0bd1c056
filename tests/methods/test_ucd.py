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
    assert step1.student_features() == {"context"}
    assert step1.teacher_features() == {"context", "logits_low"}
    head = make_method("ucd", {"embedding": "head"}, 1)
    assert head.student_features() == {"aspp"}
    assert head.teacher_features() == {"aspp", "logits_low"}
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
    out = student(data["image"], features={"context"})
    with torch.no_grad():
        old = teacher(data["image"], features={"context", "logits_low"})
    expected = 0.01 * uncertainty_contrastive_loss(
        out.context, old.context, old.logits_low, data["mask"]
    )
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


def _step1_with_decoder(params):
    """A step-1 UCD on a DeepLab-v3+ model (head feature at 1/4, ASPP output at 1/16)."""
    import copy

    from conformance import tiny_model

    teacher = tiny_model((3,), decoder="deeplabv3plus", decoder_low_channels=8)
    student = copy.deepcopy(teacher)
    student.add_step(2)
    method = make_method("ucd", params, 1)
    teacher.eval().requires_grad_(False)
    method.init_new_classifier(student, teacher)
    method.configure_model(student)
    return method, student.eval(), teacher


def test_logits_at_averages_each_cell_and_keeps_equal_grids():
    from geociss.methods.ucd import logits_at

    logits = torch.arange(32.0).reshape(1, 2, 4, 4)
    pooled = logits_at(logits, (2, 2))
    # channel 0, top-left 2 × 2 cell holds 0, 1, 4, 5
    assert pooled[0, 0, 0, 0].item() == 2.5 and pooled.shape == (1, 2, 2, 2)
    assert logits_at(logits, (4, 4)) is logits


def test_context_embedding_contrasts_the_aspp_output_with_a_decoder():
    data = batch(5, range(3, 5), seed=3, size=64)
    method, student, teacher = _step1_with_decoder({})
    terms = run_losses(method, student, teacher, data)
    out = student(data["image"], features={"context", "aspp"})
    with torch.no_grad():
        old = teacher(data["image"], features={"context", "logits_low"})
    assert out.context.shape[-2:] == (4, 4) and out.aspp.shape[-2:] == (16, 16)
    pooled = torch.nn.functional.avg_pool2d(old.logits_low, 4)
    expected = 0.01 * uncertainty_contrastive_loss(out.context, old.context, pooled, data["mask"])
    torch.testing.assert_close(terms["ucd"], expected)
    # the head embedding contrasts the decoder's 1/4 output instead: a different number
    head = run_losses(*_step1_with_decoder({"embedding": "head"}), data)
    assert not torch.allclose(head["ucd"], terms["ucd"])


def test_context_embedding_sends_gradient_to_the_aspp():
    method, student, teacher = _step1_with_decoder({"kd_weight": 0.0})
    student.train()
    terms = run_losses(method, student, teacher, batch(5, range(3, 5), seed=3, size=64))
    terms["ucd"].backward()
    grads = [p.grad for p in student.aspp.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    # the decoder is not on the contrastive term's path
    student.zero_grad()
    run_losses(method, student, teacher, batch(5, range(3, 5), seed=3, size=64))["ucd"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in student.decoder.parameters())
