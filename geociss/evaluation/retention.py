"""Retention of the old classes after an incremental step, measured without old labels.

After a step that adds classes, the user usually has no labels of the old classes any more, so
their IoU cannot be computed. What can be computed on the new (held-out) images is how far the
extended model (the *student*) still agrees with the model it was extended from (the frozen
*teacher*) on the old classes. On every scored pixel that is **not labelled with a new class**
(and not ignored), both models predict a class; the counts form an agreement matrix ``A``
(rows: the teacher's old channel, columns: the student's channel, old and new). For each old
class ``c``:

* **kept** = ``A[c, c] / Σ_j A[c, j]``: the share of the pixels the teacher calls ``c`` that
  the student still calls ``c``;
* **to new** = the share of them the student gives to a new class (the new class absorbed
  them);
* **area change** = ``Σ_i A[i, c] / Σ_j A[c, j] − 1``: how much the area predicted as ``c``
  grew or shrank on the same pixels.

What it can and cannot tell. It measures *agreement with the teacher*, not accuracy: where the
teacher was wrong, a student that corrects it loses "kept"; a class the teacher never predicts
on the new images has no teacher pixels and no score. New-class pixels are left out because
taking them from an old class is the step's purpose. A low "kept" is a strong sign of
forgetting (the student's old-class map moved away from a model that was scored when it was
trained); a high one is necessary, not sufficient, for keeping the old IoU. The benchmark
reports how well it tracks the real per-class IoU change where all labels are known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_THRESHOLD = 0.5
"""A class that keeps less than this share of its teacher pixels is reported as collapsing."""

BACKGROUND_HINT = (
    "; it plays background, and the distillation lets new classes take whatever the previous "
    "model called background: if it is a real class, declare no background class "
    "(background: null in the class schema) and train again from step 0 (README: "
    "'When the background is a real class')"
)
"""Added to the warning of a collapsing class that plays background."""


@dataclass(frozen=True)
class ClassRetention:
    """Retention of one old class (see the module docstring for the definitions).

    Attributes:
        name: class (channel) name.
        teacher_pixels: pixels the teacher assigns to the class.
        student_pixels: pixels of those same scored pixels the student assigns to it.
        kept: share of the teacher's pixels the student still assigns to it (None: no pixels).
        to_new: share of the teacher's pixels the student assigns to a new class.
        area_change: relative change of the predicted area, ``student / teacher − 1``.
    """

    name: str
    teacher_pixels: int
    student_pixels: int
    kept: float | None
    to_new: float | None
    area_change: float | None


@dataclass
class Retention:
    """Per-class retention of one incremental step.

    Attributes:
        classes: one entry per old channel, in channel order.
        pixels: scored pixels (not labelled new, not ignored).
        threshold: ``kept`` below which a class counts as collapsing.
        scope: where it was measured (e.g. ``"held-out tiles (2)"``).
        background: name of the real class that plays background (channel 0), None when the
            background channel is implicit; its warning says what to do about it.
    """

    classes: list[ClassRetention]
    pixels: int
    threshold: float = DEFAULT_THRESHOLD
    scope: str = ""
    background: str | None = None

    @classmethod
    def from_agreement(
        cls,
        agreement: np.ndarray,
        names: Sequence[str],
        threshold: float = DEFAULT_THRESHOLD,
        scope: str = "",
        background: str | None = None,
    ) -> Retention:
        """Retention from an agreement matrix ``(old channels, all channels)`` of pixel counts.

        Raises:
            ValueError: the matrix has more rows than columns or names do not match its rows.
        """
        a = np.asarray(agreement, dtype=np.int64)
        n_old, n_all = a.shape
        if n_old > n_all or len(names) != n_old:
            raise ValueError(f"agreement matrix {a.shape} does not fit {len(names)} old classes")
        rows = a.sum(axis=1)
        cols = a[:, :n_old].sum(axis=0)
        out = []
        for c, name in enumerate(names):
            t = int(rows[c])
            out.append(
                ClassRetention(
                    name=str(name),
                    teacher_pixels=t,
                    student_pixels=int(cols[c]),
                    kept=float(a[c, c] / t) if t else None,
                    to_new=float(a[c, n_old:].sum() / t) if t else None,
                    area_change=float(cols[c] / t - 1.0) if t else None,
                )
            )
        return cls(out, int(a.sum()), float(threshold), scope, background)

    def collapsing(self) -> list[ClassRetention]:
        """Classes that keep less than ``threshold`` of their teacher pixels."""
        return [c for c in self.classes if c.kept is not None and c.kept < self.threshold]

    def warnings(self) -> list[str]:
        """One line per collapsing class, saying where its pixels went."""
        lines = []
        for c in self.collapsing():
            kept, moved, area = (100 * (v or 0.0) for v in (c.kept, c.to_new, c.area_change))
            lines.append(
                f"old class {c.name!r} keeps {kept:.0f} % of the pixels the previous model gave "
                f"it (below {100 * self.threshold:.0f} %; {moved:.0f} % went to the new classes, "
                f"predicted area {area:+.0f} %)"
                + (BACKGROUND_HINT if c.name == self.background else "")
            )
        return lines

    def lines(self) -> list[str]:
        """A plain-text table (for logs): class, teacher pixels, kept, to new, area change."""
        head = f"{'old class':<24} {'teacher px':>11} {'kept':>7} {'to new':>7} {'area':>7}"
        out = [head]
        for c in self.classes:
            out.append(
                f"{c.name[:24]:<24} {c.teacher_pixels:>11} {_pct(c.kept):>7} "
                f"{_pct(c.to_new):>7} {_signed(c.area_change):>7}"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in a bundle's step record)."""
        return {
            "classes": [asdict(c) for c in self.classes],
            "pixels": self.pixels,
            "threshold": self.threshold,
            "scope": self.scope,
            "background": self.background,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Retention:
        """Inverse of :meth:`to_dict`."""
        return cls(
            [ClassRetention(**c) for c in data.get("classes", [])],
            int(data.get("pixels", 0)),
            float(data.get("threshold", DEFAULT_THRESHOLD)),
            str(data.get("scope", "")),
            data.get("background"),
        )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.0f}%"


__all__ = ["DEFAULT_THRESHOLD", "ClassRetention", "Retention"]
