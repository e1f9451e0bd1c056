"""Conformance suite every method must pass.

Subclass :class:`MethodConformance` in ``tests/methods/test_<name>.py``, set ``method_name`` (and
``params`` if needed): step 0 runs without a teacher, the head grows, the losses are finite and
named, every loss term sends gradient to a trainable parameter, and the teacher stays frozen.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch

from geociss.methods import get_method
from geociss.methods.base import IncrementalMethod, StepContext
from geociss.models.config import ModelConfig
from geociss.models.segmenter import SegmentationModel

BASE = (3, 2)  # step 0: background + 2 classes; step 1: 2 new classes


def tiny_model(classes_per_step=(3,), seed: int = 0, **config: Any) -> SegmentationModel:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        encoder="tiny", weights="none", aspp_channels=32, norm="group", norm_groups=8, **config
    )
    return SegmentationModel(cfg, list(classes_per_step))


def batch(channels: int, step_channels: range, seed: int = 0, size: int = 32, b: int = 2) -> dict:
    """A batch whose labels use background (0), the step's new channels and ignore (255)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(b, 3, size, size, generator=g)
    choices = torch.tensor([0, *step_channels, 255])
    mask = choices[torch.randint(0, len(choices), (b, size, size), generator=g)]
    return {"image": image, "mask": mask}


def make_method(name: str, params: dict, step: int, classes=BASE) -> IncrementalMethod:
    return get_method(name).from_config(params, StepContext(step, tuple(classes[: step + 1])))


def prepare_step1(
    name: str, params: dict, classes=BASE
) -> tuple[IncrementalMethod, SegmentationModel, SegmentationModel]:
    """Teacher = a trained-looking step-0 model; student = its copy grown by the new head."""
    teacher = tiny_model(classes[:1])
    student = copy.deepcopy(teacher)
    student.add_step(classes[1])
    method = make_method(name, params, 1, classes)
    teacher.eval().requires_grad_(False)
    method.init_new_classifier(student, teacher)
    method.configure_model(student)
    if method.needs_prepass:
        ctx = method.context
        method.prepass(
            teacher, [batch(ctx.num_channels, ctx.new_channels, seed=s) for s in range(2)]
        )
    method.train_mode(student)
    return method, student, teacher


def run_losses(method, student, teacher, data) -> dict[str, torch.Tensor]:
    out = student(data["image"], features=method.student_features())
    old = None
    if teacher is not None and method.uses_teacher():
        with torch.no_grad():
            old = teacher(data["image"], features=method.teacher_features())
    return method.losses(data, out, old)


class MethodConformance:
    method_name: ClassVar[str]
    params: ClassVar[dict] = {}

    def test_registered_and_params_validated(self):
        cls = get_method(self.method_name)
        assert issubclass(cls, IncrementalMethod)
        import pytest

        from geociss.errors import ConfigError

        with pytest.raises(ConfigError, match="not_a_param"):
            cls.from_config({**self.params, "not_a_param": 1}, StepContext(0, BASE[:1]))

    def test_step0_runs_without_teacher(self):
        method = make_method(self.method_name, self.params, 0)
        model = tiny_model(BASE[:1])
        method.init_new_classifier(model, None)
        method.configure_model(model)
        method.train_mode(model)
        terms = run_losses(method, model, None, batch(3, range(1, 3)))
        assert terms and all(torch.isfinite(v) and v.ndim == 0 for v in terms.values())
        sum(terms.values()).backward()

    def test_head_grows_and_losses_finite(self):
        method, student, teacher = prepare_step1(self.method_name, self.params)
        assert student.num_classes == sum(BASE) and teacher.num_classes == BASE[0]
        data = batch(5, range(3, 5))
        out = student(data["image"])
        assert out.logits.shape[1] == 5
        terms = run_losses(method, student, teacher, data)
        assert terms and all(isinstance(k, str) for k in terms)
        assert all(torch.isfinite(v) and v.ndim == 0 for v in terms.values()), terms
        assert method.predict(out.logits).shape == data["mask"].shape
        probs = method.probabilities(out.logits)
        assert probs.shape == out.logits.shape and (probs >= 0).all() and (probs <= 1).all()

    def test_every_term_sends_gradient_and_teacher_stays_frozen(self):
        method, student, teacher = prepare_step1(self.method_name, self.params)
        data = batch(5, range(3, 5), seed=3)
        names = list(run_losses(method, student, teacher, data))
        for name in names:
            student.zero_grad(set_to_none=True)
            method.zero_grad(set_to_none=True)
            terms = run_losses(method, student, teacher, data)
            terms[name].backward()
            params = [p for p in (*student.parameters(), *method.parameters()) if p.requires_grad]
            moved = sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)
            assert moved > 0, f"loss term {name!r} sends no gradient to any trainable parameter"
        assert all(p.grad is None for p in teacher.parameters())
        assert not teacher.training
        assert all(not p.requires_grad for p in teacher.parameters())
