"""ASPP head and incremental classifier."""

from __future__ import annotations

import pytest
import torch

from geociss.models.aspp import ASPP, make_norm
from geociss.models.classifier import IncrementalClassifier


def test_aspp_branches_dilations_and_output():
    aspp = ASPP(48, channels=16, dilations=(6, 12, 18)).eval()
    dilations = [branch[0].dilation for branch in aspp.convs]
    assert dilations == [(1, 1), (6, 6), (12, 12), (18, 18)]
    x = torch.randn(2, 48, 9, 7)
    branches = aspp.branches(x)
    assert len(branches) == 5 and all(b.shape == (2, 16, 9, 7) for b in branches)
    pooled = branches[-1]
    assert torch.equal(pooled, pooled[..., :1, :1].expand_as(pooled))  # image-level branch
    out = aspp(x)
    assert out.shape == (2, 16, 9, 7) and (out >= 0).all()
    torch.testing.assert_close(aspp.fuse(branches), out)


def test_make_norm():
    assert isinstance(make_norm("batch", 8), torch.nn.BatchNorm2d)
    gn = make_norm("group", 8, groups=4)
    assert isinstance(gn, torch.nn.GroupNorm) and gn.num_groups == 4
    with pytest.raises(ValueError, match="unknown norm"):
        make_norm("layer", 8)


def test_classifier_concatenates_steps_in_order():
    clf = IncrementalClassifier(4, [3, 2], dropout=0.0).eval()
    assert clf.classes_per_step == (3, 2) and clf.num_classes == 5
    x = torch.randn(1, 4, 2, 2)
    logits = clf(x)
    torch.testing.assert_close(logits[:, 3:], clf.head(1)(x))
    torch.testing.assert_close(logits[:, :3], clf.head(0)(x))
    assert clf.weight.shape == (5, 4) and clf.bias.shape == (5,)
    torch.testing.assert_close(clf.weight[3:], clf.head(-1).weight.flatten(1))


def test_classifier_new_step_follows_dtype_and_rejects_empty():
    clf = IncrementalClassifier(4, [2]).to(torch.float64)
    conv = clf.add_step(3)
    assert conv.weight.dtype == torch.float64 and clf.head(-1) is conv
    with pytest.raises(ValueError):
        IncrementalClassifier(4, [])
