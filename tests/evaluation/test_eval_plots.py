"""PNG plots: files exist, are PNGs, are not trivially small; normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from geociss.evaluation import Scores, StepHistory, plot_confusion, plot_history
from geociss.evaluation.plots import normalize_confusion, step_label

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5_000
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_plot_history(tmp_path) -> None:
    names = ["impervious", "building", "low vegetation", "tree", "car"]
    h = StepHistory(method="mib")
    h.add(Scores.from_confusion(np.diag([5, 4, 3, 2]), names[:4], [0, 1, 2, 3]))
    cm = np.diag([5, 4, 3, 2, 1])
    cm[4, 0] = 2
    h.add(Scores.from_confusion(cm, names, [0, 1, 2, 3], [4]))
    path = tmp_path / "plots" / "history.png"
    plot_history(h, path)
    assert_png(path)
    with pytest.raises(ValueError, match="empty"):
        plot_history(StepHistory(), tmp_path / "x.png")


def test_plot_confusion_small_and_large(tmp_path) -> None:
    rng = np.random.default_rng(0)
    small = tmp_path / "a" / "cm.png"
    plot_confusion(rng.integers(0, 50, (5, 5)), list("abcde"), small)
    assert_png(small)
    large = tmp_path / "b" / "cm.png"
    plot_confusion(
        rng.integers(0, 50, (15, 15)), [f"class {i}" for i in range(15)], large, normalize=None
    )
    assert_png(large)
    with pytest.raises(ValueError, match="names"):
        plot_confusion(np.eye(3), ["a"], tmp_path / "c.png")


def test_normalize_confusion() -> None:
    cm = np.array([[2, 2], [0, 0]])
    np.testing.assert_allclose(normalize_confusion(cm, "true"), [[0.5, 0.5], [0, 0]])
    np.testing.assert_allclose(normalize_confusion(cm, "pred"), [[1, 1], [0, 0]])
    np.testing.assert_allclose(normalize_confusion(cm, "all"), [[0.5, 0.5], [0, 0]])
    with pytest.raises(ValueError, match="normalize"):
        normalize_confusion(cm, "rows")  # type: ignore[arg-type]


def test_step_label() -> None:
    assert step_label(1, ["car"]) == "step 1 (+car)"
    assert step_label(0, ["a", "b", "c", "d"]) == "step 0 (+4 classes)"
