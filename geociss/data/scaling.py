"""How raw band values are scaled before the network: the record a bundle keeps of it.

Every reader hands raw band values to :func:`geociss.data.normalise.normalise`, which computes
``(clip(x, low, high) - mean) / std`` per band. ``data.normalization`` decides the numbers:

* ``bands`` (default): ``mean``/``std`` of the training tiles' valid pixels;
* ``imagenet``: the ImageNet mean/std (× 255) for 8-bit RGB in the first three bands;
* ``fixed``: ``x' = (x - offset) / scale`` with ``data.offset``/``data.scale`` (e.g. scale 10000
  for reflectance) and no statistics: ``mean`` is the offset and ``std`` the scale.

``data.clip_percentiles: [low, high]`` adds per-band clip bounds, the percentiles of the training
tiles' valid pixels, applied before the scaling (with ``bands``, the statistics are those of the
clipped values). :class:`Scaling` records the choice and the bounds in the bundle; ``evaluate``,
``extend`` and ``predict`` use the bundle's numbers, never new statistics. A bundle without the
record (older geociss) is scaled by its mean/std alone, as before.

The record also keeps the training nodata value (``data.nodata``, or the nodata tag that every
training tile shares): ``evaluate``, ``extend`` and ``predict`` apply it to an input whose file
has no nodata tag when ``--nodata`` is not given. A record without it (older geociss) means
none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from geociss.data.records import TileRecord, Window

Clip = tuple[list[float], list[float]]
"""Per-band ``(low, high)`` clip bounds in raw band values."""

SAMPLE_WINDOW = 256
"""Side of the windows read per tile for the clip percentiles."""
SAMPLE_WINDOWS_PER_TILE = 16
"""At most this many windows per training tile (spread over the tile) feed the percentiles."""


@dataclass(frozen=True)
class Scaling:
    """The input scaling of a model, as stored in its bundle.

    Attributes:
        method: ``bands``, ``imagenet`` or ``fixed`` (``data.normalization``).
        offset: per-band offset of ``fixed`` (None otherwise).
        scale: per-band scale of ``fixed`` (None otherwise).
        clip_percentiles: the ``[low, high]`` percentiles the bounds come from, or None.
        clip: per-band ``(low, high)`` bounds applied before scaling, or None.
        nodata: the nodata value of the training images (``data.nodata``, or the tag every
            training tile shares), used for inputs without a nodata tag; None: none.
    """

    method: str = "bands"
    offset: list[float] | None = None
    scale: list[float] | None = None
    clip_percentiles: list[float] | None = None
    clip: Clip | None = None
    nodata: float | None = None

    def check(self, bands: int) -> None:
        """Raise ValueError unless every per-band list has ``bands`` finite, ordered entries."""
        lists = {"offset": self.offset, "scale": self.scale}
        if self.clip is not None:
            lists.update({"clip low": self.clip[0], "clip high": self.clip[1]})
        for name, values in lists.items():
            if values is not None and len(values) != bands:
                raise ValueError(f"scaling {name} has {len(values)} entries for {bands} bands")
            if values is not None and not all(math.isfinite(v) for v in values):
                raise ValueError(f"scaling {name} holds a value that is not finite: {values}")
        if self.scale is not None and min(self.scale) <= 0:
            raise ValueError(f"scaling scale must be above 0, got {self.scale}")
        if self.clip is not None and any(lo > hi for lo, hi in zip(*self.clip, strict=True)):
            raise ValueError("scaling clip low bound above its high bound")
        if self.nodata is not None and not math.isfinite(self.nodata):
            raise ValueError(f"scaling nodata must be a finite number, got {self.nodata}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (the bundle's ``scaling`` metadata)."""
        return {
            "method": self.method,
            "offset": self.offset,
            "scale": self.scale,
            "clip_percentiles": self.clip_percentiles,
            "clip_low": None if self.clip is None else self.clip[0],
            "clip_high": None if self.clip is None else self.clip[1],
            "nodata": self.nodata,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Scaling | None:
        """Inverse of :meth:`to_dict`; None for None (a bundle written before scaling existed).

        A mapping without ``nodata`` (a bundle of an earlier geociss) has none.
        """
        if data is None:
            return None
        low, high = _floats(data.get("clip_low")), _floats(data.get("clip_high"))
        return cls(
            method=str(data.get("method", "bands")),
            offset=_floats(data.get("offset")),
            scale=_floats(data.get("scale")),
            clip_percentiles=_floats(data.get("clip_percentiles")),
            clip=None if low is None or high is None else (low, high),
            nodata=None if data.get("nodata") is None else float(data["nodata"]),
        )

    def describe(self) -> str:
        """One line for people: what scales the input."""
        parts = [self.method]
        if self.method == "fixed" and self.offset is not None and self.scale is not None:
            parts.append(f"(x - {_short(self.offset)}) / {_short(self.scale)}")
        if self.clip_percentiles is not None:
            low, high = self.clip_percentiles
            parts.append(f"clipped to percentiles {low:g}-{high:g}")
        if self.nodata is not None:
            parts.append(f"nodata {self.nodata:g} in files without a nodata tag")
        return ", ".join(parts)


def shared_nodata(records: Sequence[TileRecord]) -> float | None:
    """The nodata value every record shares (its tag or ``--nodata``), if finite; else None.

    None when a record has none, when two differ, or for NaN (NaN pixels are invalid anyway).
    """
    values = {r.nodata for r in records}
    if len(values) != 1:
        return None
    value = values.pop()
    return None if value is None or not math.isfinite(value) else float(value)


def with_nodata(scaling: Scaling | None, nodata: float | None) -> Scaling | None:
    """``scaling`` recording ``nodata`` when it records none (None: a plain ``bands`` record).

    ``extend`` keeps its input bundle's scaling, plus the new tiles' shared nodata value when
    the input bundle has none.
    """
    if nodata is None or (scaling is not None and scaling.nodata is not None):
        return scaling
    return replace(scaling or Scaling(), nodata=nodata)


def per_band(values: float | Sequence[float], bands: int, name: str) -> list[float]:
    """``values`` (one number or one per band) as one float per band.

    Raises:
        ValueError: a list of another length than ``bands``.
    """
    if isinstance(values, int | float):
        return [float(values)] * bands
    out = [float(v) for v in values]
    if len(out) == 1:
        return out * bands
    if len(out) != bands:
        raise ValueError(
            f"data.{name} has {len(out)} values for {bands} band(s); give one or {bands}"
        )
    return out


def sample_windows(tile: int, record: TileRecord) -> list[Window]:
    """Up to :data:`SAMPLE_WINDOWS_PER_TILE` windows spread over a tile (the whole small tile)."""
    size = SAMPLE_WINDOW
    rows = _starts(record.height, size)
    cols = _starts(record.width, size)
    cells = [(r, c) for r in rows for c in cols]
    step = max(1, math.ceil(len(cells) / SAMPLE_WINDOWS_PER_TILE))
    return [
        Window(tile, r, c, min(size, record.height - r), min(size, record.width - c))
        for r, c in cells[::step]
    ]


def clipped_statistics(
    samples: np.ndarray, percentiles: Sequence[float]
) -> tuple[Clip, list[float], list[float]]:
    """Clip bounds and the mean/std of the clipped values of ``samples`` ``(C, N)``.

    The bounds are the ``percentiles`` of each band; the standard deviation is floored at 1e-6.

    Raises:
        ValueError: no sample.
    """
    if samples.shape[1] == 0:
        raise ValueError("no valid pixels to compute clip percentiles from")
    low, high = np.percentile(samples.astype(np.float64), list(percentiles), axis=1)
    clipped = np.clip(samples, low[:, None], high[:, None])
    std = np.maximum(clipped.std(axis=1, dtype=np.float64), 1e-6)
    return (low.tolist(), high.tolist()), clipped.mean(axis=1).tolist(), std.tolist()


def _starts(length: int, size: int) -> list[int]:
    return list(range(0, max(1, length - size + 1), size)) or [0]


def _floats(values: Any) -> list[float] | None:
    return None if values is None else [float(v) for v in values]


def _short(values: list[float]) -> str:
    return (
        f"{values[0]:g}"
        if len(set(values)) == 1
        else "[" + ", ".join(f"{v:g}" for v in values) + "]"
    )


__all__ = [
    "Clip",
    "Scaling",
    "clipped_statistics",
    "per_band",
    "sample_windows",
    "shared_nodata",
    "with_nodata",
]
