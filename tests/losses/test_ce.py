import math

import pytest
import torch

from geociss.losses.ce import cross_entropy


def test_hand_checked_values_and_reductions():
    # two pixels: uniform logits over 2 classes (loss ln 2) and one ignored pixel
    logits = torch.zeros(1, 2, 1, 3)
    logits[0, :, 0, 1] = torch.tensor([0.0, math.log(3.0)])  # p = (1/4, 3/4), label 1 → ln(4/3)
    target = torch.tensor([[[0, 1, 255]]])
    expected_sum = math.log(2) + math.log(4 / 3)
    assert cross_entropy(logits, target, "valid").item() == pytest.approx(expected_sum / 2)
    assert cross_entropy(logits, target, "all").item() == pytest.approx(expected_sum / 3)
    w = torch.tensor([[[2.0, 0.5, 7.0]]])
    assert cross_entropy(logits, target, "valid", weight=w).item() == pytest.approx(
        (2 * math.log(2) + 0.5 * math.log(4 / 3)) / 2
    )


def test_all_ignored_is_zero_not_nan():
    logits = torch.randn(2, 3, 4, 4)
    target = torch.full((2, 4, 4), 255)
    assert cross_entropy(logits, target).item() == 0.0
    assert cross_entropy(logits, target, "all").item() == 0.0


def test_gradient_and_low_precision_stability():
    conv = torch.nn.Conv2d(3, 4, 1)
    x = torch.randn(2, 3, 5, 5)
    target = torch.randint(0, 4, (2, 5, 5))
    cross_entropy(conv(x), target).backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    big = (torch.randn(2, 4, 5, 5) * 1e4).to(torch.bfloat16)
    assert torch.isfinite(cross_entropy(big, target))
    assert torch.isfinite(cross_entropy(big.to(torch.float16), target))


def test_bad_reduction():
    with pytest.raises(ValueError, match="unknown reduction"):
        cross_entropy(torch.zeros(1, 2, 1, 1), torch.zeros(1, 1, 1, dtype=torch.long), "sum")
