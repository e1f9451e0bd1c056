"""The drawing surface of one synthetic scene: class ids, heights and surface colours.

Shapes are given in metres in a *layout frame* ``(u, v)``: its origin is the tile centre and its
axes are the image axes rotated by the scene angle, so that a whole street grid can run at any
angle. Every shape is rasterised only inside its own bounding box; a :class:`Patch` carries the
box, the mask and the shape's local coordinates ``(a, b)`` (metres along and across the shape),
which materials use for oriented textures (roof tiles, car windows). Painting follows the
painter's algorithm: later shapes cover earlier ones, as seen from above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from geociss.data.synthetic.noise import NoiseBank

# Class ids, in the order of the ``isprs`` preset (IDEC order).
IMPERVIOUS, BUILDING, LOW_VEGETATION, TREE, CAR, CLUTTER = range(6)

Colour = np.ndarray
"""Surface colour (red, green, blue, near-infrared), 0-255 float32, shape (4,) or (4, h, w)."""


@dataclass(frozen=True)
class Sun:
    """Direction of the sun for one scene.

    Attributes:
        azimuth: clockwise from north (image up), radians.
        elevation: above the horizon, radians.
    """

    azimuth: float
    elevation: float

    @property
    def toward(self) -> tuple[float, float]:
        """Unit vector (dx, dy) in image axes (x right, y down) pointing towards the sun."""
        return math.sin(self.azimuth), -math.cos(self.azimuth)

    def lambert(self, nx: np.ndarray, ny: np.ndarray, nz: np.ndarray) -> np.ndarray:
        """Brightness of surfaces with unit normals (nx, ny, nz), relative to flat ground."""
        dx, dy = self.toward
        c, s = math.cos(self.elevation), math.sin(self.elevation)
        return np.clip((nx * (c * dx) + ny * (c * dy) + nz * s) / s, 0.25, 1.6)


@dataclass(frozen=True)
class Patch:
    """A rasterised shape: its bounding box, mask and local coordinates in metres.

    A patch is *boxed* (arrays over its bounding box) or, for long strips over the whole tile,
    *sparse* (1-D arrays over the flat indices of its pixels), so that textures are computed only
    where they are painted. Texture code treats both alike: it works element-wise on ``a``,
    ``b`` and on fields cut out with :meth:`take`.

    Attributes:
        rows: row slice of the bounding box.
        cols: column slice of the bounding box.
        mask: bool, the pixels inside the shape (same shape as ``a``).
        a: float32, coordinate along the shape's main axis (0 at its centre).
        b: float32, coordinate across it.
        angle: angle of the shape's main axis in image axes, radians (x towards y).
        index: flat pixel indices of a sparse patch, or None for a boxed one.
    """

    rows: slice
    cols: slice
    mask: np.ndarray
    a: np.ndarray
    b: np.ndarray
    angle: float
    index: np.ndarray | None = None

    def take(self, field: np.ndarray) -> np.ndarray:
        """The values of a (..., H, W) tile-sized ``field`` over this patch."""
        if self.index is None:
            return field[..., self.rows, self.cols]
        return field.reshape(*field.shape[:-2], -1)[..., self.index]

    def image_axes(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Unit vectors of the local ``a`` and ``b`` axes in image axes (x right, y down)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        return (c, s), (-s, c)


@dataclass
class Canvas:
    """Class ids, heights (m) and surface colours of a square scene, drawn shape by shape.

    Attributes:
        size: width and height in pixels.
        gsd: ground sampling distance, metres per pixel.
        angle: rotation of the layout frame against the image axes, radians.
        sun: the scene's sun.
        noise: the scene's shared texture fields.
        label: uint8 (size, size) class ids; starts as low vegetation.
        height: float32 (size, size) height above ground in metres.
        albedo: float32 (4, size, size) surface colour before lighting.
        trees: crowns ``(u, v, radius, kind)`` to draw last, above everything else.
    """

    size: int
    gsd: float
    angle: float
    sun: Sun
    noise: NoiseBank
    label: np.ndarray = field(init=False)
    height: np.ndarray = field(init=False)
    albedo: np.ndarray = field(init=False)
    trees: list[tuple[float, float, float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = self.size
        self.label = np.full((n, n), LOW_VEGETATION, dtype=np.uint8)
        self.height = np.zeros((n, n), dtype=np.float32)
        self.albedo = np.zeros((4, n, n), dtype=np.float32)

    @property
    def extent(self) -> float:
        """Half the diagonal of the tile in metres: every visible point has |u|, |v| below it."""
        return self.size * self.gsd * math.sqrt(0.5)

    def to_image(self, u: float, v: float) -> tuple[float, float]:
        """Layout-frame metres → image-axis metres relative to the tile centre."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        return c * u - s * v, s * u + c * v

    def _local(
        self, cx: float, cy: float, angle: float, half_x: float, half_y: float
    ) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
        g, n = self.gsd, self.size
        x0 = max(math.floor((cx - half_x) / g + n / 2), 0)
        x1 = min(math.ceil((cx + half_x) / g + n / 2), n)
        y0 = max(math.floor((cy - half_y) / g + n / 2), 0)
        y1 = min(math.ceil((cy + half_y) / g + n / 2), n)
        if x1 <= x0 or y1 <= y0:
            return None
        xs = ((np.arange(x0, x1, dtype=np.float32) + 0.5 - n / 2) * g - cx)[None, :]
        ys = ((np.arange(y0, y1, dtype=np.float32) + 0.5 - n / 2) * g - cy)[:, None]
        c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
        return slice(y0, y1), slice(x0, x1), c * xs + s * ys, -s * xs + c * ys

    def rect(
        self, u: float, v: float, length: float, width: float, angle: float = 0.0
    ) -> Patch | None:
        """Rasterise a rectangle centred at (u, v), ``length`` along ``angle`` (layout frame).

        Returns:
            The patch, or None when no pixel centre falls inside the tile and the rectangle.
        """
        cx, cy = self.to_image(u, v)
        total = self.angle + angle
        c, s = abs(math.cos(total)), abs(math.sin(total))
        hx, hy = c * length / 2 + s * width / 2, s * length / 2 + c * width / 2
        local = self._local(cx, cy, total, hx + self.gsd, hy + self.gsd)
        if local is None:
            return None
        rows, cols, a, b = local
        mask = (np.abs(a) <= length / 2) & (np.abs(b) <= width / 2)
        return Patch(rows, cols, mask, a, b, total) if mask.any() else None

    def blob(
        self, u: float, v: float, radius: float, wobble: np.ndarray | None = None
    ) -> Patch | None:
        """Rasterise a round shape whose radius varies with direction.

        Args:
            u: centre, layout frame (m).
            v: centre, layout frame (m).
            radius: mean radius (m).
            wobble: (k, 2) amplitudes (fraction of the radius) and phases of harmonics 2, 3, ...

        Returns:
            The patch (``a``, ``b`` are offsets from the centre in image axes), or None.
        """
        cx, cy = self.to_image(u, v)
        wob = np.zeros((0, 2)) if wobble is None else wobble
        reach = radius * (1.0 + float(np.abs(wob[:, 0]).sum())) + self.gsd
        local = self._local(cx, cy, 0.0, reach, reach)
        if local is None:
            return None
        rows, cols, a, b = local
        limit = np.full(a.shape, radius, dtype=np.float32)
        if len(wob):
            theta = np.arctan2(b, a)
            for k, (amp, phase) in enumerate(wob, start=2):
                limit += np.float32(radius * amp) * np.cos(k * theta + np.float32(phase))
        mask = a * a + b * b <= limit * limit
        return Patch(rows, cols, mask, a, b, 0.0) if mask.any() else None

    def full(self, mask: np.ndarray, u: np.ndarray, v: np.ndarray) -> Patch | None:
        """A patch of tile-sized ``mask`` with local coordinates ``u``, ``v`` (roads, strips)."""
        whole = slice(0, self.size)
        if mask.all():
            return Patch(whole, whole, mask, u, v, self.angle)
        index = np.flatnonzero(mask)
        if not len(index):
            return None
        flat = np.ones(len(index), dtype=bool)
        return Patch(whole, whole, flat, u.reshape(-1)[index], v.reshape(-1)[index], self.angle,
                     index)

    def layout_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Layout-frame coordinates (u, v) in metres of every pixel centre, float32 (size, size)."""
        local = self._local(0.0, 0.0, self.angle, self.size * self.gsd, self.size * self.gsd)
        assert local is not None
        return local[2], local[3]

    def paint(
        self,
        patch: Patch,
        cls: int,
        colour: Colour,
        shade: np.ndarray | float = 1.0,
        height: np.ndarray | float = 0.0,
    ) -> None:
        """Cover the pixels of ``patch`` with a surface.

        Args:
            patch: where.
            cls: class id written to the label map.
            colour: surface colour, (4,) or (4, *patch.a.shape).
            shade: brightness factor (texture, slope lighting), scalar or shaped like ``patch.a``.
            height: height above ground in metres, scalar or shaped like ``patch.a``.
        """
        col = np.asarray(colour, dtype=np.float32)
        if patch.index is not None:
            idx = patch.index
            self.label.reshape(-1)[idx] = cls
            self.height.reshape(-1)[idx] = height
            self.albedo.reshape(4, -1)[:, idx] = (col if col.ndim == 2 else col[:, None]) * shade
            return
        m = patch.mask
        box = (patch.rows, patch.cols)
        if m.all():
            self.label[box] = cls
            self.height[box] = height
            full = col if col.ndim == 3 else col[:, None, None]
            self.albedo[:, patch.rows, patch.cols] = full * shade
            return
        self.label[box][m] = cls
        self.height[box][m] = height[m] if isinstance(height, np.ndarray) else height
        col = col[:, m] if col.ndim == 3 else col[:, None]
        sh = shade[m] if isinstance(shade, np.ndarray) else np.float32(shade)
        self.albedo[:, patch.rows, patch.cols][:, m] = col * sh
