"""Scores: exact IoU on hand-checked matrices, absent-class rules, old/new/all, hIoU, JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from geociss.evaluation import Scores, harmonic_mean

CM3 = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])  # rows = ground truth; class 2 absent everywhere
NAMES3 = ["a", "b", "c"]


def test_per_class_values_are_exact() -> None:
    s = Scores.from_confusion(CM3, NAMES3, old_channels=[0, 1], new_channels=[2])
    assert s.iou[0] == pytest.approx(5 / 8)  # TP 5, GT 6, pred 7
    assert s.iou[1] == pytest.approx(3 / 6)  # TP 3, GT 5, pred 4
    assert np.isnan(s.iou[2])
    np.testing.assert_allclose(s.precision[:2], [5 / 7, 3 / 4])
    np.testing.assert_allclose(s.recall[:2], [5 / 6, 3 / 5])
    assert np.isnan(s.precision[2]) and np.isnan(s.recall[2])
    np.testing.assert_array_equal(s.gt_pixels, [6, 5, 0])
    np.testing.assert_array_equal(s.pred_pixels, [7, 4, 0])
    assert s.pixel_accuracy == pytest.approx(8 / 11)


def test_absent_and_never_predicted_exclude_vs_zero() -> None:
    ex = Scores.from_confusion(CM3, NAMES3, [0, 1], [2], absent="exclude")
    assert ex.miou_old == pytest.approx(0.5625)
    assert ex.miou_new is None and ex.hiou is None
    assert ex.miou_all == pytest.approx(0.5625)
    assert ex.to_dict()["channels"][2]["iou"] is None
    zero = Scores.from_confusion(CM3, NAMES3, [0, 1], [2], absent="zero")
    assert zero.iou[2] == 0.0 and zero.miou_new == 0.0
    assert zero.miou_all == pytest.approx((0.625 + 0.5) / 3)
    assert zero.hiou == 0.0


def test_absent_but_predicted_counts_as_zero_except_gt_only() -> None:
    cm = np.array([[4, 1, 1], [0, 2, 0], [0, 0, 0]])
    ex = Scores.from_confusion(cm, NAMES3, [0, 1], [2])
    assert ex.iou[2] == 0.0 and ex.miou_new == 0.0
    assert ex.miou_all == pytest.approx((4 / 6 + 2 / 3 + 0) / 3)
    gt_only = Scores.from_confusion(cm, NAMES3, [0, 1], [2], absent="gt-only")
    assert gt_only.iou[2] == 0.0 and not gt_only.in_mean[2]
    assert gt_only.miou_new is None
    assert gt_only.miou_all == pytest.approx((4 / 6 + 2 / 3) / 2)


def test_four_one_split_old_new_all_and_hiou() -> None:
    cm = np.diag([10, 10, 10, 10, 10])
    cm[4, 0] = 10  # half of the cars predicted as impervious surfaces
    names = ["impervious", "building", "low vegetation", "tree", "car"]
    s = Scores.from_confusion(cm, names, old_channels=[0, 1, 2, 3], new_channels=[4])
    np.testing.assert_allclose(s.iou, [0.5, 1, 1, 1, 0.5])
    assert s.miou_old == pytest.approx(0.875)
    assert s.miou_new == pytest.approx(0.5)
    assert s.miou_all == pytest.approx(0.8)
    assert s.miou_all == pytest.approx((4 * s.miou_old + s.miou_new) / 5)  # IDEC Table 3 identity
    assert s.hiou == pytest.approx(2 * 0.875 * 0.5 / 1.375)
    assert s.miou([0, 1]) == pytest.approx(0.75)
    assert s.channel_steps == (0, 0, 0, 0, None)
    assert s.group(4) == "new" and s.group(0) == "old"


def test_channel_in_neither_group_stays_out_of_means() -> None:
    cm = np.array([[3, 0, 0], [0, 1, 1], [0, 0, 2]])
    s = Scores.from_confusion(cm, ["other", "x", "y"], old_channels=[1], new_channels=[2])
    assert s.group(0) is None and s.all_channels == (1, 2)
    assert s.miou_all == pytest.approx((0.5 + 2 / 3) / 2)


def test_harmonic_mean() -> None:
    assert harmonic_mean(0.6, 0.3) == pytest.approx(0.4)
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(None, 0.5) is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cm": np.zeros((2, 3))}, "square"),
        ({"cm": np.array([[1, -1], [0, 1]])}, "non-negative"),
        ({"cm": np.array([[0.5, 0], [0, 1]])}, "integer"),
        ({"names": ["a"]}, "1 channel names"),
        ({"old": [0, 2]}, "outside"),
        ({"old": [0, 1], "new": [1]}, "both old and new"),
        ({"old": [0, 0]}, "duplicates"),
        ({"absent": "nan"}, "absent must be"),
    ],
)
def test_bad_inputs(kwargs, match) -> None:
    args = {
        "cm": np.eye(2, dtype=int),
        "names": ["a", "b"],
        "old": [0],
        "new": [1],
        "absent": "exclude",
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Scores.from_confusion(
            args["cm"], args["names"], args["old"], args["new"], absent=args["absent"]
        )


def test_json_has_no_nan_and_round_trips() -> None:
    s = Scores.from_confusion(CM3, NAMES3, [0, 1], [2], channel_steps=[0, 0, 1])
    text = json.dumps(s.to_dict(), allow_nan=False)
    assert "NaN" not in text
    back = Scores.from_dict(json.loads(text))
    assert back.to_dict() == s.to_dict()
    assert back.channel_steps == (0, 0, 1)
    np.testing.assert_array_equal(back.confusion, CM3)
    with pytest.raises(ValueError, match="schema_version"):
        Scores.from_dict({"schema_version": 99})
    with pytest.raises(ValueError, match="malformed"):
        Scores.from_dict({"schema_version": 1, "channels": []})


def test_importing_scores_does_not_import_torch() -> None:
    code = "import sys; from geociss.evaluation import Scores; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
