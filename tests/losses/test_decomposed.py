import math

import pytest
import torch

from geociss.losses.decomposed import (
    auxiliary_loss,
    decompose,
    decomposed_kd,
    multilabel_bce,
    sigmoid_kd,
)


def sig(z):
    return 1.0 / (1.0 + math.exp(-z))


def bce(z, t, pos_weight=1.0):
    """−[p·t·log σ(z) + (1 − t)·log(1 − σ(z))] by hand (moderate z only)."""
    s = sig(z)
    return -(pos_weight * t * math.log(s) + (1 - t) * math.log(1 - s))


def hand_mbce(logits, target, channels, pos_weight, ignore, reduction):
    b, _, h, w = logits.shape
    total, valid = 0.0, 0
    for i in range(b):
        for y in range(h):
            for x in range(w):
                label = int(target[i, y, x])
                if ignore == "ignore" and label == 255:
                    continue
                valid += 1
                for k in channels:
                    total += bce(float(logits[i, k, y, x]), float(label == k), pos_weight)
    denom = valid if (ignore == "ignore" and reduction == "valid") else b * h * w
    return total / denom


def hand_soft(student, teacher_logits):
    """Σ_c mean_{b,y,x} BCE(student_c, σ(teacher_c)) with explicit loops."""
    b, k, h, w = student.shape
    total = 0.0
    for c in range(k):
        s = 0.0
        for i in range(b):
            for y in range(h):
                for x in range(w):
                    s += bce(float(student[i, c, y, x]), sig(float(teacher_logits[i, c, y, x])))
        total += s / (b * h * w)
    return total


def hand_parts(features, weight):
    """pos/neg sums per (b, k, y, x) with explicit loops."""
    b, d, h, w = features.shape
    k = weight.shape[0]
    pos = torch.zeros(b, k, h, w, dtype=torch.float64)
    neg = torch.zeros(b, k, h, w, dtype=torch.float64)
    for i in range(b):
        for c in range(k):
            for y in range(h):
                for x in range(w):
                    for j in range(d):
                        v = float(weight[c, j]) * float(features[i, j, y, x])
                        if weight[c, j] > 0:
                            pos[i, c, y, x] += v
                        else:
                            neg[i, c, y, x] += v
    return pos, neg


@pytest.fixture
def maps():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 3, 4, generator=g, dtype=torch.float64) * 3
    target = torch.tensor([0, 1, 2, 3, 4, 255])[torch.randint(0, 6, (2, 3, 4), generator=g)]
    target[0, 0, :3] = torch.tensor([3, 4, 255])
    return logits, target


# ------------------------------------------------------------------ multi-label BCE


@pytest.mark.parametrize(
    ("ignore", "reduction"), [("negative", "valid"), ("ignore", "valid"), ("ignore", "all")]
)
def test_mbce_matches_explicit_loops(maps, ignore, reduction):
    logits, target = maps
    got = multilabel_bce(logits, target, [3, 4], 2.0, ignore, reduction)
    assert got.item() == pytest.approx(hand_mbce(logits, target, [3, 4], 2.0, ignore, reduction))


def test_mbce_one_pixel_by_hand_and_255_is_a_negative_by_default():
    logits = torch.zeros(1, 2, 1, 3)
    target = torch.tensor([[[1, 0, 255]]])
    # channel 1 only: pixel 0 positive (2·log 2), pixels 1 and 2 negative (log 2 each).
    expected = (2 * math.log(2) + math.log(2) + math.log(2)) / 3
    assert multilabel_bce(logits, target, [1]).item() == pytest.approx(expected)
    ignored = multilabel_bce(logits, target, [1], ignore="ignore")
    assert ignored.item() == pytest.approx((2 * math.log(2) + math.log(2)) / 2)


def test_mbce_sums_channels_and_leaves_target_untouched(maps):
    logits, target = maps
    before = target.clone()
    both = multilabel_bce(logits, target, range(3, 5))
    parts = multilabel_bce(logits, target, [3]) + multilabel_bce(logits, target, [4])
    assert torch.allclose(both, parts) and torch.equal(target, before)
    assert multilabel_bce(logits, target, []).item() == 0.0
    with pytest.raises(ValueError, match="out of range"):
        multilabel_bce(logits, target, [5])
    with pytest.raises(ValueError, match="ignore mode"):
        multilabel_bce(logits, target, [3], ignore="skip")


# ------------------------------------------------------------------ sigmoid KD


def test_sigmoid_kd_matches_explicit_loops(maps):
    logits, _ = maps
    old = torch.randn(2, 3, 3, 4, dtype=torch.float64) * 2
    got = sigmoid_kd(logits, old, [1, 2])
    assert got.item() == pytest.approx(hand_soft(logits[:, 1:3], old[:, 1:3]))


def test_sigmoid_kd_is_minimal_when_student_copies_teacher():
    old = torch.randn(1, 3, 2, 2)
    entropy = sigmoid_kd(old, old, [0, 1, 2])
    assert entropy < sigmoid_kd(old + 0.5, old, [0, 1, 2])
    assert entropy < sigmoid_kd(old - 0.5, old, [0, 1, 2])


# ------------------------------------------------------------------ decomposition


def test_pos_neg_bias_reconstruct_the_logits_exactly():
    # Integer-valued features and weights: every sum is exact in float32.
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 5, (2, 6, 3, 3), generator=g).float()  # ≥ 0 like post-ReLU features
    w = torch.randint(-4, 5, (4, 6, 1, 1), generator=g).float()
    b = torch.randint(-3, 4, (4,), generator=g).float()
    pos, neg = decompose(x, w)
    assert torch.equal(pos + neg + b.view(1, -1, 1, 1), torch.nn.functional.conv2d(x, w, b))
    assert (pos >= 0).all() and (neg <= 0).all()


def test_decompose_matches_explicit_loops():
    x = torch.rand(1, 4, 2, 3, dtype=torch.float64)
    w = torch.randn(3, 4, dtype=torch.float64)
    pos, neg = decompose(x, w)
    hand_pos, hand_neg = hand_parts(x, w)
    assert torch.allclose(pos, hand_pos) and torch.allclose(neg, hand_neg)


def test_decomposed_kd_matches_explicit_loops():
    g = torch.Generator().manual_seed(2)
    x, old_x = torch.rand(2, 4, 2, 2, generator=g), torch.rand(2, 4, 2, 2, generator=g)
    w, old_w = torch.randn(5, 4, generator=g), torch.randn(3, 4, generator=g)
    pos, neg = decomposed_kd(x, w, old_x, old_w, [1, 2])
    sp, sn = hand_parts(x, w[1:3])
    tp, tn = hand_parts(old_x, old_w[1:3])
    assert pos.item() == pytest.approx(hand_soft(sp, tp), rel=1e-5)
    assert neg.item() == pytest.approx(hand_soft(sn, tn), rel=1e-5)
    with pytest.raises(ValueError, match="differ"):
        decomposed_kd(x, w, old_x[:, :, :1], old_w, [1])
    with pytest.raises(ValueError, match="inputs"):
        decompose(x, torch.randn(2, 3))


def test_auxiliary_loss_is_bce_against_zero():
    z = torch.tensor([[[[0.0, 1.0], [-2.0, 3.0]]]])
    expected = sum(bce(v, 0.0) for v in (0.0, 1.0, -2.0, 3.0)) / 4
    assert auxiliary_loss(z).item() == pytest.approx(expected)


# ------------------------------------------------------------------ gradients


def test_gradient_reaches_the_student_and_never_the_teacher():
    x = torch.rand(2, 4, 3, 3, requires_grad=True)
    w = torch.randn(4, 4, requires_grad=True)
    old_x = torch.rand(2, 4, 3, 3, requires_grad=True)
    old_w = torch.randn(3, 4, requires_grad=True)
    logits = torch.randn(2, 4, 6, 6, requires_grad=True)
    old_logits = torch.randn(2, 3, 6, 6, requires_grad=True)
    target = torch.randint(0, 4, (2, 6, 6))
    pos, neg = decomposed_kd(x, w, old_x, old_w, [0, 1, 2])
    terms = {
        "mbce": multilabel_bce(logits, target, [3]),
        "kd": sigmoid_kd(logits, old_logits, [1, 2]),
        "pos": pos,
        "neg": neg,
        "ac": auxiliary_loss(logits[:, :1]),
    }
    for name, term in terms.items():
        for t in (x, w, logits):
            t.grad = None
        term.backward(retain_graph=True)
        moved = sum(float(t.grad.abs().sum()) for t in (x, w, logits) if t.grad is not None)
        assert moved > 0, name
        if name in ("pos", "neg"):
            assert float(w.grad[3].abs().sum()) == 0  # only the distilled rows move
    assert old_x.grad is None and old_w.grad is None and old_logits.grad is None


# ------------------------------------------------------------------ half precision


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_terms_finite_and_equal_to_fp32_under_huge_half_logits(dtype):
    g = torch.Generator().manual_seed(3)
    big = (torch.randn(2, 4, 4, 4, generator=g).sign() * 1e4).to(dtype)
    old_big = (torch.randn(2, 3, 4, 4, generator=g).sign() * 1e4).to(dtype)
    target = torch.randint(0, 4, (2, 4, 4), generator=g)
    feats = (torch.rand(2, 4, 2, 2, generator=g) * 1e4).to(dtype)
    old_feats = (torch.rand(2, 4, 2, 2, generator=g) * 1e4).to(dtype)
    w, old_w = torch.randn(4, 4, generator=g), torch.randn(3, 4, generator=g)
    half = {
        "mbce": multilabel_bce(big, target, [2, 3]),
        "kd": sigmoid_kd(big, old_big, [0, 1, 2]),
        "dkd": torch.stack(decomposed_kd(feats, w, old_feats, old_w, [0, 1])),
        "ac": auxiliary_loss(big[:, :1]),
    }
    full = {
        "mbce": multilabel_bce(big.float(), target, [2, 3]),
        "kd": sigmoid_kd(big.float(), old_big.float(), [0, 1, 2]),
        "dkd": torch.stack(decomposed_kd(feats.float(), w, old_feats.float(), old_w, [0, 1])),
        "ac": auxiliary_loss(big[:, :1].float()),
    }
    for name, value in half.items():
        assert value.dtype == torch.float32 and torch.isfinite(value).all(), name
        assert torch.allclose(value, full[name], rtol=1e-6), name
    assert half["mbce"] > 1e3  # confidently wrong pixels cost ~|z|, not inf


def test_huge_logits_give_finite_gradients():
    z = torch.tensor([[[[1e4, -1e4]], [[-1e4, 1e4]]]], dtype=torch.float16, requires_grad=True)
    target = torch.tensor([[[1, 0]]])
    loss = multilabel_bce(z, target, [0, 1]) + sigmoid_kd(z, -z.detach(), [0, 1])
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad.float()).all()
