"""Write scores as JSON and CSV, read them back, and show them as rich tables.

Files are written atomically (never half-written). JSON never holds NaN: undefined scores are
null. Scores are fractions in files and percent in tables.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table
from rich.text import Text

from geociss.data.classes import RGB, color_hex, parse_color
from geociss.errors import DataError
from geociss.evaluation.history import StepHistory
from geociss.evaluation.retention import Retention
from geociss.evaluation.scores import Scores
from geociss.io import atomic_write_text

Colour = str | RGB
"""A display colour: ``'#rrggbb'`` or an ``(r, g, b)`` tuple."""

CSV_COLUMNS = (
    "id",
    "name",
    "step_learned",
    "group",
    "iou",
    "precision",
    "recall",
    "gt_pixels",
    "pred_pixels",
)


def write_scores_json(path: str | Path, result: Scores | StepHistory) -> None:
    """Write scores or a step history as indented JSON (atomically, no NaN)."""
    text = json.dumps(result.to_dict(), indent=2, allow_nan=False)
    atomic_write_text(path, text + "\n")


def read_scores_json(path: str | Path) -> Scores | StepHistory:
    """Read a file written by :func:`write_scores_json`.

    Raises:
        DataError: the file is missing, not JSON, or not a scores / step-history record.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(path, f"not a readable JSON file ({err})") from None
    try:
        if isinstance(data, dict) and data.get("kind") == "step_history":
            return StepHistory.from_dict(data)
        return Scores.from_dict(data)
    except ValueError as err:
        raise DataError(path, str(err)) from None


def _cell(value: float | int | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def _csv_rows(scores: Scores) -> list[list[str]]:
    d = scores.to_dict()
    rows = [
        [
            _cell(ch[k])
            for k in (
                "id",
                "name",
                "step",
                "group",
                "iou",
                "precision",
                "recall",
                "gt_pixels",
                "pred_pixels",
            )
        ]
        for ch in d["channels"]
    ]
    for name, value in (
        ("old", scores.miou_old),
        ("new", scores.miou_new),
        ("all", scores.miou_all),
        ("hiou", scores.hiou),
        ("pixel_accuracy", scores.pixel_accuracy),
    ):
        rows.append(["", name, "", "summary", _cell(value), "", "", "", ""])
    return rows


def write_scores_csv(path: str | Path, result: Scores | StepHistory) -> None:
    """Write one row per class plus summary rows (old, new, all, hiou, pixel_accuracy).

    Columns: ``id, name, step_learned, group, iou, precision, recall, gt_pixels, pred_pixels``;
    summary rows have an empty id, group ``summary`` and their value in ``iou``. A step history
    gets a leading ``eval_step`` column and one block of rows per step. Undefined values are empty.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if isinstance(result, StepHistory):
        writer.writerow(("eval_step", *CSV_COLUMNS))
        for record in result.records:
            writer.writerows([str(record.step), *row] for row in _csv_rows(record.scores))
    else:
        writer.writerow(CSV_COLUMNS)
        writer.writerows(_csv_rows(result))
    atomic_write_text(path, buf.getvalue())


def _pct(value: float | None) -> str:
    return "-" if value is None or value != value else f"{100.0 * value:.2f}"


def _class_label(name: str, colour: Colour | None) -> Text:
    """A coloured swatch then the name (a light colour as text would vanish on light terminals)."""
    if colour is None:
        return Text(name)
    return Text.assemble(("■ ", color_hex(parse_color(colour))), name)


def _colour(colors: Sequence[Colour] | None, i: int) -> Colour | None:
    return colors[i] if colors is not None and i < len(colors) else None


def scores_table(
    scores: Scores,
    colors: Sequence[Colour] | None = None,
    title: str | None = None,
    vs_rest: bool = False,
) -> Table:
    """Per-class IoU, precision and recall (percent), old classes first, then new, then a summary.

    Args:
        scores: the scores to show.
        colors: display colour per channel (optional).
        title: table title.
        vs_rest: the scores are new classes against everything else (``extend``): the summary
            names them so and leaves out the old and all-class means, which were not measured.
    """
    table = Table(title=title, caption=f"absent classes: {scores.absent}")
    for col, justify in (
        ("id", "right"),
        ("class", "left"),
        ("group", "left"),
        ("step", "right"),
        ("IoU %", "right"),
        ("precision %", "right"),
        ("recall %", "right"),
        ("GT pixels", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    others = tuple(i for i in range(scores.num_channels) if scores.group(i) is None)
    for group, channels in (
        ("old", scores.old_channels),
        ("new", scores.new_channels),
        ("-", others),
    ):
        for i in sorted(channels):
            step = scores.channel_steps[i]
            iou = _pct(float(scores.iou[i])) + ("" if scores.in_mean[i] else "*")
            table.add_row(
                str(i),
                _class_label(scores.channel_names[i], _colour(colors, i)),
                group,
                "" if step is None else str(step),
                iou,
                _pct(float(scores.precision[i])),
                _pct(float(scores.recall[i])),
                f"{int(scores.gt_pixels[i]):,}",
            )
        if channels:
            table.add_section()
    summary = (
        [("mIoU new (each vs rest)", scores.miou_new), ("pixel accuracy", scores.pixel_accuracy)]
        if vs_rest
        else [
            ("mIoU old", scores.miou_old),
            ("mIoU new", scores.miou_new),
            ("mIoU all", scores.miou_all),
            ("hIoU", scores.hiou),
            ("pixel accuracy", scores.pixel_accuracy),
        ]
    )
    for name, value in summary:
        table.add_row(
            "", Text(name, style="bold"), "", "", Text(_pct(value), style="bold"), "", "", ""
        )
    if not scores.in_mean.all():
        table.caption = f"{table.caption}; * = not in the means"
    return table


def history_table(
    history: StepHistory, colors: Sequence[Colour] | None = None, title: str | None = None
) -> Table:
    """One row per step (classes added, per-class IoU, old/new/all/hIoU) plus forgetting and avg.

    Per-class columns are shown when the model has at most 12 channels.

    Args:
        history: the per-step scores.
        colors: display colour per channel (optional).
        title: table title (default: the method name).
    """
    table = Table(title=title if title is not None else (history.method or None))
    names = history.last.scores.channel_names if history.records else ()
    per_class = 0 < len(names) <= 12
    table.add_column("step", justify="right")
    table.add_column("added")
    if per_class:
        for i, name in enumerate(names):
            table.add_column(_class_label(name, _colour(colors, i)), justify="right")
    for col in ("old", "new", "all", "hIoU"):
        table.add_column(col, justify="right")
    for record in history.records:
        s = record.scores
        cells = (
            [_pct(float(s.iou[i])) if i < s.num_channels else "" for i in range(len(names))]
            if per_class
            else []
        )
        table.add_row(
            str(record.step),
            ", ".join(record.class_names),
            *cells,
            _pct(s.miou_old),
            _pct(s.miou_new),
            _pct(s.miou_all),
            _pct(s.hiou),
        )
    forgetting = history.forgetting()
    if per_class and forgetting:
        table.add_section()
        cells = [_pct(forgetting[i]) if i in forgetting else "" for i in range(len(names))]
        table.add_row(Text("forgetting", style="bold"), "", *cells, "", "", "", "")
    table.caption = (
        f"avg all (all mIoU averaged over the steps) = {_pct(history.avg_all())}, "
        f"mean forgetting = {_pct(history.mean_forgetting())} (percent points)"
    )
    return table


def retention_table(retention: Retention, title: str | None = None) -> Table:
    """Old-class retention of an incremental step (see :mod:`geociss.evaluation.retention`).

    Rows below the retention threshold are shown in red.
    """
    table = Table(
        title=title,
        caption=f"{retention.scope}; kept = share of the previous model's pixels of the class "
        "that the new model still gives it (agreement, not accuracy)",
    )
    for col in ("old class", "previous model px", "kept %", "to new %", "area change %"):
        table.add_column(col, justify="left" if col == "old class" else "right")
    low = {c.name for c in retention.collapsing()}
    for c in retention.classes:
        style = "red" if c.name in low else None
        table.add_row(
            c.name,
            f"{c.teacher_pixels:,}",
            _pct(c.kept),
            _pct(c.to_new),
            "-" if c.area_change is None else f"{100 * c.area_change:+.1f}",
            style=style,
        )
    return table
