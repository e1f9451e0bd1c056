import copy
import math
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import yaml

from geociss.losses.arcl import region_contrastive_loss
from geociss.losses.ce import cross_entropy
from geociss.losses.dada import ConfidenceHistogram, confidence_pseudo_labels, dense_distillation
from geociss.losses.unbiased import unbiased_cross_entropy, unbiased_kd
from geociss.methods import get_method

from conformance import MethodConformance, batch, make_method, prepare_step1, run_losses

CONFIGS = Path(__file__).parents[2] / "configs" / "methods"
ALL_TERMS = {"seg", "dada", "dada_logits", "arcl"}


def config_params(name):
    spec = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["method"]
    assert spec["name"] == "idec"
    return spec["params"]


def prepared_eval(params):
    """A step-1 IDEC with the student in eval mode (no dropout: deterministic terms)."""
    method, student, teacher = prepare_step1("idec", params)
    return method, student.eval(), teacher


def outputs(method, student, teacher, data):
    out = student(data["image"], features=method.student_features())
    with torch.no_grad():
        old = teacher(data["image"], features=method.teacher_features())
    return out, old


class TestIDEC(MethodConformance):
    method_name = "idec"


class TestIDECNoDADA(MethodConformance):
    method_name = "idec"
    params: ClassVar[dict] = config_params("idec-no-dada")


class TestIDECNoARCL(MethodConformance):
    method_name = "idec"
    params: ClassVar[dict] = config_params("idec-no-arcl")


class TestIDECNoPseudo(MethodConformance):
    method_name = "idec"
    params: ClassVar[dict] = config_params("idec-no-pseudo")


def test_config_files_are_the_defaults_and_single_switch_ablations():
    cls = get_method("idec")
    assert cls.Params.model_validate(config_params("idec")) == cls.Params()
    for switch, name in (("dada", "dada"), ("arcl", "arcl"), ("pseudo_labels", "pseudo")):
        ablated = cls.Params.model_validate(config_params(f"idec-no-{name}"))
        assert ablated == cls.Params(**{switch: False})


def test_features_requested_per_switch():
    assert make_method("idec", {}, 0).student_features() == set()
    assert not make_method("idec", {}, 0).uses_teacher()
    full = make_method("idec", {}, 1)
    assert full.student_features() == full.teacher_features() == {"stages", "aspp"}
    assert make_method("idec", {"dada": False}, 1).student_features() == {"aspp"}
    assert make_method("idec", {"dada": False, "arcl": False}, 1).student_features() == set()
    off = {"dada": False, "arcl": False, "pseudo_labels": False}
    assert not make_method("idec", off, 1).uses_teacher()


def test_step1_preparation_balanced_init_and_frozen_norms_only():
    _, student, _ = prepare_step1("idec", {})
    bg = student.classifier.head(0).weight[0]
    assert all(torch.equal(row, bg) for row in student.classifier.head(-1).weight)
    norms = [m for m in student.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and not any(p.requires_grad for m in norms for p in m.parameters())
    convs = [m for m in student.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.weight.requires_grad for m in convs)  # encoder and ASPP train (not IDEC's freeze)
    _, unfrozen, _ = prepare_step1("idec", {"freeze_norm": False})
    assert all(p.requires_grad for p in unfrozen.parameters())


def test_prepass_thresholds_are_the_teacher_confidence_quantiles():
    params = {"pseudo_quantile": 0.3, "pseudo_min_confidence": 0.0, "pseudo_bins": 100}
    method, _, teacher = prepare_step1("idec", params)
    hist = ConfidenceHistogram(3, bins=100)
    with torch.no_grad():
        for s in range(2):  # the batches prepare_step1 gave the pre-pass
            data = batch(5, range(3, 5), seed=s)
            hist.update(teacher(data["image"]).logits, data["mask"])
    assert hist.counts.sum() > 0
    torch.testing.assert_close(method.thresholds, hist.thresholds(0.3, 0.0))
    assert prepare_step1("idec", {"pseudo_labels": False})[0].thresholds is None


def test_losses_need_the_prepass_only_with_pseudo_labels():
    _, student, teacher = prepare_step1("idec", {})
    with pytest.raises(RuntimeError, match="pre-pass"):
        run_losses(make_method("idec", {}, 1), student, teacher, batch(5, range(3, 5)))
    no_pseudo = make_method("idec", {"pseudo_labels": False}, 1)
    assert set(run_losses(no_pseudo, student, teacher, batch(5, range(3, 5)))) == ALL_TERMS


def test_terms_equal_their_definitions():
    method, student, teacher = prepared_eval({"pseudo_min_confidence": 0.4})
    data = batch(5, range(3, 5), seed=7)
    terms = run_losses(method, student, teacher, data)
    assert set(terms) == ALL_TERMS
    out, old = outputs(method, student, teacher, data)
    pseudo = confidence_pseudo_labels(data["mask"], old.logits, method.thresholds)
    assert pseudo.confident.any() and pseudo.unresolved.any()
    levels = [out.stages[0], out.stages[1], out.stages[2], out.aspp]
    old_levels = [old.stages[0], old.stages[1], old.stages[2], old.aspp]
    torch.testing.assert_close(
        terms["dada"], dense_distillation(levels, old_levels, [0.5, 1.0, 2.0, 1.0], 2.0)
    )
    torch.testing.assert_close(terms["dada_logits"], 10 * unbiased_kd(out.logits, old.logits))
    expected_arcl = 0.1 * region_contrastive_loss(out.aspp, old.aspp, pseudo.target, 0.1)
    torch.testing.assert_close(terms["arcl"], expected_arcl)
    # seg: CE on resolved pixels, −log Σ_{c<3} p_c on unresolved ones, mean over every pixel
    p = torch.softmax(out.logits.double(), 1)
    target = pseudo.target.clamp(max=4)
    picked = p.gather(1, target[:, None])[:, 0]
    per_pixel = torch.where(pseudo.unresolved, -p[:, :3].sum(1).log(), -picked.log())
    per_pixel = torch.where(pseudo.target == 255, torch.zeros_like(per_pixel), per_pixel)
    torch.testing.assert_close(terms["seg"].double(), per_pixel.mean(), rtol=1e-5, atol=1e-6)


def test_segmentation_loss_by_hand_on_one_image():
    method = make_method("idec", {}, 1)
    logits = torch.tensor([1.0, 2.0, 0.5, -1.0, 3.0])[None, :, None, None].expand(1, 5, 1, 4)
    target = torch.tensor([[[0, 2, 4, 255]]])
    unresolved = torch.tensor([[[True, False, False, False]]])
    e = [math.exp(v) for v in (1.0, 2.0, 0.5, -1.0, 3.0)]
    expected = -math.log(sum(e[:3]) / sum(e)) - math.log(e[2] / sum(e)) - math.log(e[4] / sum(e))
    got = method.segmentation_loss(logits, target, unresolved)
    assert float(got) == pytest.approx(expected / 4, rel=1e-6)  # 'all': ignored pixel counts


def test_plain_ce_mode_trains_unresolved_pixels_as_background():
    method, student, teacher = prepared_eval({"seg_loss": "ce", "pseudo_min_confidence": 0.4})
    data = batch(5, range(3, 5), seed=7)
    out, old = outputs(method, student, teacher, data)
    target, unresolved = method.pseudo_target(data["mask"], old)
    assert unresolved.any() and (target[unresolved] == 0).all()
    expected = cross_entropy(out.logits, target, "all")
    torch.testing.assert_close(method.losses(data, out, old)["seg"], expected)


@pytest.mark.parametrize(("dtype", "scale"), [(torch.float16, 6e4), (torch.bfloat16, 1e30)])
def test_segmentation_and_pseudo_labels_stable_in_half_precision(dtype, scale):
    g = torch.Generator().manual_seed(2)
    logits = (torch.randn(2, 5, 6, 6, generator=g).clamp(-1, 1) * scale).to(dtype)
    logits.requires_grad_(True)
    mask = torch.tensor([0, 3, 4, 255])[torch.randint(0, 4, (2, 6, 6), generator=g)]
    pseudo = confidence_pseudo_labels(mask, logits[:, :3], torch.tensor([0.5, 0.6, 0.9]))
    assert pseudo.confident.any()  # huge logits: the teacher is certain
    for seg_loss in ("unce", "ce"):
        method = make_method("idec", {"seg_loss": seg_loss}, 1)
        loss = method.segmentation_loss(logits, pseudo.target, mask == 0)  # merged branch too
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(loss) and loss.dtype == torch.float32
        assert torch.isfinite(grad).all()


def test_without_pseudo_labels_seg_is_mib_unce_and_dada_unchanged():
    data = batch(5, range(3, 5), seed=4)
    full = run_losses(*prepared_eval({}), data)
    method, student, teacher = prepared_eval({"pseudo_labels": False})
    terms = run_losses(method, student, teacher, data)
    out = student(data["image"])
    torch.testing.assert_close(terms["seg"], unbiased_cross_entropy(out.logits, data["mask"], 3))
    for name in ("dada", "dada_logits"):
        torch.testing.assert_close(terms[name], full[name])


@pytest.mark.parametrize(
    ("switch", "gone"),
    [("dada", {"dada", "dada_logits"}), ("arcl", {"arcl"}), ("logit_kd_weight", {"dada_logits"})],
)
def test_switches_remove_exactly_their_terms(switch, gone):
    data = batch(5, range(3, 5), seed=5)
    full = run_losses(*prepared_eval({}), data)
    value = 0.0 if switch == "logit_kd_weight" else False
    ablated = run_losses(*prepared_eval({switch: value}), data)
    assert set(ablated) == ALL_TERMS - gone
    for name in ablated:
        torch.testing.assert_close(ablated[name], full[name])


def grad_norms(student, loss):
    student.zero_grad(set_to_none=True)
    loss.backward()

    def norm(module):
        return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)

    return norm(student.encoder), norm(student.aspp), norm(student.classifier)


@pytest.mark.parametrize("term", ["dada", "arcl"])
def test_term_sends_gradient_to_encoder_and_aspp(term):
    method, student, teacher = prepared_eval({})
    encoder, aspp, classifier = grad_norms(
        student, run_losses(method, student, teacher, batch(5, range(3, 5), seed=3))[term]
    )
    assert encoder > 0 and aspp > 0
    assert classifier == 0  # both terms act on features only


def train(params, steps=2, seed=11):
    """A few SGD steps of a step-1 IDEC from the same start; the student's final weights."""
    method, student, teacher = prepared_eval(params)
    optimizer = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=0.5)
    for s in range(steps):
        data = batch(5, range(3, 5), seed=seed + s)
        loss = sum(run_losses(method, student, teacher, data).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in student.state_dict().items()}


@pytest.mark.parametrize("switch", ["dada", "arcl"])
def test_term_changes_the_trained_encoder_and_aspp(switch):
    base = {"dada": False, "arcl": False}  # eval mode, fixed batches: nothing random
    with_term = train({**base, switch: True})
    without = train(base)
    for part in ("encoder.", "aspp."):
        keys = [k for k in with_term if k.startswith(part) and with_term[k].is_floating_point()]
        diff = max(float((with_term[k] - without[k]).abs().max()) for k in keys)
        assert diff > 1e-6, f"{switch} left the {part[:-1]} weights unchanged"


def test_teacher_gets_no_gradient_even_when_left_trainable():
    method, student, teacher = prepared_eval({})
    teacher.requires_grad_(True)  # anchors and KD targets must be detached inside the losses
    data = batch(5, range(3, 5), seed=3)
    out = student(data["image"], features=method.student_features())
    old = teacher(data["image"], features=method.teacher_features())
    terms = method.losses(data, out, old)
    sum(terms.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in student.parameters())


def test_losses_modify_neither_labels_nor_weights():
    method, student, teacher = prepared_eval({})
    data = batch(5, range(3, 5), seed=9)
    mask = data["mask"].clone()
    before = copy.deepcopy(student.state_dict())
    run_losses(method, student, teacher, data)
    assert torch.equal(data["mask"], mask)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
