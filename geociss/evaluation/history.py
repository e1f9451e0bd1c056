"""Scores after every incremental step, forgetting and PLOP's "avg".

Channels are appended step after step (:mod:`geociss.models.classifier`), so a channel id means
the same class in every record of a history: each record's channel names must extend the
previous record's.

* **forgetting** of a class learned before the last step = (best IoU at any earlier evaluation
  where the class had a defined IoU) − (IoU after the last step). Positive means forgotten.
  Undefined (None) when either side is undefined (e.g. the class is absent from the test set).
* **avg_all** = mean over steps of the "all" mIoU after each step (PLOP's "avg"); steps whose
  "all" mIoU is undefined are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geociss.evaluation.scores import SCHEMA_VERSION, Scores


@dataclass(frozen=True)
class StepRecord:
    """The evaluation after one step.

    Attributes:
        step: step index (0 = base step).
        classes: channels learned at this step.
        scores: scores of the model after this step, over its channels.
    """

    step: int
    classes: tuple[int, ...]
    scores: Scores

    @property
    def class_names(self) -> list[str]:
        """Names of the channels learned at this step."""
        return [self.scores.channel_names[c] for c in self.classes]


@dataclass
class StepHistory:
    """Per-step scores of one incremental run.

    Args:
        method: name of the CISS method (``"mib"``, ``"idec"``, ...), for reports.
        records: the per-step records, in step order (use :meth:`add`).
    """

    method: str = ""
    records: list[StepRecord] = field(default_factory=list)

    def add(
        self, scores: Scores, classes: Sequence[int] | None = None, step: int | None = None
    ) -> StepRecord:
        """Append the scores of the next step.

        Args:
            scores: evaluation of the model after the step.
            classes: channels learned at this step; default: the channels this record has beyond
                the previous one (all channels for the first record).
            step: step index; default: one more than the previous record's (0 for the first).

        Raises:
            ValueError: steps not increasing, channel names not extending the previous record's,
                or classes outside the scores' channels.
        """
        prev = self.records[-1] if self.records else None
        step = (0 if prev is None else prev.step + 1) if step is None else int(step)
        if prev is not None:
            if step <= prev.step:
                raise ValueError(f"step {step} does not follow step {prev.step}")
            n_prev = prev.scores.num_channels
            if scores.channel_names[:n_prev] != prev.scores.channel_names:
                raise ValueError(
                    f"step {step} channels {list(scores.channel_names)} do not extend step "
                    f"{prev.step} channels {list(prev.scores.channel_names)}"
                )
        else:
            n_prev = 0
        chosen = (
            tuple(range(n_prev, scores.num_channels))
            if classes is None
            else tuple(int(c) for c in classes)
        )
        bad = [c for c in chosen if not 0 <= c < scores.num_channels]
        if bad:
            raise ValueError(f"step {step} classes {bad} outside 0..{scores.num_channels - 1}")
        record = StepRecord(step=step, classes=chosen, scores=scores)
        self.records.append(record)
        return record

    @property
    def last(self) -> StepRecord:
        """The record of the last step.

        Raises:
            ValueError: the history is empty.
        """
        if not self.records:
            raise ValueError("the step history is empty")
        return self.records[-1]

    def forgetting(self) -> dict[int, float | None]:
        """Forgetting per channel learned before the last step; {} with fewer than 2 steps."""
        if len(self.records) < 2:
            return {}
        last = self.records[-1].scores
        out: dict[int, float | None] = {}
        for record in self.records[:-1]:
            for c in record.classes:
                earlier = [
                    float(r.scores.iou[c])
                    for r in self.records[:-1]
                    if c < r.scores.num_channels and not np.isnan(r.scores.iou[c])
                ]
                now = float(last.iou[c]) if c < last.num_channels else float("nan")
                out[c] = None if not earlier or np.isnan(now) else max(earlier) - now
        return dict(sorted(out.items()))

    def mean_forgetting(self) -> float | None:
        """Mean of the defined per-class forgetting values, or None."""
        values = [v for v in self.forgetting().values() if v is not None]
        return float(np.mean(values)) if values else None

    def avg_all(self) -> float | None:
        """Mean over steps of the "all" mIoU (PLOP's "avg"), or None when no step has one."""
        values = [r.scores.miou_all for r in self.records if r.scores.miou_all is not None]
        return float(np.mean(values)) if values else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (no NaN); :meth:`from_dict` inverts it."""
        names = self.records[-1].scores.channel_names if self.records else ()
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "step_history",
            "method": self.method,
            "avg_all": self.avg_all(),
            "mean_forgetting": self.mean_forgetting(),
            "forgetting": [
                {"id": c, "name": names[c], "forgetting": v} for c, v in self.forgetting().items()
            ],
            "steps": [
                {
                    "step": r.step,
                    "classes": list(r.classes),
                    "class_names": r.class_names,
                    "scores": r.scores.to_dict(),
                }
                for r in self.records
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepHistory:
        """Rebuild a history from :meth:`to_dict` output.

        Raises:
            ValueError: the dict is not a step history of a known schema version.
        """
        if not isinstance(data, dict) or data.get("kind") != "step_history":
            raise ValueError("not a step history record")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"step history schema_version {data.get('schema_version')!r}, "
                f"expected {SCHEMA_VERSION}"
            )
        history = cls(method=str(data.get("method", "")))
        try:
            for entry in data["steps"]:
                history.add(
                    Scores.from_dict(entry["scores"]), classes=entry["classes"], step=entry["step"]
                )
        except (KeyError, TypeError) as err:
            raise ValueError(f"malformed step history: missing or wrong field {err}") from None
        return history
