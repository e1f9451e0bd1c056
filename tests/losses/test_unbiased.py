import math

import pytest
import torch

from geociss.losses.ce import cross_entropy
from geociss.losses.unbiased import (
    UnbiasedCrossEntropy,
    UnbiasedKD,
    unbiased_cross_entropy,
    unbiased_kd,
    unbiased_log_probs,
)


def probs(values):
    """Softmax of a list of floats, by hand."""
    e = [math.exp(v) for v in values]
    return [v / sum(e) for v in e]


def hand_unce(logits, target, old):
    """Per-pixel −log q̃_y with explicit loops (0 for ignored pixels)."""
    b, _, h, w = logits.shape
    out = torch.zeros(b, h, w, dtype=torch.float64)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                label = int(target[i, y, x])
                if label == 255:
                    continue
                p = probs(logits[i, :, y, x].tolist())
                q = sum(p[:old]) if label < old else p[label]
                out[i, y, x] = -math.log(q)
    return out


def hand_unkd(logits, old_logits, alpha=1.0):
    """Per-pixel unbiased KD with explicit loops."""
    b, c, h, w = logits.shape
    c_old = old_logits.shape[1]
    out = torch.zeros(b, h, w, dtype=torch.float64)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                p = probs(logits[i, :, y, x].tolist())
                q = probs([alpha * v for v in old_logits[i, :, y, x].tolist()])
                p_bg = p[0] + sum(p[c_old:c])
                total = q[0] * math.log(p_bg) + sum(q[k] * math.log(p[k]) for k in range(1, c_old))
                out[i, y, x] = -total / c_old
    return out


def test_unce_matches_hand_computation_both_reductions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 3, 4, generator=g, dtype=torch.float64) * 3
    target = torch.tensor([0, 1, 2, 3, 4, 255])[torch.randint(0, 6, (2, 3, 4), generator=g)]
    target[0, 0, :3] = torch.tensor([1, 4, 255])  # an old label, a new one, an ignored one
    per_pixel = hand_unce(logits, target, old=3)
    valid = (target != 255).sum()
    all_mean = unbiased_cross_entropy(logits, target, 3, "all")
    assert all_mean.item() == pytest.approx(per_pixel.sum().item() / target.numel(), rel=1e-10)
    valid_mean = unbiased_cross_entropy(logits, target, 3, "valid")
    assert valid_mean.item() == pytest.approx(per_pixel.sum().item() / valid.item(), rel=1e-10)


def test_unce_two_pixel_example_by_hand():
    # 3 channels: bg, old class 1, new class 2. Logits (0, ln 2, ln 3): p = (1/6, 2/6, 3/6).
    logits = torch.tensor([0.0, math.log(2), math.log(3)]).view(1, 3, 1, 1).repeat(1, 1, 1, 3)
    target = torch.tensor([[[1, 2, 255]]])  # old label → bg: q̃_0 = 1/6 + 2/6 = 1/2
    expected = (math.log(2) + math.log(2)) / 3
    assert unbiased_cross_entropy(logits, target, 2).item() == pytest.approx(expected, rel=1e-6)


def test_unce_does_not_modify_inputs_and_reduces_to_ce_with_one_old_channel():
    logits = torch.randn(2, 4, 5, 5)
    target = torch.randint(0, 4, (2, 5, 5))
    target[0, 0, 0] = 255
    before_t, before_l = target.clone(), logits.clone()
    unbiased_cross_entropy(logits, target, 3)
    assert torch.equal(target, before_t) and torch.equal(logits, before_l)
    # with only the background as old channel, the unbiased CE is the ordinary CE
    ref = cross_entropy(logits, target, "valid")
    assert torch.allclose(unbiased_cross_entropy(logits, target, 1, "valid"), ref, atol=1e-6)


def test_unce_module_and_bad_old_channels():
    logits, target = torch.randn(1, 4, 2, 2), torch.randint(0, 4, (1, 2, 2))
    mod = UnbiasedCrossEntropy(2, "valid")
    assert torch.equal(mod(logits, target), unbiased_cross_entropy(logits, target, 2, "valid"))
    with pytest.raises(ValueError, match="old_channels"):
        unbiased_cross_entropy(logits, target, 0)
    with pytest.raises(ValueError, match="unknown reduction"):
        unbiased_cross_entropy(logits, target, 2, "sum")


def test_log_probs_are_a_distribution():
    lp = unbiased_log_probs(torch.randn(2, 6, 3, 3) * 5, 4)
    assert lp.shape == (2, 3, 3, 3)
    assert torch.allclose(lp.exp().sum(1), torch.ones(2, 3, 3), atol=1e-5)


def test_unkd_matches_hand_computation_with_alpha_and_mask():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 2, 3, generator=g, dtype=torch.float64) * 2
    old_logits = torch.randn(2, 3, 2, 3, generator=g, dtype=torch.float64) * 2
    for alpha in (1.0, 0.5):
        ref = hand_unkd(logits, old_logits, alpha)
        assert unbiased_kd(logits, old_logits, alpha).item() == pytest.approx(
            ref.mean().item(), rel=1e-10
        )
        per_pixel = unbiased_kd(logits, old_logits, alpha, reduction="none")
        assert torch.allclose(per_pixel, ref, rtol=1e-10)
    mask = torch.zeros(2, 2, 3, dtype=torch.bool)
    mask[0, 0] = True  # 3 of 12 pixels kept, the mean still divides by 12
    masked = unbiased_kd(logits, old_logits, mask=mask)
    assert masked.item() == pytest.approx(hand_unkd(logits, old_logits)[0, 0].sum().item() / 12)
    assert torch.equal(UnbiasedKD(0.5)(logits, old_logits), unbiased_kd(logits, old_logits, 0.5))


def test_unkd_equals_teacher_entropy_when_merged_distributions_match():
    # student bg + new mass = teacher bg, old classes equal: the loss is the teacher entropy/C_old
    old = torch.tensor([1.0, 0.0, -1.0]).view(1, 3, 1, 1)
    bg = math.log(math.exp(1.0) / 3)  # split e^1 over bg and two new channels
    student = torch.tensor([bg, 0.0, -1.0, bg, bg]).view(1, 5, 1, 1)
    q = probs([1.0, 0.0, -1.0])
    entropy = -sum(v * math.log(v) for v in q)
    assert unbiased_kd(student, old).item() == pytest.approx(entropy / 3, rel=1e-6)


def test_gradient_reaches_student_not_teacher():
    student, teacher = torch.nn.Conv2d(3, 5, 1), torch.nn.Conv2d(3, 3, 1)
    x = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 5, (2, 4, 4))
    for loss in (
        unbiased_cross_entropy(student(x), target, 3),
        unbiased_kd(student(x), teacher(x)),  # teacher NOT under no_grad: the loss must detach
    ):
        student.zero_grad()
        loss.backward()
        assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0
        assert teacher.weight.grad is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_large_half_precision_logits_are_stable(dtype):
    g = torch.Generator().manual_seed(2)
    logits32 = torch.randn(2, 5, 4, 4, generator=g) * 1e4
    old32 = torch.randn(2, 3, 4, 4, generator=g) * 1e4
    target = torch.randint(0, 5, (2, 4, 4), generator=g)
    logits, old = logits32.to(dtype), old32.to(dtype)
    rel = 2e-3 if dtype == torch.float16 else 2e-2  # rounding of ±1e4 in the half format
    cases = {
        "unce": lambda z, o: unbiased_cross_entropy(z, target, 3),
        "unkd": lambda z, o: unbiased_kd(z, o),
    }
    for name, fn in cases.items():
        half = fn(logits, old)
        assert half.dtype == torch.float32 and torch.isfinite(half), name
        assert torch.allclose(half, fn(logits.float(), old.float())), name  # same values
        assert half.item() == pytest.approx(fn(logits32, old32).item(), rel=rel), name
        assert half.item() > 100, name  # the loss is large, not a degenerate 0


def test_autocast_gives_float32_losses():
    conv = torch.nn.Conv2d(3, 5, 1)
    target = torch.randint(0, 5, (1, 4, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = conv(torch.randn(1, 3, 4, 4) * 1e4)
        assert z.dtype == torch.bfloat16
        values = unbiased_kd(z, z[:, :3]), unbiased_cross_entropy(z, target, 3)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in values)
