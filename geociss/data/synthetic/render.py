"""Turn a laid-out scene into a camera image: cast shadows, lighting, haze, blur, sensor noise.

Shadows come from the height map: a pixel is in shadow when some point towards the sun rises
above the sun's ray through it. The ray test is a max-plus scan along the sun direction done by
doubling (1, 2, 4, ... pixel shifts), so it costs a handful of whole-array operations instead of
one per pixel of shadow length. Shadows darken whatever lies under them and never change a class.
"""

from __future__ import annotations

import math

import numpy as np

from geociss.data.synthetic.canvas import Canvas, Sun

BAND_ORDERS: dict[str, tuple[int, ...]] = {
    "rgb": (0, 1, 2),
    "irrg": (3, 0, 1),
    "rgbir": (0, 1, 2, 3),
}
"""Band choices: indices into the rendered (red, green, blue, near-infrared) planes."""

BAND_NAMES = ("red", "green", "blue", "nir")


def _shift(a: np.ndarray, dx: int, dy: int, out: np.ndarray) -> np.ndarray:
    """``out[y, x] = a[y + dy, x + dx]``, zero where that falls outside ``a``."""
    h, w = a.shape
    out.fill(0.0)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    src_y, dst_y = slice(max(dy, 0), h + min(dy, 0)), slice(max(-dy, 0), h + min(-dy, 0))
    src_x, dst_x = slice(max(dx, 0), w + min(dx, 0)), slice(max(-dx, 0), w + min(-dx, 0))
    out[dst_y, dst_x] = a[src_y, src_x]
    return out


def cast_shadows(height: np.ndarray, sun: Sun, gsd: float) -> np.ndarray:
    """Where the sun is hidden by something taller on the way towards it.

    Args:
        height: float32 (H, W) height above ground in metres.
        sun: sun direction.
        gsd: metres per pixel.

    Returns:
        bool (H, W), True in shadow.
    """
    top = float(height.max())
    if top <= 0.0:
        return np.zeros(height.shape, dtype=bool)
    drop = math.tan(sun.elevation) * gsd  # metres the sun's ray climbs per pixel towards the sun
    reach = top / drop
    dx, dy = sun.toward
    steps = []
    for j in range(max(1, math.ceil(math.log2(reach + 1.0)))):
        sx, sy = round(dx * 2**j), round(dy * 2**j)
        steps.append((sx, sy, np.float32(math.hypot(sx, sy) * drop)))
    best = height.copy()
    tmp = np.empty_like(best)
    for sx, sy, loss in steps:
        _shift(best, sx, sy, tmp)
        tmp -= loss
        np.maximum(best, tmp, out=best)
    sx, sy, loss = steps[0]
    _shift(best, sx, sy, tmp)
    tmp -= loss
    return tmp > height + np.float32(0.05)


def _blur(plane: np.ndarray) -> np.ndarray:
    """A 1-2-1 blur in both directions (the optics' point spread), edges kept."""
    out = plane * np.float32(0.5)
    out[1:] += plane[:-1] * np.float32(0.25)
    out[:-1] += plane[1:] * np.float32(0.25)
    out[0] += plane[0] * np.float32(0.25)
    out[-1] += plane[-1] * np.float32(0.25)
    res = out * np.float32(0.5)
    res[:, 1:] += out[:, :-1] * np.float32(0.25)
    res[:, :-1] += out[:, 1:] * np.float32(0.25)
    res[:, 0] += out[:, 0] * np.float32(0.25)
    res[:, -1] += out[:, -1] * np.float32(0.25)
    return res


def render(canvas: Canvas, rng: np.random.Generator, bands: str) -> np.ndarray:
    """Light and expose a laid-out scene.

    The random draws do not depend on ``bands``, so one seed gives the same scene in every
    band order.

    Args:
        canvas: the laid-out scene.
        rng: the scene's random generator.
        bands: a key of :data:`BAND_ORDERS`.

    Returns:
        uint8 (C, H, W) image.
    """
    order = BAND_ORDERS[bands]
    shadow = _blur(cast_shadows(canvas.height, canvas.sun, canvas.gsd).astype(np.float32))
    depth = rng.uniform(0.35, 0.55)
    skylight = np.asarray([depth, depth * 1.06, depth * 1.25, depth * 0.9], np.float32)
    gain = rng.uniform(0.82, 1.15) * (1.0 + rng.normal(0.0, 0.04, 4))
    haze = rng.uniform(0.0, 16.0) * np.asarray([0.9, 0.95, 1.05, 0.7])
    gamma = rng.uniform(0.88, 1.12)
    drift = 1.0 + np.float32(rng.uniform(0.0, 0.06)) * canvas.noise.coarse.T
    sigma = rng.uniform(1.5, 4.0)
    seeds = rng.integers(0, 2**63, size=4)
    out = np.empty((len(order), canvas.size, canvas.size), dtype=np.uint8)
    for i, c in enumerate(order):
        lit = canvas.albedo[c] * (1.0 - (1.0 - skylight[c]) * shadow)
        lit *= drift * np.float32(gain[c] / 255.0)
        np.clip(lit, 0.0, 1.0, out=lit)
        plane = _blur(np.power(lit, np.float32(gamma)) * np.float32(255.0) + np.float32(haze[c]))
        plane += np.random.default_rng(seeds[c]).standard_normal(plane.shape, dtype=np.float32) * (
            np.float32(sigma))
        np.clip(plane, 0.0, 255.0, out=plane)
        out[i] = (plane + np.float32(0.5)).astype(np.uint8)
    return out
