"""StepHistory: forgetting and avg on a hand-made 3-step run, validation, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geociss.evaluation import Scores, StepHistory

NAMES = ["a", "b", "c", "d"]


def three_step_history(absent: str = "exclude") -> StepHistory:
    cms = [
        np.array([[8, 2], [0, 10]]),  # a 0.8, b 10/12
        np.array([[9, 1, 0], [0, 10, 0], [0, 0, 5]]),  # a 0.9, b 10/11, c 1.0
        np.array([[6, 0, 0, 4], [0, 10, 0, 0], [0, 0, 4, 1], [0, 0, 0, 5]]),  # a .6 b 1 c .8 d .5
    ]
    olds = [0, 1]
    history = StepHistory(method="mib")
    for cm in cms:
        c = cm.shape[0]
        scores = Scores.from_confusion(cm, NAMES[:c], olds, list(range(2, c)), absent=absent)
        history.add(scores)
    return history


def test_steps_and_classes_default_from_channels() -> None:
    h = three_step_history()
    assert [r.step for r in h.records] == [0, 1, 2]
    assert [r.classes for r in h.records] == [(0, 1), (2,), (3,)]
    assert h.records[1].class_names == ["c"]


def test_forgetting_by_hand() -> None:
    f = three_step_history().forgetting()
    assert set(f) == {0, 1, 2}  # d is learned at the last step: no forgetting
    assert f[0] == pytest.approx(0.9 - 0.6)
    assert f[1] == pytest.approx(10 / 11 - 1.0)  # improved: negative
    assert f[2] == pytest.approx(1.0 - 0.8)
    assert three_step_history().mean_forgetting() == pytest.approx((0.3 - 1 / 11 + 0.2) / 3)


def test_avg_all_by_hand() -> None:
    expected = np.mean([(0.8 + 10 / 12) / 2, (0.9 + 10 / 11 + 1.0) / 3, (0.6 + 1 + 0.8 + 0.5) / 4])
    assert three_step_history().avg_all() == pytest.approx(expected)


def test_forgetting_skips_undefined_iou() -> None:
    h = StepHistory()
    h.add(Scores.from_confusion(np.array([[4, 0], [0, 0]]), ["a", "b"], [0, 1]))  # b absent
    h.add(
        Scores.from_confusion(
            np.array([[4, 0, 0], [0, 3, 1], [0, 0, 2]]), ["a", "b", "c"], [0, 1], [2]
        )
    )
    f = h.forgetting()
    assert f[0] == 0.0 and f[1] is None  # no earlier defined IoU for b
    assert StepHistory().forgetting() == {} and StepHistory().avg_all() is None


def test_add_validates() -> None:
    h = three_step_history()
    wrong = Scores.from_confusion(
        np.eye(5, dtype=int), ["a", "x", "c", "d", "e"], [0, 1], [2, 3, 4]
    )
    with pytest.raises(ValueError, match="do not extend"):
        h.add(wrong)
    ok = Scores.from_confusion(np.eye(5, dtype=int), [*NAMES, "e"], [0, 1], [2, 3, 4])
    with pytest.raises(ValueError, match="does not follow"):
        h.add(ok, step=2)
    with pytest.raises(ValueError, match="outside"):
        h.add(ok, classes=[7])
    with pytest.raises(ValueError, match="empty"):
        _ = StepHistory().last


@pytest.mark.parametrize("absent", ["exclude", "zero"])
def test_json_round_trip(absent) -> None:
    h = three_step_history(absent)
    text = json.dumps(h.to_dict(), allow_nan=False)
    back = StepHistory.from_dict(json.loads(text))
    assert back.to_dict() == h.to_dict()
    assert back.method == "mib" and back.records[2].classes == (3,)
    assert json.loads(text)["forgetting"][0] == {
        "id": 0,
        "name": "a",
        "forgetting": pytest.approx(0.3),
    }


def test_from_dict_rejects_other_records() -> None:
    with pytest.raises(ValueError, match="not a step history"):
        StepHistory.from_dict({"schema_version": 1})
    with pytest.raises(ValueError, match="malformed"):
        StepHistory.from_dict({"schema_version": 1, "kind": "step_history", "steps": [{}]})
