import copy
import math
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import yaml

from geociss.errors import DataError
from geociss.losses.decomposed import (
    auxiliary_loss,
    decompose,
    decomposed_kd,
    multilabel_bce,
    sigmoid_kd,
)
from geociss.methods import get_method
from geociss.methods.dkd import AUX_KEYS
from geociss.models.config import ModelConfig
from geociss.models.segmenter import SegmentationModel

from conformance import (
    BASE,
    MethodConformance,
    batch,
    make_method,
    prepare_step1,
    run_losses,
    tiny_model,
)


def perturb(student, scale=1e-2, seed=0):
    """Move the student's trainable parameters a little, as one optimisation step would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in student.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * scale)


class DKDConformance(MethodConformance):
    method_name = "dkd"

    def test_every_term_sends_gradient_and_teacher_stays_frozen(self, monkeypatch):
        # At initialisation the student's old channels equal the teacher's (same weights, frozen
        # norms, no dropout), and every BCE distillation term has gradient σ(z) − σ(z̄) = 0
        # there (see test_distillation_is_stationary_at_initialisation). The suite's check runs
        # on a student moved as by one optimisation step.
        import conformance

        real = conformance.prepare_step1

        def moved(*args, **kwargs):
            method, student, teacher = real(*args, **kwargs)
            perturb(student)
            return method, student, teacher

        monkeypatch.setattr(conformance, "prepare_step1", moved)
        super().test_every_term_sends_gradient_and_teacher_stays_frozen()


class TestDKD(DKDConformance):
    pass


class TestDKDFallbackIgnore(DKDConformance):
    params: ClassVar[dict] = {
        "background": "fallback",
        "ignored_pixels": "ignore",
        "ce_reduction": "all",
        "head_lr_mult": None,
    }


def model_with(norm="group"):
    if norm == "group":
        return tiny_model(BASE[:1])
    torch.manual_seed(0)
    cfg = ModelConfig(encoder="tiny", weights="none", aspp_channels=32, norm="batch")
    return SegmentationModel(cfg, [BASE[0]])


def step0(params=None, norm="group"):
    method = make_method("dkd", params or {}, 0)
    model = model_with(norm)
    method.init_new_classifier(model, None)
    method.configure_model(model)
    method.train_mode(model)
    return method, model


def restored_step1(params=None, norm="group"):
    """Step 0 model + a trained-looking aux classifier, carried to step 1 like the runner does."""
    method0, teacher = step0(params, norm)
    with torch.no_grad():
        method0.aux.weight.normal_()
        method0.aux.bias.fill_(-3.0)
    extra = {k: v.clone() for k, v in method0.extra_tensors().items()}
    student = copy.deepcopy(teacher)
    teacher.eval().requires_grad_(False)
    student.add_step(BASE[1])
    method = make_method("dkd", params or {}, 1)
    method.restore(extra)
    method.init_new_classifier(student, teacher)
    method.configure_model(student)
    method.train_mode(student)
    return method, student, teacher, extra


def test_defaults_are_the_papers_and_step0_is_its_own():
    p = make_method("dkd", {}, 1).params
    weights = (p.mbce_weight, p.kd_weight, p.dkd_pos_weight, p.dkd_neg_weight, p.ac_weight)
    assert weights == (1.0, 5.0, 5.0, 5.0, 1.0)
    assert (p.pos_weight, p.pos_weight_incremental, p.head_lr_mult) == (2.0, 1.0, 10.0)
    assert (p.ignored_pixels, p.background) == ("negative", "class")
    key = make_method("dkd", {}, 0).step0_key()
    assert key != make_method("finetune", {}, 0).step0_key()
    assert key != make_method("dkd", {"pos_weight": 35}, 0).step0_key()
    assert key == make_method("dkd", {"kd_weight": 1}, 0).step0_key()  # step-1 only
    assert key == make_method("dkd", {"pos_weight_incremental": 3}, 0).step0_key()


@pytest.mark.parametrize(("background", "first"), [("class", 0), ("fallback", 1)])
def test_step0_terms(background, first):
    method, model = step0({"background": background})
    if background == "fallback":
        head = model.classifier.head(0)
        assert not head.weight[0].any() and head.bias[0] == 0
    data = batch(3, range(1, 3), seed=2)
    out = model(data["image"], features={"aspp"})
    terms = method.losses(data, out, None)
    assert set(terms) == {"mbce", "ac"}
    mbce = multilabel_bce(out.logits, data["mask"], range(first, 3), 2.0)
    assert torch.allclose(terms["mbce"], mbce)
    aux = torch.nn.functional.interpolate(
        method.aux(out.aspp), size=(32, 32), mode="bilinear", align_corners=False
    )
    assert torch.allclose(terms["ac"], auxiliary_loss(aux))
    assert model.classifier.dropout.training  # dropout on at step 0


@pytest.mark.parametrize(("background", "first"), [("class", 0), ("fallback", 1)])
def test_step1_terms_are_the_weighted_losses(background, first):
    params = {"background": background, "kd_weight": 2.0, "dkd_pos_weight": 3.0,
              "dkd_neg_weight": 4.0, "mbce_weight": 0.5, "pos_weight": 9.0,
              "pos_weight_incremental": 7.0}
    method, student, teacher, _ = restored_step1(params)
    data = batch(5, range(3, 5), seed=4)
    data["mask"][0, :3, :3] = 1  # an old label: a negative for the new classes
    out = student(data["image"], features={"aspp"})
    with torch.no_grad():
        old = teacher(data["image"], features={"aspp"})
    terms = method.losses(data, out, old)
    assert set(terms) == {"mbce", "kd", "dkd_pos", "dkd_neg", "ac"}
    old_ch = range(first, 3)
    assert torch.allclose(terms["mbce"], 0.5 * multilabel_bce(out.logits, data["mask"], [3, 4], 7))
    assert torch.allclose(terms["kd"], 2.0 * sigmoid_kd(out.logits, old.logits, old_ch))
    pos, neg = decomposed_kd(
        out.aspp, student.classifier.weight, old.aspp, teacher.classifier.weight, old_ch
    )
    assert torch.allclose(terms["dkd_pos"], 3.0 * pos)
    assert torch.allclose(terms["dkd_neg"], 4.0 * neg)


def test_config_file_matches_the_defaults():
    path = Path(__file__).parents[2] / "configs" / "methods" / "dkd.yaml"
    spec = yaml.safe_load(path.read_text())["method"]
    cls = get_method(spec["name"])
    assert cls.Params.model_validate(spec["params"]) == cls.Params()


def test_default_pos_weight_is_2_at_step0_and_1_at_incremental_steps():
    # DKD's VOC scripts pass --pos_weight 2 to the step-0 command only; the incremental steps
    # keep the config's "pos_weight": 1. One pixel, one learned channel with logit 0 and label
    # 1: BCE = pos_weight · log 2, so the term is 2·log 2 at step 0 and log 2 at step 1.
    logits = torch.zeros(1, 5, 1, 1)
    positive = torch.ones(1, 1, 1, dtype=torch.int64)
    assert float(multilabel_bce(logits, positive, [1], 2.0)) == pytest.approx(2 * math.log(2))
    method, model = step0()
    data = batch(3, range(1, 3), seed=2)
    out = model(data["image"], features={"aspp"})
    expected = multilabel_bce(out.logits, data["mask"], range(0, 3), 2.0)
    assert torch.allclose(method.losses(data, out, None)["mbce"], expected)
    method, student, teacher, _ = restored_step1()
    data = batch(5, range(3, 5), seed=4)
    out = student(data["image"], features={"aspp"})
    with torch.no_grad():
        old = teacher(data["image"], features={"aspp"})
    mbce = method.losses(data, out, old)["mbce"]
    assert torch.allclose(mbce, multilabel_bce(out.logits, data["mask"], [3, 4], 1.0))
    assert not torch.allclose(mbce, multilabel_bce(out.logits, data["mask"], [3, 4], 2.0))


def test_model_logits_are_pos_plus_neg_plus_bias():
    _, student, _, _ = restored_step1()
    student.eval()
    out = student(torch.randn(1, 3, 32, 32), features={"aspp", "logits_low"})
    pos, neg = decompose(out.aspp, student.classifier.weight)
    bias = student.classifier.bias.view(1, -1, 1, 1)
    assert torch.allclose(pos + neg + bias, out.logits_low, atol=1e-5)


def test_init_copies_the_aux_classifier_into_every_new_row():
    method, student, teacher, extra = restored_step1()
    new = student.classifier.head(-1)
    for k in range(BASE[1]):
        assert torch.equal(new.weight[k], extra[AUX_KEYS[0]][0])
        assert new.bias[k] == -3.0
    assert torch.equal(method.aux.weight, extra[AUX_KEYS[0]])
    for i in range(BASE[0]):  # old rows untouched, kept for the teacher's decomposition
        assert torch.equal(student.classifier.weight[i], teacher.classifier.weight[i])
    assert torch.equal(method.old_weight, teacher.classifier.weight)


def test_extra_tensors_round_trip_through_a_step_bundle(tmp_path):
    from geociss.data.classes import ClassSchema
    from geociss.engine.bundle import StepBundle, StepRecord

    method, model = step0()
    with torch.no_grad():
        method.aux.weight.uniform_()
    bundle = StepBundle.from_model(
        model, schema=ClassSchema.preset("isprs"), steps=[StepRecord([0, 1, 2])],
        extra_tensors=method.extra_tensors(),
    )
    loaded = StepBundle.load(bundle.save(tmp_path / "b.safetensors"))
    assert set(loaded.extra_tensors) == set(AUX_KEYS)
    fresh = make_method("dkd", {}, 1)
    fresh.restore(loaded.extra_tensors)
    assert torch.equal(fresh.aux.weight, method.aux.weight)
    assert torch.equal(fresh.aux.bias, method.aux.bias)
    assert make_method("dkd", {}, 0).extra_tensors() == {}


def test_restore_rejects_bad_tensors_and_width_mismatch():
    method = make_method("dkd", {}, 1)
    with pytest.raises(DataError, match="auxiliary weight"):
        method.restore({AUX_KEYS[0]: torch.zeros(2, 8, 1, 1), AUX_KEYS[1]: torch.zeros(1)})
    with pytest.raises(DataError, match="auxiliary bias"):
        method.restore({AUX_KEYS[0]: torch.zeros(1, 8, 1, 1), AUX_KEYS[1]: torch.zeros(2)})
    method.restore({AUX_KEYS[0]: torch.zeros(1, 8, 1, 1), AUX_KEYS[1]: torch.zeros(1)})
    teacher = tiny_model(BASE[:1])  # ASPP width 32
    student = copy.deepcopy(teacher)
    student.add_step(2)
    with pytest.raises(DataError, match="reads 8 channels"):
        method.init_new_classifier(student, teacher)


def test_batch_norm_frozen_and_dropout_off_at_step1():
    _, student, _, _ = restored_step1(norm="batch")
    norms = [m for m in student.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(not p.requires_grad for m in norms for p in m.parameters())
    before = [(m.running_mean.clone(), m.running_var.clone()) for m in norms]
    assert student.training and not student.classifier.dropout.training
    student(torch.randn(2, 3, 32, 32) * 5 + 3)
    for m, (mean, var) in zip(norms, before, strict=True):
        assert torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var)
    _, model0 = step0(norm="batch")  # control: step 0 updates the statistics
    bn = next(m for m in model0.modules() if isinstance(m, torch.nn.BatchNorm2d))
    stats = bn.running_mean.clone()
    model0(torch.randn(2, 3, 32, 32) * 5 + 3)
    assert not torch.equal(bn.running_mean, stats)


def test_param_groups_lrs_weight_decay_and_coverage():
    method, student, _, _ = restored_step1(norm="batch")
    groups = method.param_groups(student, 0.001, 1.0, 1e-4)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"backbone", "head", "new_classifier", "method"}
    assert by_name["backbone"]["lr"] == 0.001
    for name in ("head", "new_classifier", "method"):
        assert by_name[name]["lr"] == pytest.approx(0.01)
    assert {n: g["weight_decay"] for n, g in by_name.items()} == {
        "backbone": 0.0, "head": 0.0, "new_classifier": 1e-4, "method": 0.0,
    }
    ids = [id(p) for g in groups for p in g["params"]]
    trainable = [p for p in (*student.parameters(), *method.parameters()) if p.requires_grad]
    assert len(ids) == len(set(ids)) == len(trainable)
    assert {id(p) for p in student.classifier.head(-1).parameters()} == {
        id(p) for p in by_name["new_classifier"]["params"]
    }
    method0, model0 = step0({"head_lr_mult": None})
    groups0 = method0.param_groups(model0, 0.01, 2.0, 1e-4)
    assert {g["name"] for g in groups0} == {"backbone", "head", "method"}
    assert all(g["weight_decay"] == 1e-4 for g in groups0)
    assert {g["name"]: g["lr"] for g in groups0}["head"] == pytest.approx(0.02)


def test_a_training_step_moves_the_student_but_not_bn_stats_or_teacher():
    method, student, teacher, _ = restored_step1(norm="batch")
    teacher_state = copy.deepcopy(teacher.state_dict())
    optimizer = torch.optim.SGD(method.param_groups(student, 0.01, 1.0, 1e-4), lr=0.01)
    new_before = student.classifier.head(-1).weight.clone()
    aux_before = method.aux.weight.clone()
    stats = {k: v.clone() for k, v in student.state_dict().items() if "running" in k}
    terms = run_losses(method, student, teacher, batch(5, range(3, 5), seed=5))
    sum(terms.values()).backward()
    optimizer.step()
    assert not torch.equal(student.classifier.head(-1).weight, new_before)
    assert not torch.equal(method.aux.weight, aux_before)
    assert all(torch.equal(student.state_dict()[k], v) for k, v in stats.items())
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in teacher_state.items())


def test_ac_gradient_stops_at_the_aspp_features():
    method, model = step0()
    data = batch(3, range(1, 3))
    terms = run_losses(method, model, None, data)
    terms["ac"].backward()
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    assert method.aux.weight.grad.abs().sum() > 0


def test_predict_rule_on_a_hand_made_logit_map():
    # Four pixels, channels [bg, a, b]:
    #   no fg above 0.5 → 0; a fires → 1; both fire, b higher → 2; bg huge but a fires → 1.
    logits = torch.tensor([
        [5.0, 9.0, -1.0, 50.0],
        [-1.0, 2.0, 1.0, 0.1],
        [-2.0, -3.0, 3.0, -5.0],
    ]).view(1, 3, 1, 4)
    method = make_method("dkd", {}, 1)
    assert method.predict(logits).tolist() == [[[0, 1, 2, 1]]]
    probs = method.probabilities(logits)
    assert torch.allclose(probs[0, 1:], torch.sigmoid(logits[0, 1:]))
    assert torch.allclose(probs[0, 0], 1 - torch.sigmoid(logits[0, 1:]).amax(0))
    saturated = torch.tensor([0.0, 30.0, 40.0]).view(1, 3, 1, 1)  # σ ties at 1.0 in float32
    assert method.predict(saturated).item() == 2
    assert method.predict(torch.zeros(1, 3, 2, 2)).eq(0).all()  # σ = 0.5 does not exceed 0.5


def test_probabilities_argmax_is_predict_and_in_unit_range():
    logits = torch.randn(2, 5, 8, 8) * 3
    method = make_method("dkd", {}, 1)
    probs = method.probabilities(logits.half())
    assert probs.dtype == torch.float32 and (probs >= 0).all() and (probs <= 1).all()
    assert torch.equal(probs.argmax(1), method.predict(logits))


def test_zero_distillation_weights_drop_the_teacher():
    params = {"kd_weight": 0, "dkd_pos_weight": 0, "dkd_neg_weight": 0}
    method, student, _ = prepare_step1("dkd", params)
    assert not method.uses_teacher() and method.teacher_features() == set()
    data = batch(5, range(3, 5))
    terms = method.losses(data, student(data["image"], features={"aspp"}), None)
    assert set(terms) == {"mbce", "ac"}


def test_distillation_is_stationary_at_initialisation():
    method, student, teacher = prepare_step1("dkd", {})
    data = batch(5, range(3, 5), seed=6)
    terms = run_losses(method, student, teacher, data)
    for name in ("kd", "dkd_pos", "dkd_neg"):
        student.zero_grad(set_to_none=True)
        params = [p for p in student.parameters() if p.requires_grad]
        grads = torch.autograd.grad(terms[name], params, retain_graph=True,
                                    allow_unused=True)
        assert all(g is None or not g.any() for g in grads), name


def test_misuse_is_reported():
    method, student, _ = prepare_step1("dkd", {})
    data = batch(5, range(3, 5))
    out = student(data["image"], features={"aspp"})
    with pytest.raises(RuntimeError, match="teacher"):
        method.losses(data, out, None)
    with pytest.raises(RuntimeError, match="init_new_classifier"):
        make_method("dkd", {}, 0).losses(data, out, None)


def test_losses_are_float32_and_finite_under_bf16_autocast():
    method, student, teacher, _ = restored_step1()
    perturb(student)
    data = batch(5, range(3, 5), seed=7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = run_losses(method, student, teacher, data)
    assert set(terms) == {"mbce", "kd", "dkd_pos", "dkd_neg", "ac"}
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
