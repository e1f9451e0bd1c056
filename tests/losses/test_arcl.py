import math

import pytest
import torch

from geociss.losses.arcl import find_regions, region_contrastive_loss, region_embeddings


def unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v] if n > 0 else [0.0] * len(v)


def loop_arcl(features, old_features, labels, tau=0.1, negative_only=(0,)):
    """ARCL from its definition: explicit loops over images, regions and pixels, in float64."""
    b_, d, h, w = features.shape
    big_h, big_w = labels.shape[1:]
    regions = {}  # (image, label) -> list of (y, x)
    for b in range(b_):
        for y in range(h):
            for x in range(w):
                label = int(labels[b, y * big_h // h, x * big_w // w])  # nearest neighbour
                if label != 255:
                    regions.setdefault((b, label), []).append((y, x))

    def embed(maps, b, pixels):
        vecs = [unit([float(maps[b, c, y, x]) for c in range(d)]) for y, x in pixels]
        return unit([sum(v[c] for v in vecs) / len(vecs) for c in range(d)])

    keys = sorted(regions)
    student = {k: embed(features, k[0], regions[k]) for k in keys}
    teacher = {k: embed(old_features, k[0], regions[k]) for k in keys}
    losses = []
    for key in keys:
        if key[1] in negative_only:
            continue
        negatives = [k for k in keys if k[1] != key[1]]
        if not negatives:
            continue

        def sim(other, key=key):
            return sum(a * s for a, s in zip(teacher[key], student[other], strict=True)) / tau

        pos = math.exp(sim(key))
        losses.append(-math.log(pos / (pos + sum(math.exp(sim(k)) for k in negatives))))
    return sum(losses) / len(losses)


def inputs(seed, b=2, d=5, h=3, w=4, scale=2, relu=True):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, d, h, w, generator=g)
    old = feats + 0.7 * torch.randn(b, d, h, w, generator=g)
    if relu:
        feats, old = feats.relu() + 0.01, old.relu() + 0.01
    choices = torch.tensor([0, 1, 2, 3, 255])
    labels = choices[torch.randint(0, 5, (b, h * scale, w * scale), generator=g)]
    return feats, old, labels


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_matches_region_by_region_definition(seed, tau):
    feats, old, labels = inputs(seed, relu=seed % 2 == 0)
    got = region_contrastive_loss(feats, old, labels, temperature=tau)
    assert float(got) == pytest.approx(loop_arcl(feats, old, labels, tau), rel=1e-5)


def test_hand_case_two_regions():
    # one image, 2-D features: class 1 on the left column, background on the right column.
    feats = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])[None]  # (1, 2, 1, 2)
    labels = torch.tensor([[[1, 0]]])
    tau = 0.1
    # anchor (teacher, class 1) = (1, 0); positive (student, class 1) = (1, 0); negative = (0, 1)
    expected = math.log(1 + math.exp(-1 / tau))
    got = region_contrastive_loss(feats, feats.clone(), labels, temperature=tau)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # the negative collapsed onto the anchor: loss = log 2
    same = torch.tensor([[[1.0, 1.0]], [[0.0, 0.0]]])[None]
    got = region_contrastive_loss(same, feats, labels, temperature=tau)
    assert float(got) == pytest.approx(math.log(2), rel=1e-5)


def test_regions_are_per_image_and_class_in_order():
    labels = torch.tensor([[[2, 0], [255, 2]], [[1, 1], [1, 0]]])
    regions = find_regions(labels)
    assert regions.labels.tolist() == [0, 2, 0, 1] and regions.images.tolist() == [0, 0, 1, 1]
    assert regions.index.tolist() == [1, 0, -1, 1, 3, 3, 3, 2]
    feats = torch.rand(2, 3, 2, 2) + 0.1
    emb = region_embeddings(feats, regions)
    assert emb.shape == (4, 3)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(4))


def test_labels_are_downsampled_by_nearest_neighbour():
    feats, old, labels = inputs(3, h=2, w=2, scale=2)
    base = region_contrastive_loss(feats, old, labels)
    changed = labels.clone()
    changed[:, 1::2, :] = 2  # rows that nearest-neighbour sampling never reads
    changed[:, :, 1::2] = 255
    torch.testing.assert_close(region_contrastive_loss(feats, old, changed), base)
    assert torch.equal(labels, inputs(3, h=2, w=2, scale=2)[2])  # input not modified


def test_anchors_from_teacher_only_and_background_only_negative():
    feats, old, labels = inputs(5)
    feats.requires_grad_(True)
    old.requires_grad_(True)
    loss = region_contrastive_loss(feats, old, labels)
    loss.backward()
    assert old.grad is None
    assert float(feats.grad.abs().sum()) > 0
    bg = (labels == 0)[:, ::2, ::2]  # background pixels at feature resolution
    with torch.no_grad():
        moved_teacher = old + 5 * torch.rand_like(old) * bg[:, None]
        moved_student = feats + 5 * torch.rand_like(feats) * bg[:, None]
        assert float(region_contrastive_loss(feats, moved_teacher, labels)) == pytest.approx(
            float(loss), rel=1e-6
        )  # background teacher embeddings are never anchors
        assert abs(float(region_contrastive_loss(moved_student, old, labels)) - float(loss)) > 1e-4


def test_asymmetric():
    feats, old, labels = inputs(6)
    forward = region_contrastive_loss(feats, old, labels)
    assert abs(float(forward) - float(region_contrastive_loss(old, feats, labels))) > 1e-4


def test_no_anchor_or_no_negative_gives_attached_zero():
    feats, old, _ = inputs(0)
    feats.requires_grad_(True)
    only_bg = torch.zeros(2, 6, 8, dtype=torch.long)
    only_one = torch.ones(2, 6, 8, dtype=torch.long)
    for labels in (only_bg, only_one):
        loss = region_contrastive_loss(feats, old, labels)
        assert float(loss.detach()) == 0.0 and loss.requires_grad
    empty = torch.full((2, 6, 8), 255)
    assert float(region_contrastive_loss(feats, old, empty)) == 0.0


@pytest.mark.parametrize(("dtype", "scale"), [(torch.float16, 6e4), (torch.bfloat16, 1e30)])
def test_half_precision_large_magnitudes_stay_finite(dtype, scale):
    feats, old, labels = inputs(8)
    f = (feats / feats.max() * scale).to(dtype).requires_grad_(True)
    o = (old / old.max() * scale).to(dtype)
    loss = region_contrastive_loss(f, o, labels)
    loss.backward()
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert torch.isfinite(f.grad).all()
    reference = region_contrastive_loss(f.float(), o.float(), labels)
    torch.testing.assert_close(loss, reference)


def test_errors():
    feats, old, labels = inputs(0)
    with pytest.raises(ValueError, match="equal"):
        region_contrastive_loss(feats, old[:, :2], labels)
    with pytest.raises(ValueError, match="labels"):
        region_contrastive_loss(feats, old, labels[:1])
    with pytest.raises(ValueError, match="temperature"):
        region_contrastive_loss(feats, old, labels, temperature=0.0)
    with pytest.raises(ValueError, match="non-negative"):
        find_regions(torch.tensor([[[-1, 0]]]))
