import math

import pytest
import torch

from geociss.losses.ce import cross_entropy
from geociss.losses.pseudo import (
    EntropyHistogram,
    entropy_pseudo_labels,
    histogram_median,
    normalised_entropy,
    plop_entropy,
)


def loop_entropy(logit_vector):
    """PLOP's entropy of one pixel, straight from the formula."""
    exps = [math.exp(v) for v in logit_vector]
    probs = [e / sum(exps) for e in exps]
    c = len(probs)
    return -sum(p * math.log(p + 1e-8) for p in probs) / c / math.log(c)


def pixels(*logit_vectors):
    """(1, C, 1, N) logits from per-pixel vectors."""
    return torch.tensor(logit_vectors, dtype=torch.float32).T.reshape(1, -1, 1, len(logit_vectors))


def test_entropy_matches_formula_and_is_a_mean_over_classes():
    vectors = [[0.0, 0.0, 0.0], [1.0, -2.0, 0.5], [20.0, 0.0, 0.0]]
    got = plop_entropy(pixels(*vectors)).flatten().tolist()
    assert got == pytest.approx([loop_entropy(v) for v in vectors], rel=1e-5, abs=1e-8)
    assert got[0] == pytest.approx(1 / 3, rel=1e-5)  # uniform: 1/C, not 1
    norm = normalised_entropy(pixels(*vectors), 5).flatten().tolist()
    assert norm == pytest.approx([v / math.log(5) for v in got], rel=1e-6)


def test_hand_made_pseudo_labels_and_adaptive_factor():
    # old model: bg, c1, c2; current model: + new classes 3, 4
    old = pixels(
        [0.0, 20.0, 0.0],  # A: bg label, confident c1      -> 1
        [0.0, 0.0, 0.0],  # B: bg label, uncertain          -> ignored
        [20.0, 0.0, 0.0],  # C: bg label, confident bg      -> 0
        [0.0, 0.0, 20.0],  # D: new-class label             -> keeps 3
        [0.0, 20.0, 0.0],  # E: ignored label               -> stays 255
        [0.0, 0.0, 20.0],  # F: bg label, c2 has threshold 0 -> ignored
    )
    target = torch.tensor([[[0, 0, 0, 3, 255, 0]]])
    before = target.clone()
    thresholds = torch.tensor([0.1, 0.1, 0.0])
    result = entropy_pseudo_labels(target, old, thresholds, num_channels=5)
    assert result.target.tolist() == [[[1, 255, 0, 3, 255, 255]]]
    assert result.confident.tolist() == [[[True, False, True, False, False, False]]]
    assert float(result.factor[0]) == pytest.approx(2 / (4 + 1e-6))
    assert torch.equal(target, before)  # input not modified


def test_image_without_background_gets_factor_zero():
    old = pixels([0.0, 5.0, 0.0], [0.0, 5.0, 0.0])
    result = entropy_pseudo_labels(torch.tensor([[[3, 4]]]), old, torch.full((3,), 0.5), 5)
    assert result.target.tolist() == [[[3, 4]]] and float(result.factor[0]) == 0.0


def test_histogram_median_true_and_repository_on_hand_made_histograms():
    spread = torch.tensor([2, 2, 2, 2, 2, 0, 0, 0, 0, 0])  # total 10, half 5
    # true: counts before bin 2 are 4 <= 5 <= 6 -> bin 2
    assert histogram_median(spread, "true") == pytest.approx(0.2)
    # repository: running sum of indices 0, 0, 1, 3 -> bin 3 where 3 <= 5 <= 3 + 2
    assert histogram_median(spread, "repository") == pytest.approx(0.3)
    flat = torch.ones(10, dtype=torch.int64)  # half 5; index sums 0,0,1,3,6 overshoot at bin 4
    assert histogram_median(flat, "true") == pytest.approx(0.4)
    assert histogram_median(flat, "repository") == pytest.approx(0.9)  # no bin: last border
    peaked = torch.tensor([6, 2, 2, 0, 0, 0, 0, 0, 0, 0])
    assert histogram_median(peaked, "true") == histogram_median(peaked, "repository") == 0.0
    assert histogram_median(torch.zeros(10), "true") == 0.0
    with pytest.raises(ValueError, match="median"):
        histogram_median(flat, "mean")


def test_thresholds_from_hand_made_histogram_with_floor():
    hist = EntropyHistogram(old_channels=3, num_channels=5, bins=10)
    hist.counts[0] = torch.tensor([2, 2, 2, 2, 2, 0, 0, 0, 0, 0])
    hist.counts[1] = torch.tensor([6, 2, 2, 0, 0, 0, 0, 0, 0, 0])  # median in bin 0 -> floor
    # class 2 never predicted on background -> floor
    assert hist.thresholds("true").tolist() == pytest.approx([0.2, 0.001, 0.001])
    assert hist.thresholds("repository").tolist() == pytest.approx([0.3, 0.001, 0.001])
    assert hist.thresholds("true", floor=0.25).tolist() == pytest.approx([0.25, 0.25, 0.25])


def test_histogram_update_counts_background_pixels_per_predicted_class():
    vectors = [[0.0, 20.0, 0.0], [0.0, 0.0, 0.0], [20.0, 0.0, 0.0], [0.0, 0.3, 0.0], [0, 9, 0]]
    target = torch.tensor([[[0, 0, 0, 0, 3]]])  # the last pixel is a new class: not counted
    hist = EntropyHistogram(old_channels=3, num_channels=5, bins=10)
    hist.update(pixels(*vectors), target)
    hist.update(pixels(*vectors), target)
    expected = torch.zeros(3, 10, dtype=torch.int64)
    for v in vectors[:4]:
        cls = max(range(3), key=lambda c: v[c])
        b = min(int(loop_entropy(v) / math.log(5) * 10), 9)
        expected[cls, b] += 2
    assert torch.equal(hist.counts, expected)
    with pytest.raises(ValueError, match="teacher logits"):
        hist.update(torch.zeros(1, 4, 1, 5), target)


def test_pseudo_label_loss_sends_gradient_to_student_only():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(2, 5, 4, 4, generator=g, requires_grad=True)
    teacher = torch.randn(2, 3, 4, 4, generator=g, requires_grad=True)
    target = torch.randint(0, 2, (2, 4, 4), generator=g) * 3
    pseudo = entropy_pseudo_labels(target, teacher, torch.full((3,), 0.15), 5)
    weight = pseudo.factor[:, None, None].expand(target.shape)
    cross_entropy(student, pseudo.target, "all", weight=weight).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None and not pseudo.factor.requires_grad


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_large_logits(dtype):
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(2, 3, 8, 8, generator=g) * 3e4).clamp(-6e4, 6e4).to(dtype)
    half = normalised_entropy(logits, 5)
    full = normalised_entropy(logits.float(), 5)
    assert torch.isfinite(half).all() and half.dtype == torch.float32
    torch.testing.assert_close(half, full)
    target = torch.zeros(2, 8, 8, dtype=torch.int64)
    a = entropy_pseudo_labels(target, logits, torch.full((3,), 0.01), 5)
    b = entropy_pseudo_labels(target, logits.float(), torch.full((3,), 0.01), 5)
    assert torch.equal(a.target, b.target) and torch.isfinite(a.factor).all()
