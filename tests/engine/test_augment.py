import torch

from geociss.engine.augment import AugmentConfig, BatchAugment


def _batch(b=6, h=16, w=16):
    g = torch.Generator().manual_seed(0)
    mask = torch.randint(0, 5, (b, h, w), generator=g)
    mask[:, 0, 0] = 255  # an ignore pixel survives as ignore
    image = torch.stack([mask.float(), mask.float() * 2, torch.rand(b, h, w, generator=g)], 1)
    return image, mask


def test_d4_only_is_exact_and_identical_for_image_and_mask():
    aug = BatchAugment(AugmentConfig(flip=True, rot90=True, scale=(1.0, 1.0), gain=0, offset=0))
    image, mask = _batch()
    out, m = aug(image, mask, torch.Generator().manual_seed(1))
    # channel 0 encodes the label: the image and mask must have moved together, exactly
    assert torch.equal(out[:, 0].round().long(), m)
    d4 = []
    for i in range(image.shape[0]):
        views = []
        for k in range(4):
            r = torch.rot90(mask[i], k, (0, 1))
            views += [r, torch.flip(r, (1,))]
        assert any(torch.equal(m[i], v) for v in views)
        d4.append(next(j for j, v in enumerate(views) if torch.equal(m[i], v)))
    assert len(set(d4)) > 1  # not always the identity


def test_zoom_out_pads_with_ignore_never_background():
    aug = BatchAugment(
        AugmentConfig(flip=False, rot90=False, scale=(0.5, 0.5), gain=0.1, offset=0.1)
    )
    image, mask = _batch()
    mask[mask == 255] = 1
    out, m = aug(image + 1.0, mask, torch.Generator().manual_seed(2))
    pad = m == 255
    assert pad.float().mean() > 0.5  # half the side → three quarters of the area is padding
    # away from the border (bilinear blends one pixel), padded image pixels stay 0 (no jitter)
    near = torch.nn.functional.max_pool2d((~pad).float().unsqueeze(1), 3, 1, 1).squeeze(1) > 0
    assert (out.permute(1, 0, 2, 3)[:, pad & ~near] == 0).all()
    assert set(m.unique().tolist()) <= {0, 1, 2, 3, 4, 255}
    assert (out[~pad.unsqueeze(1).expand_as(out)] != 0).all()


def test_zoom_in_has_no_padding_and_keeps_label_set():
    aug = BatchAugment(AugmentConfig(scale=(1.5, 2.0)))
    image, mask = _batch()
    mask[mask == 255] = 3
    _, m = aug(image, mask, torch.Generator().manual_seed(3))
    assert (m != 255).all()
    assert set(m.unique().tolist()) <= set(mask.unique().tolist())


def test_seeded_generator_reproducible():
    aug = BatchAugment()
    image, mask = _batch()
    a = aug(image, mask, torch.Generator().manual_seed(7))
    b = aug(image, mask, torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
