"""Per-class scores and old / new / all mIoU from a confusion matrix.

Conventions (the papers differ on each), each chosen by the caller:

* **Channels.** Rows and columns of the confusion matrix are model channels (ground truth in
  rows). The caller passes which channels are *old* and which are *new*.
* **old** = the channels of step 0, *including* the background channel. This is the VOC / MiB /
  PLOP / DKD convention, where the "0-15" and "1-15" columns of the papers are the same number.
  For ISPRS as in IDEC, channel 0 is impervious surfaces, a real class that only plays
  background during training, so it belongs in "old" naturally and "all" is the mean over the
  learned classes (clutter is ignored at test time and is no channel).
* **new** = the channels added in steps 1..t.
* **all** = old ∪ new. Passing the step-0 channels as old and every later channel as new makes it
  every channel of the model; a channel in neither (e.g. an ADE-style "other" channel that is
  never evaluated) is still reported per class but kept out of every mean.
* **Absent classes** (``absent=``). IoU = TP / (TP + FP + FN). A class absent from the ground
  truth but predicted somewhere has IoU 0 (its false positives are real errors). A class absent
  from the ground truth *and* never predicted has an undefined IoU (0 / 0):

  - ``"exclude"`` (default): left out of the means and reported as null. A subset that is small
    on one tile should not be dragged to 0 by classes that simply are not there.
  - ``"zero"``: counted as 0 in the means and reported as 0 (DKD's ``nan_to_num``), for parity
    with numbers computed that way.
  - ``"gt-only"``: means over the classes present in the ground truth only (MiB / PLOP's
    ``gt_sum != 0``); a class absent from the ground truth but predicted keeps IoU 0 in the
    per-class list but is left out of the means.

* **hIoU** = harmonic mean of old and new mIoU (DKD); undefined when either is.
* Scores are fractions in ``[0, 1]``; tables and plots show percent. Undefined values are NaN in
  the arrays and ``None`` (JSON null) in :meth:`Scores.to_dict`, never NaN in JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

AbsentRule = Literal["exclude", "zero", "gt-only"]
"""How a class absent from the ground truth enters the means (see the module docstring)."""

SCHEMA_VERSION = 1


def as_optional_float(value: float | np.floating | None) -> float | None:
    """Return ``value`` as a Python float, or None when it is None or NaN (JSON-safe)."""
    if value is None:
        return None
    v = float(value)
    return None if np.isnan(v) else v


def _check_channels(name: str, channels: Sequence[int], num: int) -> tuple[int, ...]:
    out = tuple(int(c) for c in channels)
    bad = [c for c in out if not 0 <= c < num]
    if bad:
        raise ValueError(f"{name} {bad} outside 0..{num - 1}")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} has duplicates: {list(out)}")
    return out


def _check_confusion(cm: Any) -> np.ndarray:
    arr = np.asarray(cm)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(
            f"confusion matrix must be square (C, C) with C >= 1, got shape {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"confusion matrix must be numeric, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr != np.round(arr)):
        raise ValueError("confusion matrix must hold non-negative integer counts")
    return arr.astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


@dataclass(frozen=True, eq=False)
class Scores:
    """Per-channel and summary scores of one evaluation. Build with :meth:`from_confusion`.

    Attributes:
        confusion: ``(C, C)`` int64 counts, ground truth in rows, prediction in columns.
        channel_names: name of each channel.
        old_channels: channels of step 0 (background included).
        new_channels: channels added in later steps.
        channel_steps: step at which each channel was learned, or None when unknown.
        absent: the absent-class rule used (module docstring).
        iou: per-channel IoU; NaN where undefined (or 0 under ``"zero"``).
        precision: TP / predicted pixels per channel; NaN where nothing was predicted.
        recall: TP / ground-truth pixels per channel; NaN where the class is absent.
        gt_pixels: ground-truth pixels per channel.
        pred_pixels: predicted pixels per channel.
        in_mean: whether each channel's IoU enters the means.
        pixel_accuracy: correct / evaluated pixels, None when nothing was evaluated.
        miou_old: mean IoU over ``old_channels`` (None when no channel counts).
        miou_new: mean IoU over ``new_channels``.
        miou_all: mean IoU over old ∪ new.
        hiou: harmonic mean of ``miou_old`` and ``miou_new``.
    """

    confusion: np.ndarray
    channel_names: tuple[str, ...]
    old_channels: tuple[int, ...]
    new_channels: tuple[int, ...]
    channel_steps: tuple[int | None, ...]
    absent: AbsentRule
    iou: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    gt_pixels: np.ndarray
    pred_pixels: np.ndarray
    in_mean: np.ndarray
    pixel_accuracy: float | None
    miou_old: float | None
    miou_new: float | None
    miou_all: float | None
    hiou: float | None

    @classmethod
    def from_confusion(
        cls,
        cm: np.ndarray | Sequence[Sequence[int]],
        channel_names: Sequence[str],
        old_channels: Sequence[int],
        new_channels: Sequence[int] = (),
        absent: AbsentRule = "exclude",
        channel_steps: Sequence[int | None] | None = None,
    ) -> Scores:
        """Compute the scores of a confusion matrix.

        Args:
            cm: ``(C, C)`` counts, rows = ground truth, columns = prediction.
            channel_names: ``C`` names.
            old_channels: channels of step 0, background included.
            new_channels: channels learned in steps 1..t (disjoint from ``old_channels``).
            absent: ``"exclude"``, ``"zero"`` or ``"gt-only"`` (module docstring).
            channel_steps: step learned per channel; default 0 for old channels, None otherwise.

        Raises:
            ValueError: inconsistent sizes, channels out of range or overlapping, bad rule.
        """
        conf = _check_confusion(cm)
        c = conf.shape[0]
        names = tuple(str(n) for n in channel_names)
        if len(names) != c:
            raise ValueError(f"{len(names)} channel names for a {c}x{c} confusion matrix")
        old = _check_channels("old_channels", old_channels, c)
        new = _check_channels("new_channels", new_channels, c)
        both = sorted(set(old) & set(new))
        if both:
            raise ValueError(f"channels {both} are both old and new")
        if absent not in get_args(AbsentRule):
            raise ValueError(
                f"absent must be one of {', '.join(get_args(AbsentRule))}, got {absent!r}"
            )
        if channel_steps is None:
            steps: tuple[int | None, ...] = tuple(0 if i in old else None for i in range(c))
        else:
            steps = tuple(None if s is None else int(s) for s in channel_steps)
            if len(steps) != c:
                raise ValueError(f"{len(steps)} channel steps for {c} channels")

        tp = np.diag(conf).astype(np.float64)
        gt = conf.sum(axis=1)
        pred = conf.sum(axis=0)
        iou = _ratio(tp, (gt + pred).astype(np.float64) - tp)
        if absent == "zero":
            iou = np.nan_to_num(iou, nan=0.0)
            in_mean = np.ones(c, dtype=bool)
        elif absent == "gt-only":
            in_mean = gt > 0
        else:
            in_mean = ~np.isnan(iou)
        total = int(gt.sum())
        m_old = _subset_mean(iou, in_mean, old)
        m_new = _subset_mean(iou, in_mean, new)
        return cls(
            confusion=conf,
            channel_names=names,
            old_channels=old,
            new_channels=new,
            channel_steps=steps,
            absent=absent,
            iou=iou,
            precision=_ratio(tp, pred.astype(np.float64)),
            recall=_ratio(tp, gt.astype(np.float64)),
            gt_pixels=gt,
            pred_pixels=pred,
            in_mean=in_mean,
            pixel_accuracy=float(tp.sum() / total) if total else None,
            miou_old=m_old,
            miou_new=m_new,
            miou_all=_subset_mean(iou, in_mean, old + new),
            hiou=harmonic_mean(m_old, m_new),
        )

    @property
    def num_channels(self) -> int:
        """Number of channels ``C``."""
        return len(self.channel_names)

    @property
    def all_channels(self) -> tuple[int, ...]:
        """Old and new channels, sorted."""
        return tuple(sorted(self.old_channels + self.new_channels))

    def group(self, channel: int) -> Literal["old", "new"] | None:
        """Return ``"old"``, ``"new"`` or None (evaluated in neither) for a channel."""
        if channel in self.old_channels:
            return "old"
        return "new" if channel in self.new_channels else None

    def miou(self, channels: Sequence[int]) -> float | None:
        """Mean IoU over any channel subset, with this object's absent-class rule.

        Useful for class ranges other than old / new (e.g. IDEC's "1-2 | 3-5" columns).
        """
        return _subset_mean(
            self.iou, self.in_mean, _check_channels("channels", channels, self.num_channels)
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (no NaN: undefined values are None); :meth:`from_dict` inverts it."""
        channels = [
            {
                "id": i,
                "name": self.channel_names[i],
                "step": self.channel_steps[i],
                "group": self.group(i),
                "iou": as_optional_float(self.iou[i]),
                "precision": as_optional_float(self.precision[i]),
                "recall": as_optional_float(self.recall[i]),
                "gt_pixels": int(self.gt_pixels[i]),
                "pred_pixels": int(self.pred_pixels[i]),
                "in_mean": bool(self.in_mean[i]),
            }
            for i in range(self.num_channels)
        ]
        return {
            "schema_version": SCHEMA_VERSION,
            "absent": self.absent,
            "old_channels": list(self.old_channels),
            "new_channels": list(self.new_channels),
            "miou": {"old": self.miou_old, "new": self.miou_new, "all": self.miou_all},
            "hiou": self.hiou,
            "pixel_accuracy": self.pixel_accuracy,
            "channels": channels,
            "confusion": self.confusion.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scores:
        """Rebuild scores from :meth:`to_dict` output (recomputed from the confusion matrix).

        Raises:
            ValueError: the dict is not a scores record of a known schema version.
        """
        if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"not a scores record of schema_version {SCHEMA_VERSION}")
        try:
            channels = data["channels"]
            return cls.from_confusion(
                np.asarray(data["confusion"]),
                [ch["name"] for ch in channels],
                data["old_channels"],
                data["new_channels"],
                absent=data["absent"],
                channel_steps=[ch["step"] for ch in channels],
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"malformed scores record: missing or wrong field {err}") from None


def _subset_mean(iou: np.ndarray, in_mean: np.ndarray, channels: Sequence[int]) -> float | None:
    idx = [c for c in channels if in_mean[c]]
    if not idx:
        return None
    return as_optional_float(float(np.mean(iou[idx])))


def harmonic_mean(a: float | None, b: float | None) -> float | None:
    """Harmonic mean of two scores (DKD's hIoU); None if either is None, 0 if both are 0."""
    if a is None or b is None:
        return None
    return 0.0 if a + b == 0 else 2.0 * a * b / (a + b)
