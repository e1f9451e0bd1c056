"""Smooth random fields for the textures of synthetic scenes.

Value noise: a coarse grid of Gaussian values, upsampled with smoothstep-weighted bilinear
interpolation (two separable passes, no per-pixel Python). Every field is zero-mean with unit
standard deviation, so materials can scale them directly into brightness variations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Feature sizes of the shared texture fields, in metres on the ground.
COARSE_M = 7.0
MID_M = 1.1
FINE_M = 0.35


def _axis_weights(n: int, cell: float, offset: float) -> tuple[np.ndarray, np.ndarray]:
    pos = np.arange(n, dtype=np.float32) / np.float32(cell) + np.float32(offset)
    i0 = np.floor(pos).astype(np.intp)
    t = pos - i0
    t = t * t * (3.0 - 2.0 * t)
    return i0, t.astype(np.float32)


def value_noise(rng: np.random.Generator, shape: tuple[int, int], cell_px: float) -> np.ndarray:
    """A smooth random field whose features are about ``cell_px`` pixels wide.

    Args:
        rng: random generator (the only source of randomness).
        shape: (height, width) of the field.
        cell_px: spacing of the random grid in pixels; values below 1 give white noise.

    Returns:
        float32 array of ``shape``, mean 0 and standard deviation 1.
    """
    h, w = shape
    cell = max(float(cell_px), 1.0)
    gh, gw = int(np.ceil(h / cell)) + 2, int(np.ceil(w / cell)) + 2
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    oy, ox = rng.random(2)
    iy, ty = _axis_weights(h, cell, oy)
    ix, tx = _axis_weights(w, cell, ox)
    rows = grid[iy] * (1.0 - ty)[:, None] + grid[iy + 1] * ty[:, None]
    field = np.ascontiguousarray(rows[:, ix] * (1.0 - tx) + rows[:, ix + 1] * tx)
    field -= field.mean(dtype=np.float64)
    std = float(field.std(dtype=np.float64))
    field /= std if std > 0 else 1.0
    return field


@dataclass(frozen=True)
class NoiseBank:
    """The texture fields of one scene, shared by all materials (sliced per object).

    Attributes:
        coarse: field with features of about 7 m (lawn patches, stains, illumination drift).
        mid: about 1.1 m (tree-crown clumps, roof weathering).
        fine: about 0.35 m (gravel, grass tufts, roof-tile jitter).
        grain: per-pixel white noise.
    """

    coarse: np.ndarray
    mid: np.ndarray
    fine: np.ndarray
    grain: np.ndarray

    @classmethod
    def create(cls, rng: np.random.Generator, size: int, gsd: float) -> NoiseBank:
        """Draw the fields of a ``size`` × ``size`` scene at ``gsd`` metres per pixel."""
        shape = (size, size)
        return cls(
            coarse=value_noise(rng, shape, COARSE_M / gsd),
            mid=value_noise(rng, shape, MID_M / gsd),
            fine=value_noise(rng, shape, FINE_M / gsd),
            grain=rng.standard_normal(shape, dtype=np.float32),
        )
