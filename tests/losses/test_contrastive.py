import math

import pytest
import torch

from geociss.losses.contrastive import nearest_downsample, uncertainty_contrastive_loss


def loop_ucd(features, old_features, old_logits, target, tau=0.07, original_shift=False):
    """UCD's loss from its definition, pixel by pixel and pair by pair, in float64."""
    b_, _, h, w = features.shape
    big_h, big_w = target.shape[1:]
    old_channels = old_logits.shape[1]

    def unit(v):
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    anchors, extra = [], []
    for b in range(b_):
        for y in range(h):
            for x in range(w):
                label = int(target[b, y * big_h // h, x * big_w // w])
                z = [float(v) for v in old_logits[b, :, y, x]]
                probs = [math.exp(v) / sum(math.exp(u) for u in z) for v in z]
                mixed = max(range(old_channels), key=lambda c: z[c]) if label == 0 else label
                if label == 255 or mixed == 0:
                    continue
                a = unit([float(v) for v in features[b, :, y, x]])
                anchors.append((a, mixed, probs))
                if label == 0:
                    extra.append((unit([float(v) for v in old_features[b, :, y, x]]), mixed, probs))
    contrast = anchors + extra
    losses = []
    for i, (a, m_i, p_i) in enumerate(anchors):
        sims = [sum(u * v for u, v in zip(a, c, strict=True)) / tau for c, _, _ in contrast]
        neg = sum(math.exp(s) for s, (_, m_j, _) in zip(sims, contrast, strict=True) if m_j != m_i)
        top = max(sims)
        total, count = 0.0, 0
        for j, (s, (_, m_j, p_j)) in enumerate(zip(sims, contrast, strict=True)):
            if m_j != m_i or j == i:
                continue
            both_new = m_i >= old_channels and m_j >= old_channels
            weight = 1.0 if both_new else sum(u * v for u, v in zip(p_i, p_j, strict=True))
            if original_shift:
                term = (s - top) - math.log(math.exp(s - top) + neg)
            else:
                term = s - math.log(math.exp(s) + neg)
            total += weight * term
            count += 1
        if count:
            losses.append(-total / count)
    return sum(losses) / len(losses)


def inputs(seed, b=2, d=4, h=3, w=3, scale=2):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, d, h, w, generator=g)
    old_feats = feats + 0.5 * torch.randn(b, d, h, w, generator=g)
    old_logits = 3 * torch.randn(b, 3, h, w, generator=g)
    choices = torch.tensor([0, 0, 3, 4, 255])
    target = choices[torch.randint(0, 5, (b, h * scale, w * scale), generator=g)]
    return feats, old_feats, old_logits, target


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("original_shift", [False, True])
def test_matches_pair_by_pair_definition(seed, original_shift):
    feats, old_feats, old_logits, target = inputs(seed)
    got = uncertainty_contrastive_loss(
        feats, old_feats, old_logits, target, original_shift=original_shift, max_pixels=None
    )
    expected = loop_ucd(feats, old_feats, old_logits, target, original_shift=original_shift)
    assert float(got) == pytest.approx(expected, rel=1e-4)


def test_original_shift_up_weights_negatives():
    feats, old_feats, old_logits, target = inputs(5)
    clean = uncertainty_contrastive_loss(feats, old_feats, old_logits, target)
    shifted = uncertainty_contrastive_loss(
        feats, old_feats, old_logits, target, original_shift=True
    )
    assert float(shifted) > float(clean) > 0


def test_labels_are_downsampled_by_nearest_never_mixed():
    labels = torch.tensor([[[0, 0, 4, 4], [0, 0, 4, 4], [255, 255, 3, 3], [255, 255, 3, 3]]])
    assert nearest_downsample(labels, (2, 2)).tolist() == [[[0, 4], [255, 3]]]
    g = torch.Generator().manual_seed(0)
    noisy = torch.tensor([0, 3, 4, 255])[torch.randint(0, 4, (2, 16, 16), generator=g)]
    small = nearest_downsample(noisy, (5, 7))
    assert small.dtype == noisy.dtype and set(small.unique().tolist()) <= {0, 3, 4, 255}


def test_ignored_pixels_take_no_part():
    feats, old_feats, old_logits, target = inputs(3, h=2, w=2, scale=1)
    target[0, 0, 0] = 255
    base = uncertainty_contrastive_loss(feats, old_feats, old_logits, target)
    feats2, old_feats2 = feats.clone(), old_feats.clone()
    feats2[0, :, 0, 0] = 100.0
    old_feats2[0, :, 0, 0] = -7.0
    assert float(uncertainty_contrastive_loss(feats2, old_feats2, old_logits, target)) == float(
        base
    )


def test_no_anchor_gives_zero_with_a_graph():
    feats = torch.randn(1, 4, 2, 2, requires_grad=True)
    old_logits = torch.zeros(1, 3, 2, 2)
    old_logits[:, 0] = 5.0  # the teacher sees background everywhere
    loss = uncertainty_contrastive_loss(feats, feats.detach(), old_logits, torch.zeros(1, 4, 4))
    loss.backward()
    assert float(loss.detach()) == 0.0 and feats.grad is not None


def test_gradient_reaches_student_only_and_inputs_untouched():
    torch.manual_seed(0)
    student, teacher = torch.nn.Conv2d(3, 8, 1), torch.nn.Conv2d(3, 8, 1)
    head = torch.nn.Conv2d(8, 3, 1)
    x = torch.randn(2, 3, 3, 3)
    _, _, _, target = inputs(4)
    before = target.clone()
    old = teacher(x)
    loss = uncertainty_contrastive_loss(student(x), old, head(old), target)
    loss.backward()
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0
    assert teacher.weight.grad is None and head.weight.grad is None
    assert torch.equal(target, before)


def test_max_pixels_subsample_is_deterministic_given_the_generator():
    feats, old_feats, old_logits, target = inputs(6, b=2, h=6, w=6)
    full = uncertainty_contrastive_loss(feats, old_feats, old_logits, target, max_pixels=None)
    capped = uncertainty_contrastive_loss(feats, old_feats, old_logits, target, max_pixels=10_000)
    assert float(full) == float(capped)

    def sampled(seed):
        g = torch.Generator().manual_seed(seed)
        return uncertainty_contrastive_loss(
            feats, old_feats, old_logits, target, max_pixels=8, generator=g
        )

    assert float(sampled(1)) == float(sampled(1))
    assert float(sampled(1)) != float(sampled(2))
    assert torch.isfinite(sampled(3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_large_inputs_are_finite_and_close_to_fp32(dtype):
    feats, old_feats, old_logits, target = inputs(7)
    big = [(t * 2e4).clamp(-6e4, 6e4).to(dtype) for t in (feats, old_feats, old_logits)]
    half = uncertainty_contrastive_loss(*big, target)
    full = uncertainty_contrastive_loss(*(t.float() for t in big), target)
    assert half.dtype == torch.float32 and torch.isfinite(half)
    torch.testing.assert_close(half, full)
    # features are L2-normalised: their scale does not matter
    small = uncertainty_contrastive_loss(big[0].float() / 2e4, big[1].float() / 2e4, big[2], target)
    torch.testing.assert_close(small, full, rtol=1e-4, atol=1e-5)
