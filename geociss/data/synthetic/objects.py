"""Raised objects of synthetic scenes: buildings, tree crowns, hedges, cars and clutter.

Sizes are in metres and true to the ground sampling distance: a car is about 4.5 × 1.8 m, a
shipping container 2.4 × 6.1 m. Every object also writes its height, from which the renderer
casts shadows; pitched roofs and crowns are lit per pixel from their surface normals.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from geociss.data.synthetic import materials as mat
from geociss.data.synthetic.canvas import BUILDING, CAR, CLUTTER, LOW_VEGETATION, TREE, Patch
from geociss.data.synthetic.surfaces import SurfacePainter

Lambert = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _pitched(patch: Patch, length: float, width: float, pitch: float, hip: bool,
             lambert: Lambert) -> tuple[np.ndarray, np.ndarray]:
    """Lighting and rise above the eaves of a gabled (or hipped) roof, ridge along ``a``."""
    side = width / 2 - np.abs(patch.b)
    end = length / 2 - np.abs(patch.a)
    on_end = (end < side) if hip else np.zeros_like(side, dtype=bool)
    (ax, ay), (bx, by) = patch.image_axes()
    sa, sb = np.sign(patch.a), np.sign(patch.b)
    dx = np.where(on_end, sa * ax, sb * bx)
    dy = np.where(on_end, sa * ay, sb * by)
    s, c = np.float32(math.sin(pitch)), np.float32(math.cos(pitch))
    light = lambert(dx * s, dy * s, np.full_like(dx, c))
    eave_dist = np.where(on_end, end, side)
    return light, np.float32(math.tan(pitch)) * eave_dist


class Painter(SurfacePainter):
    """Paints buildings, vegetation, vehicles and clutter (and, inherited, ground surfaces)."""

    # ------------------------------------------------------------------ buildings

    def building(self, u: float, v: float, length: float, width: float, angle: float,
                 roof: str, eave: float, colour: np.ndarray | None = None) -> np.ndarray | None:
        """A rectangular building; pitched roofs get their ridge along the longer side.

        Args:
            u: centre in the layout frame (m).
            v: centre in the layout frame (m).
            length: size along ``angle`` (m).
            width: size across (m).
            angle: orientation in the layout frame (radians).
            roof: a key of :data:`materials.ROOFS`.
            eave: height of the eaves, or of a flat roof (m).
            colour: roof colour (to give the wings of one building the same roof).

        Returns:
            The roof colour used, or None when the building lies outside the tile.
        """
        if width > length:
            length, width, angle = width, length, angle + math.pi / 2
        p = self.canvas.rect(u, v, length, width, angle)
        if p is None:
            return None
        colour = mat.roof_colour(self.rng, roof, self.tones.lawn) if colour is None else colour
        coarse, mid, fine, grain = self._noise(p)
        shade = 1.0 + 0.06 * coarse + 0.05 * mid + 0.04 * fine + 0.04 * grain
        if roof in mat.PITCHED_ROOFS and width < 18:
            pitch = math.radians(self.rng.uniform(25, 45))
            light, rise = _pitched(p, length, width, pitch, self.rng.random() < 0.35,
                                   self.canvas.sun.lambert)
            ridge = np.where(np.abs(p.b) < 0.12, np.float32(0.85), np.float32(1.0))
            shade = shade * light * ridge * mat.stripes(rise, 0.34, 0.06)
            self.canvas.paint(p, BUILDING, colour, shade, eave + rise)
            if self.rng.random() < 0.18:
                self._solar(u, v, length, width, angle, p)
            return colour
        edge = (np.abs(p.a) > length / 2 - 0.35) | (np.abs(p.b) > width / 2 - 0.35)
        shade = np.where(edge, shade * 1.12, shade)
        self.canvas.paint(p, BUILDING, colour, shade, eave + np.where(edge, 0.4, 0.0))
        self._roof_units(u, v, length, width, angle, eave)
        return colour

    def _offset(self, u: float, v: float, angle: float, da: float, db: float
                ) -> tuple[float, float]:
        c, s = math.cos(angle), math.sin(angle)
        return u + c * da - s * db, v + s * da + c * db

    def _solar(self, u: float, v: float, length: float, width: float, angle: float,
               roof: Patch) -> None:
        side = 1.0 if self.rng.random() < 0.5 else -1.0
        pl, pw = length * self.rng.uniform(0.35, 0.7), width * self.rng.uniform(0.2, 0.35)
        cu, cv = self._offset(u, v, angle, self.rng.uniform(-0.1, 0.1) * length, side * width / 4)
        p = self.canvas.rect(cu, cv, pl, pw, angle)
        if p is None:
            return
        grid = mat.stripes(p.a, 1.0, 0.15) * mat.stripes(p.b, 1.65, 0.1)
        colour = mat.jitter(self.rng, (40, 48, 72, 44), lum=0.12)
        self.canvas.paint(p, BUILDING, colour, grid * (1 + 0.05 * p.take(self.canvas.noise.fine)),
                          p.take(self.canvas.height) + 0.15)

    def _roof_units(self, u: float, v: float, length: float, width: float, angle: float,
                    eave: float) -> None:
        grey = mat.jitter(self.rng, (176, 176, 172, 164), lum=0.12)
        for _ in range(self.rng.integers(0, 2 + int(length * width // 120))):
            ul, uw = self.rng.uniform(0.8, 3.5), self.rng.uniform(0.8, 2.5)
            cu, cv = self._offset(u, v, angle, self.rng.uniform(-0.4, 0.4) * (length - ul),
                                  self.rng.uniform(-0.4, 0.4) * (width - uw))
            p = self.canvas.rect(cu, cv, ul, uw, angle)
            if p is not None:
                self.canvas.paint(p, BUILDING, grey, 1.0 + 0.04 * p.take(
                    self.canvas.noise.grain), eave + self.rng.uniform(0.8, 2.2))

    def l_building(self, u: float, v: float, length: float, width: float, angle: float,
                   roof: str, eave: float) -> None:
        """An L-shaped building: a main wing and a perpendicular wing at one end."""
        colour = self.building(u, v, length, width, angle, roof, eave)
        wing_l, wing_w = self.rng.uniform(0.5, 0.9) * length, self.rng.uniform(0.7, 1.0) * width
        end, side = self.rng.choice([-1.0, 1.0], size=2)
        da = end * (length / 2 - wing_w / 2)
        db = side * (width / 2 + wing_l / 2 - 0.5)
        cu, cv = self._offset(u, v, angle, da, db)
        self.building(cu, cv, wing_w, wing_l, angle, roof, eave, colour)

    # ------------------------------------------------------------------ vegetation

    def crown(self, u: float, v: float, radius: float, kind: str = "broadleaf") -> None:
        """A tree crown: a lit, clumpy dome with an irregular outline."""
        k = 4
        wobble = np.stack([self.rng.uniform(0.0, 0.09, k), self.rng.uniform(0, 2 * np.pi, k)], 1)
        p = self.canvas.blob(u, v, radius, wobble)
        if p is None:
            return
        r2 = np.minimum((p.a * p.a + p.b * p.b) / np.float32(radius * radius), 1.0)
        nz = np.sqrt(1.0 - r2 * 0.92)
        inv = 1.0 / np.sqrt(r2 * 0.92 + nz * nz)
        light = self.canvas.sun.lambert(p.a / radius * inv, p.b / radius * inv, nz * inv)
        _, mid, fine, grain = self._noise(p)
        clumps = 1.0 + 0.22 * np.tanh(1.3 * mid) + 0.12 * fine + 0.05 * grain
        tone = self.tones.tree * np.float32(0.8 if kind == "conifer" else 1.0)
        colour = mat.jitter(self.rng, tuple(tone), lum=0.09)
        top = self.rng.uniform(6.0, 16.0)
        height = top - 0.45 * top * (1.0 - nz)
        self.canvas.paint(p, TREE, colour, (0.62 + 0.38 * light) * clumps, height)

    def hedge(self, u: float, v: float, length: float, angle: float) -> None:
        """A trimmed hedge: low vegetation that looks like a narrow strip of tree crown."""
        p = self.canvas.rect(u, v, length, self.rng.uniform(0.8, 1.6), angle)
        if p is None:
            return
        _, mid, fine, grain = self._noise(p)
        shade = 0.9 + 0.2 * np.tanh(1.3 * mid) + 0.1 * fine + 0.05 * grain
        colour = mat.jitter(self.rng, tuple(self.tones.tree), lum=0.08)
        self.canvas.paint(p, LOW_VEGETATION, colour, shade, self.rng.uniform(1.2, 2.2))

    # ------------------------------------------------------------------ vehicles

    def car(self, u: float, v: float, angle: float) -> None:
        """A car (sometimes a van) facing along ``angle`` or against it."""
        van = self.rng.random() < 0.08
        length = self.rng.uniform(5.0, 5.8) if van else self.rng.uniform(4.1, 4.9)
        width = self.rng.uniform(1.95, 2.1) if van else self.rng.uniform(1.72, 1.95)
        angle += math.pi * float(self.rng.random() < 0.5) + self.rng.normal(0, 0.03)
        p = self.canvas.rect(u, v, length, width, angle)
        if p is None:
            return
        fa, fb = p.a / np.float32(length), np.abs(p.b) / np.float32(width)
        front = (0.08 if van else 0.12, 0.22 if van else 0.3)
        glass = ((fa > front[0]) & (fa < front[1]) & (fb < 0.43)) | (
            (fa > -0.38) & (fa < -0.28) & (fb < 0.41) & (not van))
        glass |= (fa > -0.28) & (fa < front[0]) & (fb > 0.33) & (fb < 0.43)
        roof = (fa > -0.28) & (fa < front[0]) & (fb <= 0.33)
        body = mat.car_colour(self.rng)
        colour = np.where(glass, mat.expand(mat.GLASS, glass), mat.expand(body, glass))
        grain = p.take(self.canvas.noise.grain)
        shade = (1.0 - 0.35 * (2 * fb) ** 6) * np.where(roof, 1.06, 1.0) + 0.03 * grain
        self.canvas.paint(p, CAR, colour, shade, np.where(roof | glass, 1.5, 1.05))

    # ------------------------------------------------------------------ clutter

    def container(self, u: float, v: float, angle: float) -> None:
        """A shipping or skip container with corrugated walls."""
        length = 6.06 if self.rng.random() < 0.75 else 12.19
        p = self.canvas.rect(u, v, length, 2.44, angle)
        if p is None:
            return
        colour = mat.jitter(self.rng, mat.CONTAINER_COLOURS[
            self.rng.integers(len(mat.CONTAINER_COLOURS))], lum=0.08)
        _, mid, _, grain = self._noise(p)
        shade = mat.stripes(p.a, 0.3, 0.08) * (1.0 + 0.05 * mid + 0.04 * grain)
        self.canvas.paint(p, CLUTTER, colour, shade, 2.6)

    def heap(self, u: float, v: float, radius: float) -> None:
        """A heap of sand, gravel or soil (clutter), lit as a low dome."""
        wobble = np.stack([self.rng.uniform(0.05, 0.2, 4), self.rng.uniform(0, 2 * np.pi, 4)], 1)
        p = self.canvas.blob(u, v, radius, wobble)
        if p is None:
            return
        rise = self.rng.uniform(0.6, 2.5)
        r2 = np.minimum((p.a * p.a + p.b * p.b) / np.float32(radius * radius), 1.0)
        k = np.float32(rise / radius)
        inv = 1.0 / np.sqrt(1.0 + (k * k) * r2)
        light = self.canvas.sun.lambert(k * p.a / radius * inv, k * p.b / radius * inv, inv)
        _, mid, fine, grain = self._noise(p)
        material = (mat.SAND, mat.GRAVEL, mat.SOIL)[self.rng.integers(3)]
        colour = mat.jitter(self.rng, material, lum=0.1)
        shade = light * (1.0 + 0.07 * mid + 0.08 * fine + 0.06 * grain)
        self.canvas.paint(p, CLUTTER, colour, shade, rise * (1.0 - r2))

    def soil_patch(self, u: float, v: float, radius: float, furrows: bool = False) -> None:
        """An irregular patch of bare soil (a garden bed, a building site)."""
        wobble = np.stack([self.rng.uniform(0.05, 0.22, 4), self.rng.uniform(0, 2 * np.pi, 4)], 1)
        self.soil(self.canvas.blob(u, v, radius, wobble), furrows=furrows)

    def small_things(self, u: float, v: float, spread: float, count: int) -> None:
        """A few small objects (bins, furniture, trailers, pallets) scattered around a point."""
        for _ in range(count):
            cu, cv = u + self.rng.uniform(-spread, spread), v + self.rng.uniform(-spread, spread)
            p = self.canvas.rect(cu, cv, self.rng.uniform(0.6, 3.0), self.rng.uniform(0.5, 1.8),
                                 self.rng.uniform(0, np.pi))
            if p is not None:
                vivid = self.rng.uniform(25, 235, 4)
                colour = (0.5 * vivid + 0.5 * vivid[:3].mean()).astype(np.float32)
                shade = 1.0 + 0.05 * p.take(self.canvas.noise.grain)
                self.canvas.paint(p, CLUTTER, colour, shade, self.rng.uniform(0.4, 1.6))

    def pond(self, u: float, v: float, radius: float) -> None:
        """A pond with a muddy shore (water and its bank are clutter in the ISPRS classes)."""
        wobble = np.stack([self.rng.uniform(0.05, 0.2, 4), self.rng.uniform(0, 2 * np.pi, 4)], 1)
        self.soil(self.canvas.blob(u, v, radius + 0.8, wobble))
        water = self.canvas.blob(u, v, radius, wobble)
        if water is not None:
            _, mid, fine, _ = self._noise(water)
            colour = mat.jitter(self.rng, mat.WATER, lum=0.1) * np.asarray([1.0, 0.85, 0.75, 1.0],
                                                                            np.float32)
            self.canvas.paint(water, CLUTTER, colour, 1.0 + 0.05 * mid + 0.04 * fine)

    def pool(self, u: float, v: float, angle: float) -> None:
        """A garden pool (water is clutter in the ISPRS classes)."""
        length, width = self.rng.uniform(5.0, 9.0), self.rng.uniform(3.0, 4.5)
        rim = self.canvas.rect(u, v, length + 0.8, width + 0.8, angle)
        water = self.canvas.rect(u, v, length, width, angle)
        if rim is None or water is None:
            return
        self.canvas.paint(rim, CLUTTER, self.tones.concrete, 1.05)
        fine = water.take(self.canvas.noise.fine)
        colour = mat.jitter(self.rng, mat.WATER, lum=0.1)
        self.canvas.paint(water, CLUTTER, colour, 1.0 + 0.06 * fine)
