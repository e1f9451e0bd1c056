"""JSON / CSV writers and readers, rich tables."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from rich.console import Console

from geociss.errors import DataError
from geociss.evaluation import (
    Scores,
    StepHistory,
    history_table,
    read_scores_json,
    scores_table,
    write_scores_csv,
    write_scores_json,
)

CM = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
NAMES = ["impervious surfaces", "building", "car"]


def scores() -> Scores:
    return Scores.from_confusion(CM, NAMES, [0, 1], [2], channel_steps=[0, 0, 1])


def render(table) -> str:
    console = Console(width=160, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_json_write_read(tmp_path) -> None:
    path = tmp_path / "out" / "scores.json"
    write_scores_json(path, scores())
    text = path.read_text()
    assert "NaN" not in text and json.loads(text)["miou"]["old"] == pytest.approx(0.5625)
    assert read_scores_json(path).to_dict() == scores().to_dict()
    history = StepHistory(method="ft")
    history.add(Scores.from_confusion(CM[:2, :2], NAMES[:2], [0, 1]))
    history.add(scores())
    write_scores_json(path, history)
    back = read_scores_json(path)
    assert isinstance(back, StepHistory) and back.to_dict() == history.to_dict()
    assert [p.name for p in path.parent.iterdir()] == ["scores.json"]  # no temp file left


def test_read_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(DataError, match="missing.json: file not found"):
        read_scores_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json: not a readable JSON"):
        read_scores_json(bad)
    bad.write_text('{"schema_version": 1}')
    with pytest.raises(DataError, match="bad.json: malformed scores"):
        read_scores_json(bad)


def test_csv_content(tmp_path) -> None:
    path = tmp_path / "scores.csv"
    write_scores_csv(path, scores())
    rows = list(csv.reader(path.open()))
    assert rows[0] == [
        "id",
        "name",
        "step_learned",
        "group",
        "iou",
        "precision",
        "recall",
        "gt_pixels",
        "pred_pixels",
    ]
    assert rows[1] == [
        "0",
        "impervious surfaces",
        "0",
        "old",
        "0.625000",
        "0.714286",
        "0.833333",
        "6",
        "7",
    ]
    assert rows[3] == ["2", "car", "1", "new", "", "", "", "0", "0"]
    summary = {r[1]: r[4] for r in rows if r[3] == "summary"}
    assert summary == {
        "old": "0.562500",
        "new": "",
        "all": "0.562500",
        "hiou": "",
        "pixel_accuracy": "0.727273",
    }


def test_csv_of_history_has_eval_step(tmp_path) -> None:
    history = StepHistory()
    history.add(Scores.from_confusion(CM[:2, :2], NAMES[:2], [0, 1]))
    history.add(scores())
    path = tmp_path / "history.csv"
    write_scores_csv(path, history)
    rows = list(csv.reader(path.open()))
    assert rows[0][0] == "eval_step"
    assert [r[0] for r in rows[1:]].count("0") == 2 + 5 and [r[0] for r in rows[1:]].count(
        "1"
    ) == 3 + 5


def test_scores_table_text() -> None:
    text = render(scores_table(scores(), colors=["#ffffff", "#0000ff", (255, 255, 0)], title="4-1"))
    assert "impervious surfaces" in text and "■" in text
    assert "62.50" in text and "50.00" in text and "56.25" in text
    assert "mIoU all" in text and "hIoU" in text


def test_scores_table_colours_the_swatch() -> None:
    table = scores_table(scores(), colors=["#ffffff", "#0000ff", "#ffff00"])
    label = table.columns[1]._cells[1]
    assert any("#0000ff" in str(span.style) for span in label.spans)


def test_history_table_text() -> None:
    history = StepHistory(method="mib")
    history.add(Scores.from_confusion(np.array([[8, 2], [0, 10]]), NAMES[:2], [0, 1]))
    history.add(
        Scores.from_confusion(np.array([[6, 0, 4], [0, 10, 0], [0, 0, 5]]), NAMES, [0, 1], [2])
    )
    text = render(history_table(history))
    assert "mib" in text and "forgetting" in text and "avg all" in text
    assert "20.00" in text  # impervious surfaces: 80 % -> 60 %
    assert "car" in text
