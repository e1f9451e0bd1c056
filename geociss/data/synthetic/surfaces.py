"""Ground surfaces of synthetic scenes: asphalt, pavements, lawns, fields, bare soil.

A :class:`SurfacePainter` owns the canvas, the random generator and the scene's colour tones,
and paints flat surfaces with textures cut from the scene's shared noise fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geociss.data.synthetic import materials as mat
from geociss.data.synthetic.canvas import (
    CLUTTER,
    IMPERVIOUS,
    LOW_VEGETATION,
    Canvas,
    Patch,
)


@dataclass(frozen=True)
class Tones:
    """The base colours of one scene, drawn once so that a scene looks consistent."""

    lawn: np.ndarray
    tree: np.ndarray
    asphalt: np.ndarray
    concrete: np.ndarray
    paving: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Tones:
        """Draw the tones of one scene."""
        lawn, tree = mat.vegetation_tones(rng)
        return cls(
            lawn=lawn,
            tree=tree,
            asphalt=mat.jitter(rng, mat.ASPHALT, lum=0.12, chroma=0.02),
            concrete=mat.jitter(rng, mat.CONCRETE, lum=0.1, chroma=0.02),
            paving=mat.jitter(rng, mat.PAVING, lum=0.1),
        )


@dataclass
class SurfacePainter:
    """Paints ground surfaces onto a canvas.

    Attributes:
        canvas: the scene being drawn.
        rng: the scene's random generator.
        tones: the scene's base colours.
    """

    canvas: Canvas
    rng: np.random.Generator
    tones: Tones

    def _noise(self, patch: Patch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = self.canvas.noise
        return patch.take(n.coarse), patch.take(n.mid), patch.take(n.fine), patch.take(n.grain)

    def asphalt(self, patch: Patch | None, cls: int = IMPERVIOUS) -> None:
        """Asphalt with wear, tar repairs and grain."""
        if patch is None:
            return
        coarse, mid, fine, grain = self._noise(patch)
        shade = 1.0 + 0.05 * coarse + 0.03 * mid + 0.03 * fine + 0.05 * grain
        repairs = (mid > 1.7) & (coarse > 0.3)
        colour = np.where(repairs, mat.expand(mat.ASPHALT_PATCH, repairs),
                          mat.expand(self.tones.asphalt, repairs))
        self.canvas.paint(patch, cls, colour, shade)

    def slabs(self, patch: Patch | None, tone: np.ndarray | None = None, slab: float = 2.0) -> None:
        """Concrete slabs (pavements, yards) with joints every ``slab`` metres."""
        if patch is None:
            return
        coarse, mid, fine, grain = self._noise(patch)
        shade = 1.0 + 0.04 * coarse + 0.03 * mid + 0.03 * fine + 0.04 * grain
        half = 0.5 * slab
        joint = (np.abs(np.mod(patch.a, slab) - half) > half - 0.05) | (
            np.abs(np.mod(patch.b, slab) - half) > half - 0.05
        )
        shade = np.where(joint, shade * 0.82, shade)
        self.canvas.paint(patch, IMPERVIOUS, self.tones.concrete if tone is None else tone, shade)

    def paving(self, patch: Patch | None) -> None:
        """Interlocking paving stones (driveways, paths)."""
        if patch is None:
            return
        coarse, _, fine, grain = self._noise(patch)
        shade = 1.0 + 0.05 * coarse + 0.06 * fine + 0.06 * grain
        shade *= mat.stripes(patch.a, 0.22, 0.04)
        self.canvas.paint(patch, IMPERVIOUS, self.tones.paving, shade)

    def marking(self, patch: Patch | None) -> None:
        """White road paint."""
        if patch is None:
            return
        _, _, fine, grain = self._noise(patch)
        self.canvas.paint(patch, IMPERVIOUS, np.asarray(mat.MARKING, np.float32),
                          0.95 + 0.04 * fine + 0.03 * grain)

    def lawn(self, patch: Patch | None, mown: bool = False) -> None:
        """Grass, greener or drier in patches, optionally with mowing stripes."""
        if patch is None:
            return
        coarse, mid, fine, grain = self._noise(patch)
        dry = np.clip(0.5 * (coarse - 0.6), 0.0, 0.6)[None]
        colour = (1 - dry) * mat.expand(self.tones.lawn, coarse) + dry * mat.expand(
            mat.DRY_GRASS, coarse)
        shade = 1.0 + 0.07 * coarse + 0.06 * mid + 0.06 * fine + 0.05 * grain
        if mown:
            shade *= np.where(np.mod(patch.a, 3.0) < 1.5, 1.05, 0.95)
        self.canvas.paint(patch, LOW_VEGETATION, colour, shade)

    def field(self, patch: Patch | None) -> None:
        """A crop field or meadow with rows."""
        if patch is None:
            return
        coarse, mid, fine, grain = self._noise(patch)
        colour = 0.5 * (mat.jitter(self.rng, mat.FIELD, lum=0.12) + self.tones.lawn)
        shade = (1.0 + 0.06 * coarse + 0.04 * mid + 0.05 * grain) * mat.stripes(
            patch.b, self.rng.uniform(0.6, 1.6), 0.12 + 0.04 * fine)
        self.canvas.paint(patch, LOW_VEGETATION, colour, shade)

    def soil(self, patch: Patch | None, material: mat.RGBN = mat.SOIL,
             furrows: bool = False) -> None:
        """Bare soil, sand or gravel on the ground (clutter)."""
        if patch is None:
            return
        coarse, mid, fine, grain = self._noise(patch)
        shade = 1.0 + 0.08 * coarse + 0.07 * mid + 0.07 * fine + 0.06 * grain
        if furrows:
            shade *= mat.stripes(patch.b, 0.7, 0.12)
        self.canvas.paint(patch, CLUTTER, mat.jitter(self.rng, material, lum=0.1), shade)
