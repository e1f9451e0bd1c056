"""Accumulators filled band by band while a tile is scanned: class histograms and band moments."""

from __future__ import annotations

import numpy as np

from geociss.data.classes import IGNORE_INDEX
from geociss.data.records import BandStats, Region, Window


class Histograms:
    """Class counts of the whole tile and of each chip region, filled band by band."""

    def __init__(self, height: int, width: int, chip: int | None) -> None:
        self.rows = chip_spans(height, chip) if chip else [(0, height)]
        self.cols = chip_spans(width, chip) if chip else [(0, width)]
        self.chipped = chip is not None
        self.total = np.zeros(256, dtype=np.int64)
        self.chips = np.zeros((len(self.rows), len(self.cols), 256), dtype=np.int64)

    def add(self, ids: np.ndarray, r0: int) -> None:
        """Count the class ids of rows ``r0 .. r0 + len(ids)`` (all columns, 255 = ignore)."""
        self.total += np.bincount(ids.ravel(), minlength=256)
        if not self.chipped:
            return
        r1 = r0 + ids.shape[0]
        for i, (start, size) in enumerate(self.rows):
            lo, hi = max(start, r0), min(start + size, r1)
            if lo >= hi:
                continue
            for j, (c0, w) in enumerate(self.cols):
                block = ids[lo - r0 : hi - r0, c0 : c0 + w]
                self.chips[i, j] += np.bincount(block.ravel(), minlength=256)

    def regions(self, n: int) -> list[Region]:
        """The chip regions (or the whole tile) with the first ``n`` class counts."""
        if not self.chipped:
            counts = self.total
            win = Window(0, 0, 0, self.rows[0][1], self.cols[0][1])
            return [Region(win, counts[:n].copy(), int(counts[IGNORE_INDEX]))]
        return [
            Region(Window(0, r, c, h, w), counts[:n].copy(), int(counts[IGNORE_INDEX]))
            for i, (r, h) in enumerate(self.rows)
            for j, (c, w) in enumerate(self.cols)
            for counts in [self.chips[i, j]]
        ]


def chip_spans(length: int, chip: int) -> list[tuple[int, int]]:
    """``(start, size)`` of the chips along one axis: an integer grid, the last chip clamped inside.

    A raster shorter than a chip gives one span covering it.
    """
    if length <= chip:
        return [(0, length)]
    n = -(-length // chip)
    return [(min(i * chip, length - chip), chip) for i in range(n)]


class Moments:
    """Per-band count, sum, sum of squares, min and max over valid pixels (float64)."""

    def __init__(self, bands: int) -> None:
        self.count = 0
        self.sum = np.zeros(bands)
        self.sumsq = np.zeros(bands)
        self.min = np.full(bands, np.inf)
        self.max = np.full(bands, -np.inf)

    def add(self, data: np.ndarray, valid: np.ndarray | None) -> None:
        """Add (bands, rows, cols) values where ``valid`` (None: everywhere)."""
        for b in range(data.shape[0]):
            values = data[b].ravel() if valid is None else data[b][valid]
            if values.size == 0:
                return
            if values.dtype in (np.uint8, np.uint16):
                counts = np.bincount(values)
                levels = np.arange(counts.size, dtype=np.float64)
                present = np.flatnonzero(counts)
                s, ss = counts @ levels, counts @ (levels * levels)
                lo, hi = float(present[0]), float(present[-1])
            else:
                v = values.astype(np.float64)
                s, ss, lo, hi = v.sum(), v @ v, v.min(), v.max()
            self.sum[b] += s
            self.sumsq[b] += ss
            self.min[b] = min(self.min[b], lo)
            self.max[b] = max(self.max[b], hi)
            if b == 0:
                self.count += values.size

    def stats(self) -> BandStats:
        """The statistics so far (zeros when no pixel was valid)."""
        if self.count == 0:
            zero = tuple(0.0 for _ in self.sum)
            return BandStats(0, zero, zero, zero, zero)
        return BandStats(
            self.count, tuple(self.sum.tolist()), tuple(self.sumsq.tolist()),
            tuple(self.min.tolist()), tuple(self.max.tolist()),
        )
