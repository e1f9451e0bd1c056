"""What a bench row reads from a run's step records: per-class IoU and the retention pairs."""

from __future__ import annotations

from typing import Any

__all__ = ["per_class_iou", "retention_pairs"]


def per_class_iou(metrics: dict[str, Any]) -> dict[str, float | None]:
    """Class name → IoU of a step's stored metrics (the implicit background channel left out)."""
    return {
        str(c["name"]): c.get("iou")
        for c in metrics.get("channels", [])
        if c.get("name") != "background"
    }


def retention_pairs(bundle: Any) -> list[dict[str, Any]]:
    """Per incremental step and old class: the label-free ``kept`` share and the real IoUs.

    ``iou_before`` / ``iou_after`` are the class's IoU on the validation tiles after the
    previous step and after this one (from the step records of the run's final bundle).
    """
    from geociss.evaluation.retention import Retention

    out = []
    for t in range(1, len(bundle.steps)):
        stored = bundle.steps[t].info.get("retention")
        if not stored:
            continue
        before = per_class_iou(bundle.steps[t - 1].metrics)
        after = per_class_iou(bundle.steps[t].metrics)
        for c in Retention.from_dict(stored).classes:
            out.append(
                {
                    "step": t,
                    "class": c.name,
                    "kept": c.kept,
                    "teacher_pixels": c.teacher_pixels,
                    "iou_before": before.get(c.name),
                    "iou_after": after.get(c.name),
                }
            )
    return out
