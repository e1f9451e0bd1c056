"""Evaluation: confusion accumulation, IoU and old/new/all mIoU, step history, reports and plots.

Exports are lazy (PEP 562): ``from geociss.evaluation import Scores`` imports numpy only; torch
and torchmetrics load with :class:`ConfusionAccumulator`, rich with the tables, matplotlib inside
the plot functions.

Typical use::

    acc = ConfusionAccumulator(num_classes=5, device="cuda")
    for batch in loader:
        acc.update(model(batch["image"]).argmax(1), batch["mask"])
    scores = Scores.from_confusion(acc.compute(), names, old_channels=[0, 1, 2, 3],
                                   new_channels=[4])
    write_scores_json("metrics.json", scores)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ConfusionAccumulator": "confusion",
    "AbsentRule": "scores",
    "Scores": "scores",
    "harmonic_mean": "scores",
    "StepHistory": "history",
    "StepRecord": "history",
    "write_scores_json": "report",
    "read_scores_json": "report",
    "write_scores_csv": "report",
    "scores_table": "report",
    "history_table": "report",
    "retention_table": "report",
    "Retention": "retention",
    "plot_history": "plots",
    "plot_confusion": "plots",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
