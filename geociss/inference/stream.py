"""Stream one raster through the model: tiles in, finished row bands of uint8 outputs out.

Memory does not grow with the raster's height. A :class:`RowBandAccumulator`
holds the weighted probability sums of one tile height of rows: a ring of ``tile`` rows x the
columns being predicted, float32 ``K x tile x width`` plus a nodata flag per pixel, on the
predictor's device (on a GPU, blending and encoding run there and only uint8 rows come back).
Tiles arrive in row-major order; before a tile of a new tile row is added, every row above that
tile row's origin is final (no later tile touches it), so those rows are turned into the uint8
outputs (:func:`encode_rows`) and handed to the sink, and their ring rows are cleared for reuse.

Wide rasters are cut into column groups (:class:`Part` rectangles, see
:func:`geociss.inference.plan.plan_parts`); the tiles that straddle a group boundary are predicted
for both groups, so each group only needs its own width of buffer.

Determinism: batches are cut from the tile list of the whole column group (all tile rows), the
same way whatever row range a part covers. A part that starts lower (a resumed run, one rank of
several) predicts the whole first batch and discards the tiles it does not need, so every tile is
always predicted in the same batch and the output is byte-identical across resumes and ranks.

Per pixel the stream computes ``p = Σ w_t p_t / Σ w_t`` over the tiles ``t`` covering it (``w_t``
= blending weight; ``Σ w_t`` comes from the separable weights, not from a second accumulator),
then the class = argmax of ``p`` (255 where the pixel is nodata), optionally the confidence
``max p`` and the per-class probabilities, encoded as ``round(p * 254)`` with 255 = nodata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from geociss.data.classes import IGNORE_INDEX
from geociss.errors import DataError
from geociss.inference.grid import TileGrid
from geociss.inference.predictor import Predictor
from geociss.inference.source import TileBatch, TileDataset, collate_tiles

EMIT_ROWS = 64
"""Finished rows normalised and encoded at a time (bounds the temporaries to K x 64 x width)."""


@dataclass(frozen=True)
class Part:
    """A rectangle of the output that one stream writes: columns ``x0..x1``, rows ``y0..y1``."""

    x0: int
    x1: int
    y0: int
    y1: int

    @property
    def key(self) -> str:
        """A stable name, ``"x0:x1:y0:y1"`` (used in the resume sidecar)."""
        return f"{self.x0}:{self.x1}:{self.y0}:{self.y1}"


@dataclass
class StreamStats:
    """What a stream did.

    Attributes:
        tiles: tiles predicted and blended.
        skipped: tiles skipped because every pixel was nodata.
        extra: tiles predicted only to keep batches identical to a full run (then discarded).
    """

    tiles: int = 0
    skipped: int = 0
    extra: int = 0

    def __iadd__(self, other: StreamStats) -> StreamStats:
        self.tiles += other.tiles
        self.skipped += other.skipped
        self.extra += other.extra
        return self


class RowSink(Protocol):
    """Receives finished rows, top to bottom, without gaps."""

    def write(self, row: int, arrays: dict[str, np.ndarray]) -> None:
        """Take rows ``row .. row + n`` of each output (``(bands, n, width)`` uint8 arrays)."""


class RowBandAccumulator:
    """Weighted probability sums of a ring of ``rows`` raster rows over columns ``x0..x1``.

    Weight sums are never accumulated: validity is a property of the pixel (a pixel is invalid
    in every tile that covers it, or in none), and the blending weights are separable, so the
    total weight of a valid pixel is ``row_total[y] * col_total[x]``
    (:attr:`TileGrid.row_total`). The argmax needs no normalisation at all; only the
    confidence and probability outputs divide by the total. Invalid pixels are flagged in a
    boolean ring.

    Args:
        channels: probability channels K.
        rows: ring height (the tile height: a tile never spans more rows).
        x0: first column held.
        x1: end column held.
        row_total: total row weight of every raster row (float32, raster height).
        col_total: total column weight of the columns ``x0..x1`` (float32).
        device: where the buffers live (the predictor's device: on a GPU the blending runs
            there too, and only the uint8 outputs cross to the host).
    """

    def __init__(
        self, channels: int, rows: int, x0: int, x1: int, row_total: np.ndarray,
        col_total: np.ndarray, device: str | torch.device = "cpu",
    ) -> None:
        self.rows, self.x0 = rows, x0
        self.acc = torch.zeros(channels, rows, x1 - x0, device=device)
        self.invalid = torch.zeros(rows, x1 - x0, dtype=torch.bool, device=device)
        self._flagged = False  # any invalid pixel in the ring (else the mask is skipped)
        self.row_total = torch.from_numpy(row_total).to(device)
        self.col_total = torch.from_numpy(col_total).to(device)

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffers."""
        return self.acc.numel() * 4 + self.invalid.numel()

    def _segments(self, y0: int, y1: int) -> list[tuple[int, int, int]]:
        """Ring slices of rows ``y0..y1``: ``(ring start, ring stop, offset in the rows)``."""
        if y1 - y0 > self.rows:
            raise ValueError(f"rows {y0}..{y1} do not fit a ring of {self.rows} rows")
        start = y0 % self.rows
        first = min(y1 - y0, self.rows - start)
        segs = [(start, start + first, 0)]
        if first < y1 - y0:
            segs.append((0, y1 - y0 - first, first))
        return segs

    def add(self, row: int, col: int, probs: torch.Tensor, weight: torch.Tensor) -> None:
        """Add ``weight`` (h, w) x ``probs`` (K, >= h, >= w) to the tile at ``(row, col)``."""
        h, w = weight.shape
        c = col - self.x0
        for r0, r1, off in self._segments(row, row + h):
            rows = slice(off, off + r1 - r0)
            self.acc[:, r0:r1, c : c + w].addcmul_(probs[:, rows, :w], weight[rows])

    def mark_invalid(
        self, row: int, col: int, shape: tuple[int, int], invalid: torch.Tensor | None = None
    ) -> None:
        """Flag invalid pixels (bool (h, w); None: all) of the tile window at ``(row, col)``."""
        h, w = shape
        c = col - self.x0
        self._flagged = True
        for r0, r1, off in self._segments(row, row + h):
            if invalid is None:
                self.invalid[r0:r1, c : c + w] = True
            else:
                self.invalid[r0:r1, c : c + w] |= invalid[off : off + r1 - r0]

    def clear(self, y0: int, y1: int) -> None:
        """Drop rows ``y0..y1`` without encoding them (ring rows reset for reuse)."""
        if y1 <= y0:
            return
        for r0, r1, _ in self._segments(y0, y1):
            self.acc[:, r0:r1].zero_()
            if self._flagged:
                self.invalid[r0:r1].zero_()

    def finish(
        self, y0: int, y1: int, c0: int, c1: int, *, confidence: bool, probabilities: bool
    ) -> dict[str, np.ndarray]:
        """Encode rows ``y0..y1`` of buffer columns ``c0..c1`` (:func:`encode_rows`); clear them."""
        pieces: list[dict[str, np.ndarray]] = []
        for r0, r1, off in self._segments(y0, y1):
            norm = None
            if confidence or probabilities:
                rows = self.row_total[y0 + off : y0 + off + r1 - r0]
                cols = self.col_total[c0:c1]
                norm = torch.outer(rows, cols).reciprocal_()
            invalid = self.invalid[r0:r1, c0:c1] if self._flagged else None
            pieces.append(encode_rows(
                self.acc[:, r0:r1, c0:c1], invalid, norm,
                confidence=confidence, probabilities=probabilities,
            ))
            self.acc[:, r0:r1].zero_()
            if self._flagged:
                self.invalid[r0:r1].zero_()
        if len(pieces) == 1:
            return pieces[0]
        return {k: np.concatenate([p[k] for p in pieces], axis=1) for k in pieces[0]}


def encode_rows(
    scores: torch.Tensor, invalid: torch.Tensor | None, norm: torch.Tensor | None, *,
    confidence: bool, probabilities: bool,
) -> dict[str, np.ndarray]:
    """The uint8 outputs of finished rows (computed where ``scores`` is, returned on the host).

    Args:
        scores: float32 (K, n, w) weighted probability sums.
        invalid: bool (n, w): nodata pixels (None: none).
        norm: float32 (n, w) inverse total weights (probabilities = scores x norm); needed for
            the confidence and probability outputs.
        confidence: also return ``confidence`` (1, n, w): ``round(max p * 254)``.
        probabilities: also return ``probabilities`` (K, n, w): ``round(p * 254)``.

    Returns:
        ``{"classes": (1, n, w), ...}``: class = argmax (the first maximum); 255 where invalid.
    """
    top, index = scores.max(0)  # faster than argmax on dim 0
    classes = index.to(torch.uint8)
    if invalid is not None:
        classes[invalid] = IGNORE_INDEX
    out = {"classes": classes.cpu().numpy()[None]}
    if (confidence or probabilities) and norm is None:
        raise ValueError("confidence and probabilities need the inverse weight totals")
    if confidence and norm is not None:
        conf = top.mul_(norm).clamp_(0.0, 1.0).mul_(254.0).round_().to(torch.uint8)
        if invalid is not None:
            conf[invalid] = IGNORE_INDEX
        out["confidence"] = conf.cpu().numpy()[None]
    if probabilities and norm is not None:
        q = (scores * norm).clamp_(0.0, 1.0).mul_(254.0).round_().to(torch.uint8)
        if invalid is not None:
            q[:, invalid] = IGNORE_INDEX
        out["probabilities"] = q.cpu().numpy()
    return out


def plan_batches(grid: TileGrid, part: Part, batch_size: int) -> tuple[list[list[int]], set[int]]:
    """Batches (lists of tile indexes) for ``part`` and the tiles it needs.

    Batches are cut from the tiles of all tile rows of the part's column range, so they are
    the same for any row range (see the module docstring).
    """
    cols = grid.tile_cols_for(part.x0, part.x1)
    rows = grid.tile_rows_for(part.y0, part.y1)
    ncols = len(grid.cols)
    order = [i * ncols + j for i in range(len(grid.rows)) for j in cols]
    first, last = rows[0] * len(cols), (rows[-1] + 1) * len(cols) - 1
    batches = [
        order[c * batch_size : (c + 1) * batch_size]
        for c in range(first // batch_size, last // batch_size + 1)
    ]
    return batches, set(order[first : last + 1])


class _Weights:
    """The blending weight of each tile, built where the accumulator is.

    On a GPU from per-axis vectors kept there (no host-to-device copy per tile); on the CPU
    with numpy (``torch.outer`` is several times slower there).
    """

    def __init__(self, grid: TileGrid, device: torch.device) -> None:
        self.grid = grid
        self.cpu = device.type == "cpu"
        if not self.cpu:
            self.wy = [torch.from_numpy(grid.row_weight(i)).to(device)
                       for i in range(len(grid.rows))]
            self.wx = [torch.from_numpy(grid.col_weight(j)).to(device)
                       for j in range(len(grid.cols))]

    def __call__(self, index: int) -> torch.Tensor:
        i, j, _, _ = self.grid.origin(index)
        if self.cpu:
            return torch.from_numpy(self.grid.weight(i, j))
        return torch.outer(self.wy[i], self.wx[j])


class _PartStream:
    """The state of one part being streamed: accumulator, frontier and statistics."""

    def __init__(
        self, grid: TileGrid, part: Part, sink: RowSink, channels: int, device: torch.device,
        needed: set[int], outputs: dict[str, bool],
    ) -> None:
        cols = grid.tile_cols_for(part.x0, part.x1)
        self.left = grid.cols[cols[0]]
        right = grid.cols[cols[-1]] + grid.tile_w
        self.acc = RowBandAccumulator(channels, grid.tile_h, self.left, right, grid.row_total,
                                      grid.col_total[self.left : right], device)
        self.grid, self.part, self.sink = grid, part, sink
        self.needed, self.outputs = needed, outputs
        self.weights = _Weights(grid, device)
        self.frontier = grid.rows[grid.tile_rows_for(part.y0, part.y1)[0]]
        self.shape = (grid.tile_h, grid.tile_w)
        self.stats = StreamStats()

    def emit(self, y0: int, y1: int) -> None:
        """Encode and hand over finished rows ``y0..y1`` (those inside the part)."""
        p, acc = self.part, self.acc
        for a in range(y0, y1, EMIT_ROWS):  # chunks bound the temporaries
            b = min(a + EMIT_ROWS, y1)
            lo, hi = min(max(a, p.y0), b), max(min(b, p.y1), a)
            acc.clear(a, lo)  # rows outside the part (above a resume row or a rank's range)
            acc.clear(max(hi, lo), b)
            if lo < hi:
                self.sink.write(lo, acc.finish(lo, hi, p.x0 - self.left, p.x1 - self.left,
                                               **self.outputs))

    def feed(
        self, batch: TileBatch, probs: torch.Tensor | None, valid: torch.Tensor | None
    ) -> None:
        """Blend the tiles of one batch, in grid order, emitting rows as they are finished."""
        h, w = self.shape
        slot = {k: m for m, k in enumerate(batch.kept)}
        for k, tile in enumerate(batch.tiles):
            if tile.index not in self.needed:
                self.stats.extra += k in slot
                continue
            _, _, y, x = self.grid.origin(tile.index)
            if y > self.frontier:
                self.emit(self.frontier, y)
                self.frontier = y
            m = slot.get(k)
            if m is None or probs is None:
                self.acc.mark_invalid(y, x, self.shape)  # skipped: every pixel is nodata
                self.stats.skipped += 1
                continue
            self.acc.add(y, x, probs[m], self.weights(tile.index))
            if valid is not None and m in batch.masked:
                self.acc.mark_invalid(y, x, self.shape, ~valid[m, :h, :w])
            self.stats.tiles += 1


def stream_part(
    dataset: TileDataset,
    predictor: Predictor,
    part: Part,
    sink: RowSink,
    *,
    channels: int,
    batch_size: int,
    workers: int = 0,
    confidence: bool = False,
    probabilities: bool = False,
) -> StreamStats:
    """Predict the rows and columns of ``part`` and hand them to ``sink``, top to bottom.

    Args:
        dataset: the tiles of the raster.
        predictor: the forward pass.
        part: the output rectangle (``part.y0`` may be a resume row).
        sink: receives finished rows ``part.y0 .. part.y1`` of columns ``part.x0 .. part.x1``.
        channels: probability channels the predictor returns.
        batch_size: tiles per forward pass.
        workers: DataLoader worker processes reading tiles (0: read in this process).
        confidence: also encode the confidence output.
        probabilities: also encode the per-class probabilities.

    Raises:
        DataError: a tile cannot be read.
    """
    device = predictor.device
    batches, needed = plan_batches(dataset.grid, part, batch_size)
    outputs = {"confidence": confidence, "probabilities": probabilities}
    stream = _PartStream(dataset.grid, part, sink, channels, device, needed, outputs)
    loader = DataLoader(
        dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate_tiles,
        pin_memory=device.type == "cuda",
    )
    try:
        for batch in loader:
            for tile in batch.tiles:
                if tile.error is not None:
                    raise DataError(dataset.source.path, tile.error)
            probs = None if batch.images is None else predictor(batch.images)
            with predictor.elementwise():  # blending and encoding: one thread on a CPU
                valid = None if batch.valid is None else batch.valid.to(device, non_blocking=True)
                stream.feed(batch, probs, valid)
        with predictor.elementwise():
            stream.emit(stream.frontier, part.y1)
    finally:
        dataset.close()
    return stream.stats
