import math

import pytest
import torch

from geociss.losses.pod import (
    local_pod,
    merge_new_logits,
    pod_distance,
    pod_embedding,
    pod_schedule,
)


def loop_embedding(x, scales=(1, 2, 4)):
    """PLOP's embedding written out region by region, element by element (square maps)."""
    b, c, _, w = x.shape
    out = []
    for n in range(b):
        values = []
        for s in scales:
            k = w // s
            for i in range(s):
                for j in range(s):
                    rows = range(i * k, (i + 1) * k)
                    cols = range(j * k, (j + 1) * k)
                    for ch in range(c):  # width-pooled strip: one mean per row
                        for r in rows:
                            values.append(sum(float(x[n, ch, r, q]) for q in cols) / k)
                    for ch in range(c):  # height-pooled strip: one mean per column
                        for q in cols:
                            values.append(sum(float(x[n, ch, r, q]) for r in rows) / k)
        out.append(values)
    return torch.tensor(out, dtype=torch.float64)


def loop_distance(student, teacher, scales=(1, 2, 4)):
    es = loop_embedding(student.double() ** 2, scales)
    et = loop_embedding(teacher.double() ** 2, scales)
    norms = [
        math.sqrt(sum((a - b) ** 2 for a, b in zip(r, t, strict=True)))
        for r, t in zip(es.tolist(), et.tolist(), strict=True)
    ]
    return sum(norms) / len(norms)


def test_merge_new_logits_sums_raw_logits_into_background():
    z = torch.tensor([1.0, 2.0, 3.0, 10.0, -4.0]).view(1, 5, 1, 1)
    merged = merge_new_logits(z, 3)
    assert merged.flatten().tolist() == [1.0 + 10.0 - 4.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="old_channels"):
        merge_new_logits(z, 6)


def test_embedding_matches_explicit_loops_and_length():
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    emb = pod_embedding(x)
    assert emb.shape == (2, 2 * 3 * 8 * (1 + 2 + 4))
    torch.testing.assert_close(emb.double(), loop_embedding(x), atol=1e-6, rtol=1e-6)


def test_width_pooled_strip_is_row_means_of_the_whole_map():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    emb = pod_embedding(x, scales=(1,))
    assert emb[0, :4].tolist() == [1.5, 5.5, 9.5, 13.5]  # mean over the width of each row
    assert emb[0, 4:].tolist() == [6.0, 7.0, 8.0, 9.0]  # mean over the height of each column


def test_width_embedding_on_square_maps_and_full_coverage_on_rectangles():
    # square: the region size taken from the width equals the per-axis one (loops use the width)
    x = torch.rand(1, 2, 12, 12, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(pod_embedding(x, (1, 3)).double(), loop_embedding(x, (1, 3)))
    # rectangle taller than wide: PLOP's width-based slicing would never look at rows 8..11
    tall = torch.rand(1, 2, 12, 8, generator=torch.Generator().manual_seed(2))
    changed = tall.clone()
    changed[..., 10, :] += 5.0
    assert not torch.allclose(pod_embedding(tall), pod_embedding(changed))


def test_scales_larger_than_the_map_are_skipped_and_too_small_maps_rejected():
    x = torch.rand(1, 1, 2, 2)
    assert pod_embedding(x).shape == (1, 2 * 2 * (1 + 2))
    with pytest.raises(ValueError, match="smaller than every POD scale"):
        pod_embedding(x, scales=(4,))


def test_distance_matches_independent_formula():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(2, 2, 4, 4, generator=g), torch.randn(2, 2, 4, 4, generator=g)
    assert float(pod_distance(s, t)) == pytest.approx(loop_distance(s, t), rel=1e-5)


def test_logit_layer_merges_new_channels_before_the_distance():
    g = torch.Generator().manual_seed(4)
    student, teacher = torch.randn(1, 5, 4, 4, generator=g), torch.randn(1, 3, 4, 4, generator=g)
    expected = loop_distance(merge_new_logits(student, 3), teacher)
    assert float(pod_distance(student, teacher)) == pytest.approx(expected, rel=1e-5)


def test_zero_when_student_equals_teacher():
    g = torch.Generator().manual_seed(5)
    maps = [torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 3, 4, 4, generator=g)]
    assert float(local_pod(maps, [m.clone() for m in maps], [0.01, 0.0005])) == 0.0
    # logits: new channels that sum to zero leave the merged background unchanged
    teacher = torch.randn(1, 3, 4, 4, generator=g)
    extra = torch.randn(1, 1, 4, 4, generator=g)
    student = torch.cat([teacher, extra, -extra], dim=1)
    assert float(pod_distance(student, teacher)) == pytest.approx(0.0, abs=1e-6)


def test_layer_weights_scale_and_divide_by_the_number_of_layers():
    g = torch.Generator().manual_seed(6)
    s = [torch.randn(1, 2, 4, 4, generator=g) for _ in range(3)]
    t = [torch.randn(1, 2, 4, 4, generator=g) for _ in range(3)]
    d = [loop_distance(a, b) for a, b in zip(s, t, strict=True)]
    got = float(local_pod(s, t, [0.01, 0.02, 0.0]))
    assert got == pytest.approx((0.01 * d[0] + 0.02 * d[1]) / 3, rel=1e-5)
    assert float(local_pod(s, t, [0.02, 0.04, 0.0])) == pytest.approx(2 * got, rel=1e-6)
    with pytest.raises(ValueError, match="as many"):
        local_pod(s, t, [0.01])


def test_pod_schedule():
    assert pod_schedule(5, 1) == pytest.approx(math.sqrt(5))
    assert pod_schedule(21, 5) == pytest.approx(math.sqrt(21 / 5))
    with pytest.raises(ValueError):
        pod_schedule(3, 0)


def test_gradient_reaches_student_only():
    torch.manual_seed(0)
    student_conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    teacher_conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 8, 8)
    teacher_map = teacher_conv(x)  # not under no_grad: the loss must detach it itself
    loss = local_pod([student_conv(x)], [teacher_map], [0.01])
    loss.backward()
    assert student_conv.weight.grad is not None and student_conv.weight.grad.abs().sum() > 0
    assert teacher_conv.weight.grad is None


def test_zero_distance_has_finite_zero_gradient():
    x = torch.randn(1, 2, 4, 4, requires_grad=True)
    pod_distance(x, x.detach().clone()).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_large_inputs_are_finite_and_close_to_fp32(dtype):
    g = torch.Generator().manual_seed(7)
    s = (torch.randn(2, 3, 8, 8, generator=g) * 3000).to(dtype)  # squares overflow fp16
    t = (torch.randn(2, 3, 8, 8, generator=g) * 3000).to(dtype)
    logits_s = (torch.randn(2, 5, 8, 8, generator=g) * 3000).to(dtype)
    logits_t = (torch.randn(2, 3, 8, 8, generator=g) * 3000).to(dtype)
    if dtype == torch.float16:
        assert torch.isinf(s.pow(2)).any()  # a half-precision square would overflow
    half = local_pod([s, logits_s], [t, logits_t], [0.01, 0.0005])
    full = local_pod([s.float(), logits_s.float()], [t.float(), logits_t.float()], [0.01, 0.0005])
    assert half.dtype == torch.float32 and torch.isfinite(half)
    torch.testing.assert_close(half, full, rtol=1e-5, atol=0.0)
