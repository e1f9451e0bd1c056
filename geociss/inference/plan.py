"""How a raster is cut into streamed parts, and what that costs in memory (``--dry-run``).

Memory of a stream: the row-band accumulator, float32 ``K x tile x width`` (on the
predicting device: host RAM on a CPU, GPU memory on a GPU), plus the finished rows kept in host
RAM until a TIFF block row is complete, uint8 ``outputs x 512 x width``. It does not depend on
the raster's height. Its width does, so a raster wider than the buffer budget is
cut into column groups (block-aligned, so that every output block belongs to one group), each
streamed top to bottom with its own buffer; the tiles that straddle a group boundary are
predicted once per group.

GPU memory of a batch is estimated, not measured, for ``--dry-run``: input and output tensors of
the batch plus the largest activation of one forward pass (measured with forward hooks on a small
CPU tile and scaled to the tile area), halved under bf16 autocast, plus the weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from geociss.inference.grid import TileGrid, split_range
from geociss.inference.stream import Part

DEFAULT_BUFFER_MB = 256
"""Default budget of the row-band accumulator of one stream, in MiB."""


def accumulator_bytes(channels: int, tile_h: int, width: int) -> int:
    """Bytes of a row-band accumulator: float32 ``channels x tile_h x width`` + a bool mask."""
    return (channels * 4 + 1) * tile_h * width


def column_groups(grid: TileGrid, channels: int, budget_bytes: int, block: int) -> int:
    """Number of column groups that keep each group's accumulator within ``budget_bytes``."""
    per_column = accumulator_bytes(channels, grid.tile_h, 1)
    return max(1, math.ceil(grid.width * per_column / max(budget_bytes, 1)))


def plan_parts(
    grid: TileGrid, channels: int, budget_bytes: int, block: int, row_pieces: int = 1
) -> list[list[Part]]:
    """The output rectangles of a raster, grouped by row range.

    Args:
        grid: the tile grid.
        channels: probability channels K.
        budget_bytes: accumulator budget per stream (sets the number of column groups).
        block: TIFF block size (group and row-range boundaries are multiples of it).
        row_pieces: row ranges to cut (one per rank when one raster is shared by ranks).

    Returns:
        One list of parts per row range (possibly fewer than ``row_pieces`` for a short
        raster), each list in column-group order.
    """
    groups = column_groups(grid, channels, budget_bytes, block)
    cols = split_range(grid.width, groups, block)
    rows = split_range(grid.height, row_pieces, block)
    return [[Part(x0, x1, y0, y1) for x0, x1 in cols] for y0, y1 in rows]


def stream_bytes(grid: TileGrid, channels: int, parts: list[Part], outputs: int, block: int) -> int:
    """Host memory of the widest part's stream: accumulator plus pending block rows."""
    widest = 0
    for p in parts:
        cols = grid.tile_cols_for(p.x0, p.x1)
        widest = max(widest, grid.cols[cols[-1]] + grid.tile_w - grid.cols[cols[0]])
    pending = outputs * min(block, grid.height) * max(p.x1 - p.x0 for p in parts)
    return accumulator_bytes(channels, grid.tile_h, widest) + pending


def peak_activation_bytes(model: nn.Module, channels: int, size: int = 64) -> int:
    """Largest input + output of any leaf module in one forward pass of a ``size``² tile (CPU)."""
    peak = 0

    def hook(_: nn.Module, args: tuple, out: object) -> None:
        nonlocal peak
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        tensors += [out] if isinstance(out, torch.Tensor) else []
        peak = max(peak, sum(t.numel() * t.element_size() for t in tensors))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        device = next(model.parameters()).device
        with torch.inference_mode():
            model(torch.zeros(1, channels, size, size, device=device))
    finally:
        for h in handles:
            h.remove()
    return peak


@dataclass(frozen=True)
class BatchMemory:
    """Estimated accelerator memory of one batch.

    Attributes:
        per_tile: bytes that grow with each tile of the batch.
        fixed: model weights.
    """

    per_tile: int
    fixed: int

    def total(self, batch: int) -> int:
        """Bytes for a batch of ``batch`` tiles."""
        return self.fixed + batch * self.per_tile


def batch_memory(
    model: nn.Module, channels: int, classes: int, tile: int, half: bool, probe: int = 64
) -> BatchMemory:
    """Estimate the accelerator memory of a forward pass per tile (see the module docstring).

    Args:
        model: the network (on any device; the probe runs where it is).
        channels: input bands.
        classes: output channels.
        tile: tile side.
        half: bf16 autocast (activations take half the bytes).
        probe: side of the probe tile.
    """
    scale = (tile / probe) ** 2
    act = peak_activation_bytes(model, channels, probe) * scale * (0.5 if half else 1.0)
    io = (channels + 3 * classes) * tile * tile * 4  # input, probabilities, TTA sum, weighted
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return BatchMemory(per_tile=int(act + io), fixed=int(weights))


def human_bytes(n: float) -> str:
    """``1.5 GiB``-style size."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
