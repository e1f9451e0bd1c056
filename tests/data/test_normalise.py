"""normalise: one scaling for training, evaluation and predict; invalid pixels (NaN) -> 0."""

from __future__ import annotations

import torch

from geociss.data.normalise import band_column, normalise


def test_nan_becomes_the_band_mean_and_valid_pixels_are_scaled() -> None:
    image = torch.tensor([[[[10.0, float("nan")]], [[4.0, 6.0]]]])  # (1, 2, 1, 2)
    mean, inv = band_column([8.0, 5.0]), band_column([2.0, 0.5]).reciprocal()
    out = normalise(image, mean, inv)
    assert out.dtype == torch.float32
    assert torch.equal(out, torch.tensor([[[[1.0, 0.0]], [[-2.0, 2.0]]]]))
    assert torch.isnan(image[0, 0, 0, 1])  # the caller's batch is left alone


def test_inplace_reuses_a_float32_batch_and_integers_are_converted() -> None:
    image = torch.tensor([[[[3.0, float("nan")]]]])
    mean, inv = band_column([1.0]), band_column([0.5]).reciprocal()
    out = normalise(image, mean, inv, inplace=True)
    assert out is image and torch.equal(out, torch.tensor([[[[4.0, 0.0]]]]))
    ints = torch.tensor([[[[3, 5]]]], dtype=torch.uint8)
    assert torch.equal(normalise(ints, mean, inv, inplace=True), torch.tensor([[[[4.0, 8.0]]]]))
    assert torch.equal(normalise(ints, None, None), ints.float())


def test_a_nodata_mask_fills_like_nan_and_leaves_the_batch_alone() -> None:
    raw = torch.tensor([[[[10, 200]], [[4, 6]]]], dtype=torch.uint8)  # (1, 2, 1, 2)
    nodata = torch.tensor([[[False, True]]])
    floats = raw.float()
    floats[0, :, 0, 1] = float("nan")
    mean, inv = band_column([8.0, 5.0]), band_column([2.0, 0.5]).reciprocal()
    expected = normalise(floats.clone(), mean, inv)
    assert torch.equal(normalise(raw, mean, inv, nodata=nodata), expected)
    image = torch.tensor([[[[3.0, 7.0]]]])
    out = normalise(image, None, None, nodata=torch.tensor([[[True, False]]]))
    assert torch.equal(out, torch.tensor([[[[0.0, 7.0]]]])) and image[0, 0, 0, 0] == 3.0
