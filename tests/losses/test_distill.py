import math

import pytest
import torch

from geociss.losses.distill import (
    KnowledgeDistillation,
    feature_distillation,
    knowledge_distillation,
    output_distillation,
)
from geociss.losses.unbiased import unbiased_kd


def probs(values):
    e = [math.exp(v) for v in values]
    return [v / sum(e) for v in e]


def hand_pixels(logits, old_logits, truncate, alpha=1.0):
    """Per-pixel −Σ_{c<C_old} q̄_c log p_c by explicit loops; p over C_old or all channels."""
    b, _, h, w = logits.shape
    c_old = old_logits.shape[1]
    out = torch.zeros(b, h, w, dtype=torch.float64)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                z = logits[i, :, y, x].tolist()
                p = probs(z[:c_old] if truncate else z)
                q = probs([alpha * v for v in old_logits[i, :, y, x].tolist()])
                out[i, y, x] = -sum(q[k] * math.log(p[k]) for k in range(c_old))
    return out


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 3, 2, generator=g, dtype=torch.float64) * 2
    old = torch.randn(2, 3, 3, 2, generator=g, dtype=torch.float64) * 2
    return logits, old


def test_kd_truncates_and_averages_over_old_classes_and_all_pixels(pair):
    logits, old = pair
    for alpha in (1.0, 2.0):
        ref = hand_pixels(logits, old, truncate=True, alpha=alpha) / 3
        assert knowledge_distillation(logits, old, alpha).item() == pytest.approx(
            ref.mean().item(), rel=1e-10
        )
    # new channels play no role: changing them leaves the loss unchanged
    moved = logits.clone()
    moved[:, 3:] += 50
    assert torch.allclose(knowledge_distillation(moved, old), knowledge_distillation(logits, old))
    mask = torch.zeros(2, 3, 2)
    mask[1] = 0.5
    ref = hand_pixels(logits, old, truncate=True) / 3
    got = knowledge_distillation(logits, old, mask=mask)
    assert got.item() == pytest.approx(0.5 * ref[1].sum().item() / 12, rel=1e-10)
    per_pixel = knowledge_distillation(logits, old, reduction="none")
    assert torch.allclose(per_pixel, ref, rtol=1e-10)
    assert torch.equal(
        KnowledgeDistillation(2.0)(logits, old), knowledge_distillation(logits, old, 2.0)
    )


def test_kd_equals_unbiased_kd_without_new_channels(pair):
    logits, old = pair
    same = logits[:, :3]
    assert torch.allclose(knowledge_distillation(same, old), unbiased_kd(same, old))


def test_output_distillation_uses_all_channels_and_selected_pixels(pair):
    logits, old = pair
    ref = hand_pixels(logits, old, truncate=False)
    assert output_distillation(logits, old).item() == pytest.approx(ref.mean().item(), rel=1e-10)
    select = torch.zeros(2, 3, 2, dtype=torch.bool)
    select[0, 1] = True
    select[1, 2, 0] = True
    expected = (ref[0, 1].sum() + ref[1, 2, 0]).item() / 3
    assert output_distillation(logits, old, select).item() == pytest.approx(expected, rel=1e-10)
    empty = output_distillation(logits, old, torch.zeros_like(select))
    assert empty.item() == 0.0 and torch.isfinite(empty)


def test_two_channel_example_by_hand():
    # teacher certain of class 1; student p = (1/4, 3/4) over [bg, 1] then a new channel
    old = torch.tensor([-1e3, 1e3]).view(1, 2, 1, 1)
    student = torch.tensor([0.0, math.log(3), math.log(4)]).view(1, 3, 1, 1)
    assert knowledge_distillation(student, old).item() == pytest.approx(math.log(4 / 3) / 2)
    # over all channels p(1) = 3 / (1 + 3 + 4)
    assert output_distillation(student, old).item() == pytest.approx(math.log(8 / 3))


def test_feature_distillation_is_mean_squared_error():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    assert feature_distillation(a, b).item() == pytest.approx((4 + 9) / 4)
    with pytest.raises(ValueError, match="feature shapes differ"):
        feature_distillation(a, b[:1])


def test_channel_mismatch_and_bad_reduction():
    with pytest.raises(ValueError, match="fewer than the teacher"):
        knowledge_distillation(torch.zeros(1, 2, 1, 1), torch.zeros(1, 3, 1, 1))
    with pytest.raises(ValueError, match="fewer than the teacher"):
        output_distillation(torch.zeros(1, 2, 1, 1), torch.zeros(1, 3, 1, 1))
    with pytest.raises(ValueError, match="unknown reduction"):
        knowledge_distillation(torch.zeros(1, 3, 1, 1), torch.zeros(1, 3, 1, 1), reduction="sum")


def test_gradient_reaches_student_not_teacher():
    student, teacher = torch.nn.Conv2d(3, 5, 1), torch.nn.Conv2d(3, 3, 1)
    x = torch.randn(2, 3, 4, 4)
    for name, loss_fn in {
        "kd": lambda: knowledge_distillation(student(x), teacher(x)),
        "output": lambda: output_distillation(student(x), teacher(x), torch.rand(2, 4, 4) > 0.3),
        "feature": lambda: feature_distillation(student(x)[:, :3], teacher(x)),
    }.items():
        student.zero_grad()
        loss_fn().backward()
        assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0, name
        assert teacher.weight.grad is None, name


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_large_half_precision_inputs_are_stable(dtype):
    g = torch.Generator().manual_seed(3)
    z32 = torch.randn(2, 5, 4, 4, generator=g) * 1e4
    old32 = torch.randn(2, 3, 4, 4, generator=g) * 1e4
    z, old = z32.to(dtype), old32.to(dtype)
    rel = 2e-3 if dtype == torch.float16 else 2e-2
    cases = {
        "kd": knowledge_distillation,
        "output": output_distillation,
        "feature": lambda a, b: feature_distillation(a[:, :3], b),  # squares reach 1e8 > fp16 max
    }
    for name, fn in cases.items():
        half = fn(z, old)
        assert half.dtype == torch.float32 and torch.isfinite(half), name
        assert torch.allclose(half, fn(z.float(), old.float())), name
        assert half.item() == pytest.approx(fn(z32, old32).item(), rel=rel), name
        assert half.item() > 100, name
    with torch.autocast("cpu", dtype=torch.bfloat16):
        conv = torch.nn.Conv2d(3, 5, 1)
        y = conv(torch.randn(1, 3, 4, 4) * 1e4)
        values = [fn(y, y[:, :3]) for fn in (knowledge_distillation, output_distillation)]
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in values)
