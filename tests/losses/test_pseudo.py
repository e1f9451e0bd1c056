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


def hist10(*counts):
    """A 10-bin histogram (bin width 0.1) of one class."""
    return torch.tensor(counts, dtype=torch.int64)


# PLOP's running sum before bin b is the sum of the indices 0..b-1: 0, 0, 1, 3, 6, 10, ..., 36
# before the last of 10 bins, and 45 after a scan that stops nowhere.


def test_repository_interpolates_inside_the_stopping_bin():
    # total 10, half 5: running 0, 0, 1, 3; stops at bin 3 (3 <= 5 <= 3 + 2)
    # -> 0.3 + (5 - 3) / 2 * 0.1 = 0.4 (not the bin's lower border 0.3)
    assert histogram_median(hist10(2, 2, 2, 2, 2, 0, 0, 0, 0, 0)) == pytest.approx(0.4)
    # half 5 <= 6 at bin 0 -> 0 + 5 / 6 * 0.1
    assert histogram_median(hist10(6, 2, 2, 0, 0, 0, 0, 0, 0, 0)) == pytest.approx(0.5 / 6)
    # half 50: running 36 before bin 9 holding all 100 -> 0.9 + (50 - 36) / 100 * 0.1
    assert histogram_median(hist10(0, 0, 0, 0, 0, 0, 0, 0, 0, 100)) == pytest.approx(0.914)


def test_repository_without_a_stopping_bin_uses_the_last_bin():
    # total 9, half 4.5: running 0, 0, 1, 3 (bins 0-3 hold 1 each), then 6 > 4.5: no bin
    # qualifies; after the scan running = 45 and the last bin is empty:
    # 0.9 + (4.5 - 45) / 0 * 0.1 = -inf -> floor
    assert histogram_median(hist10(1, 1, 1, 1, 1, 1, 1, 1, 1, 0)) == -math.inf
    # same with one pixel in the last bin: 0.9 + (5 - 45) / 1 * 0.1 = -3.1 -> floor
    assert histogram_median(hist10(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)) == pytest.approx(-3.1)
    # many pixels (half 150 > 45 + 30): no bin qualifies either, but the value is above 1
    # (0.9 + (150 - 45) / 30 * 0.1 = 1.25), or +inf with an empty last bin: every pixel passes
    assert histogram_median(hist10(*[30] * 10)) == pytest.approx(1.25)
    assert histogram_median(hist10(*[30] * 9, 0)) == math.inf


def test_repository_stopping_at_an_empty_bin_gives_nan():
    # total 2, half 1: running 0, 0, then 1 at bin 2, which is empty: 1 <= 1 <= 1 + 0 stops
    # there, and (1 - 1) / 0 = NaN
    assert math.isnan(histogram_median(hist10(0, 0, 0, 2, 0, 0, 0, 0, 0, 0)))


def test_repository_keeps_the_float_step_of_100_bins():
    # PLOP reads bin int(0.29 * 100) = 28 at step 29, so bin 29 is never read. Bin 28: 30,
    # bin 29: 1000; half 515. Running 378 before bin 28 (378 <= 515 > 408), 406 at step 29
    # (bin 28 again: 515 > 436), then 435, 465, 496 at the empty bins 30-32 and 528 > 515: no
    # bin qualifies, the last bin is empty -> -inf. Reading bin 29 would stop there (0.29109).
    counts = torch.zeros(100, dtype=torch.int64)
    counts[28], counts[29] = 30, 1000
    assert histogram_median(counts) == -math.inf


def test_geociss_variants_read_lower_borders():
    spread = hist10(2, 2, 2, 2, 2, 0, 0, 0, 0, 0)  # total 10, half 5
    # true: counts before bin 2 are 4 <= 5 <= 6 -> bin 2
    assert histogram_median(spread, "true") == pytest.approx(0.2)
    # geociss-legacy: PLOP's stopping bin 3, its lower border
    assert histogram_median(spread, "geociss-legacy") == pytest.approx(0.3)
    flat = torch.ones(10, dtype=torch.int64)  # half 5; index sums 0,0,1,3,6 overshoot at bin 4
    assert histogram_median(flat, "true") == pytest.approx(0.4)
    assert histogram_median(flat, "geociss-legacy") == pytest.approx(0.9)  # no bin: last border
    peaked = hist10(6, 2, 2, 0, 0, 0, 0, 0, 0, 0)
    assert histogram_median(peaked, "true") == histogram_median(peaked, "geociss-legacy") == 0.0
    for median in ("repository", "true", "geociss-legacy"):
        assert histogram_median(torch.zeros(10), median) == 0.0
    with pytest.raises(ValueError, match="median"):
        histogram_median(flat, "mean")


def test_thresholds_floor_minus_inf_keep_nan_and_plus_inf():
    hist = EntropyHistogram(old_channels=5, num_channels=6, bins=10)
    hist.counts[0] = hist10(2, 2, 2, 2, 2, 0, 0, 0, 0, 0)  # 0.4
    hist.counts[1] = hist10(1, 1, 1, 1, 1, 1, 1, 1, 1, 0)  # -inf -> floor
    hist.counts[2] = hist10(0, 0, 0, 2, 0, 0, 0, 0, 0, 0)  # NaN stays NaN
    hist.counts[3] = hist10(*[30] * 9, 0)  # +inf
    # class 4 never predicted on background -> floor
    got = hist.thresholds()
    assert got[[0, 1, 3, 4]].tolist() == pytest.approx([0.4, 0.001, math.inf, 0.001])
    assert math.isnan(float(got[2]))
    assert hist.thresholds(floor=0.5)[[0, 1, 3, 4]].tolist() == pytest.approx(
        [0.5, 0.5, math.inf, 0.5]
    )


def test_thresholds_of_the_geociss_variants_with_floor():
    hist = EntropyHistogram(old_channels=3, num_channels=5, bins=10)
    hist.counts[0] = hist10(2, 2, 2, 2, 2, 0, 0, 0, 0, 0)
    hist.counts[1] = hist10(6, 2, 2, 0, 0, 0, 0, 0, 0, 0)  # median in bin 0 -> floor
    # class 2 never predicted on background -> floor
    assert hist.thresholds("true").tolist() == pytest.approx([0.2, 0.001, 0.001])
    assert hist.thresholds("geociss-legacy").tolist() == pytest.approx([0.3, 0.001, 0.001])
    assert hist.thresholds("true", floor=0.25).tolist() == pytest.approx([0.25, 0.25, 0.25])


def test_what_each_kind_of_threshold_lets_through():
    # entropy below the threshold -> pseudo-label; +inf: everything, floor: near one-hot
    # teacher outputs only, NaN: nothing
    old = pixels(
        [0.0, 0.0, 0.0, 0.0],  # bg predicted (tie -> 0), uncertain, threshold +inf -> 0
        [0.0, 30.0, 0.0, 0.0],  # c1, near one-hot, threshold NaN           -> ignored
        [0.0, 0.0, 30.0, 0.0],  # c2, near one-hot, threshold 0.001 (floor) -> 2
        [0.0, 0.0, 3.0, 0.0],  # c2, entropy above 0.001                    -> ignored
    )
    thresholds = torch.tensor([math.inf, math.nan, 0.001, 0.001])
    result = entropy_pseudo_labels(torch.zeros(1, 1, 4, dtype=torch.int64), old, thresholds, 6)
    assert result.target.tolist() == [[[0, 255, 2, 255]]]
    assert float(normalised_entropy(old, 6)[0, 0, 3]) > 0.001


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
