import math

import pytest
import torch

from geociss.losses.dada import (
    ConfidenceHistogram,
    channel_softmax_kd,
    confidence_pseudo_labels,
    dense_distillation,
)


def loop_kd(student, teacher, alpha=2.0):
    """IDEC's channel-softmax KD pixel by pixel and channel by channel, in float64."""
    b_, c_, h, w = student.shape
    total = 0.0
    for b in range(b_):
        for y in range(h):
            for x in range(w):
                s = [float(v) for v in student[b, :, y, x]]
                t = [alpha * float(v) for v in teacher[b, :, y, x]]
                log_z = math.log(sum(math.exp(v) for v in s))
                q = [math.exp(v) / sum(math.exp(u) for u in t) for v in t]
                total += -sum(q[c] * (s[c] - log_z) for c in range(c_)) / c_
    return total / (b_ * h * w)


def maps(seed, shape=(2, 4, 3, 3), scale=2.0):
    g = torch.Generator().manual_seed(seed)
    student = scale * torch.randn(*shape, generator=g)
    return student, student + torch.randn(*shape, generator=g)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_channel_kd_matches_loops(seed, alpha):
    student, teacher = maps(seed)
    got = channel_softmax_kd(student, teacher, alpha)
    assert float(got) == pytest.approx(loop_kd(student, teacher, alpha), rel=1e-5)


def test_channel_kd_hand_case():
    # one pixel, two channels: teacher (0, 0) -> q = (1/2, 1/2);
    # student (0, log 3) -> p = (1/4, 3/4)
    student = torch.tensor([0.0, math.log(3)]).view(1, 2, 1, 1)
    teacher = torch.zeros(1, 2, 1, 1)
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75)) / 2
    assert float(channel_softmax_kd(student, teacher)) == pytest.approx(expected, rel=1e-6)


def test_alpha_sharpens_only_the_teacher():
    student, teacher = maps(4)
    torch.testing.assert_close(
        channel_softmax_kd(student, teacher, alpha=2.0),
        channel_softmax_kd(student, 2 * teacher, alpha=1.0),
    )
    assert not torch.allclose(
        channel_softmax_kd(student, teacher, 2.0), channel_softmax_kd(2 * student, teacher, 1.0)
    )


def test_dense_distillation_is_weighted_sum_with_idec_defaults():
    levels = [maps(s, (2, 3 + s, 4 // (1 + s % 2), 4)) for s in range(4)]
    students, teachers = zip(*levels, strict=True)
    got = dense_distillation(students, teachers)
    expected = sum(
        w * loop_kd(s, t) for w, s, t in zip([0.5, 1, 2, 1], students, teachers, strict=True)
    )
    assert float(got) == pytest.approx(expected, rel=1e-5)
    only_third = dense_distillation(students, teachers, [0, 0, 1, 0])
    assert float(only_third) == pytest.approx(loop_kd(students[2], teachers[2]), rel=1e-5)


def test_gradient_reaches_student_not_teacher():
    student, teacher = maps(5)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    dense_distillation([student], [teacher], [1.0]).backward()
    assert student.grad is not None and float(student.grad.abs().sum()) > 0
    assert teacher.grad is None


def test_minimum_is_at_the_sharpened_teacher():
    _, teacher = maps(6)
    student = (2 * teacher).requires_grad_(True)
    channel_softmax_kd(student, teacher, 2.0).backward()
    assert float(student.grad.abs().max()) < 1e-6


@pytest.mark.parametrize(("dtype", "scale"), [(torch.float16, 6e4), (torch.bfloat16, 1e30)])
def test_half_precision_large_magnitudes_stay_finite(dtype, scale):
    g = torch.Generator().manual_seed(7)
    student = (torch.randn(2, 8, 4, 4, generator=g).clamp(-1, 1) * scale).to(dtype)
    teacher = (torch.randn(2, 8, 4, 4, generator=g).clamp(-1, 1) * scale).to(dtype)
    student.requires_grad_(True)
    loss = dense_distillation([student, student], [teacher, teacher], [1.0, 2.0])
    loss.backward()
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert torch.isfinite(student.grad).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(channel_softmax_kd(student, teacher))


def test_shape_errors():
    a, b = maps(0)
    with pytest.raises(ValueError, match="equal"):
        channel_softmax_kd(a, b[:, :3])
    with pytest.raises(ValueError, match="one weight per level"):
        dense_distillation([a], [b], [1.0, 2.0])


# ---------------------------------------------------------------- pseudo-labels


def logits_for(cls, confidence, channels=3):
    """Logits whose softmax gives ``confidence`` to ``cls`` and shares the rest evenly."""
    rest = (1 - confidence) / (channels - 1)
    return [math.log(confidence if c == cls else rest) for c in range(channels)]


def batch_of(pixels):
    """(1, 3, 1, N) teacher logits and (1, 1, N) labels from ``[(label, cls, confidence)]``."""
    logits = torch.tensor([logits_for(c, p) for _, c, p in pixels]).T[None, :, None, :]
    labels = torch.tensor([lab for lab, _, _ in pixels])[None, None, :]
    return logits.float(), labels


def test_thresholds_are_per_class_quantiles_on_a_hand_made_case():
    pixels = (
        [(0, 1, p) for p in (0.55, 0.65, 0.85, 0.95)]  # class 1: median bin 0.6
        + [(0, 2, p) for p in (0.45, 0.95, 0.95)]  # class 2: median bin 0.9
        + [(0, 0, p) for p in (0.35, 0.36, 0.42)]  # background: median 0.3 -> floor 0.5
        + [(3, 1, 0.15 + 0.7), (255, 2, 0.55)]  # a new-class and an ignored pixel: not counted
    )
    hist = ConfidenceHistogram(3, bins=10)
    hist.update(*batch_of(pixels))
    assert hist.counts.sum() == 10
    torch.testing.assert_close(hist.thresholds(0.5, 0.5), torch.tensor([0.5, 0.6, 0.9]))
    torch.testing.assert_close(hist.thresholds(0.5, 0.0), torch.tensor([0.3, 0.6, 0.9]))
    torch.testing.assert_close(hist.thresholds(1.0, 0.0), torch.tensor([0.4, 0.9, 0.9]))
    torch.testing.assert_close(hist.thresholds(0.0, 0.0), torch.tensor([0.0, 0.0, 0.0]))


def test_never_predicted_class_gets_the_floor():
    hist = ConfidenceHistogram(3, bins=10)
    hist.update(*batch_of([(0, 1, 0.95)]))
    torch.testing.assert_close(hist.thresholds(0.5, 0.7), torch.tensor([0.7, 0.9, 0.7]))


def test_pseudo_labels_follow_the_per_class_thresholds():
    pixels = [
        (0, 1, 0.65),  # class 1, threshold 0.6 -> pseudo 1
        (0, 2, 0.65),  # class 2, threshold 0.9 -> unresolved, keeps 0
        (0, 2, 0.95),  # -> pseudo 2
        (0, 0, 0.99),  # background, confident -> pseudo 0 (resolved)
        (4, 1, 0.99),  # new class: untouched
        (255, 1, 0.99),  # ignored: untouched
    ]
    logits, labels = batch_of(pixels)
    before = labels.clone()
    pseudo = confidence_pseudo_labels(labels, logits, torch.tensor([0.5, 0.6, 0.9]))
    assert pseudo.target.tolist() == [[[1, 0, 2, 0, 4, 255]]]
    assert pseudo.confident.tolist() == [[[True, False, True, True, False, False]]]
    assert pseudo.unresolved.tolist() == [[[False, True, False, False, False, False]]]
    assert torch.equal(labels, before)


def test_pseudo_label_errors():
    logits, labels = batch_of([(0, 1, 0.9)])
    with pytest.raises(ValueError, match="thresholds"):
        confidence_pseudo_labels(labels, logits, torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="do not match"):
        confidence_pseudo_labels(labels[:, :, :0], logits, torch.tensor([0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match="quantile"):
        ConfidenceHistogram(3).thresholds(1.5)
