"""Surface colours of synthetic scenes, as (red, green, blue, near-infrared) on a 0-255 scale.

The palettes overlap on purpose, as they do in real orthophotos: grey roof tiles and bitumen
roofs share the range of asphalt, gravel roofs that of concrete pavements, cars come in the
colours of roofs and roads, and tree crowns and lawns draw from one vegetation tone per scene
(the crowns only a little darker), near-infrared included. Telling them apart takes shape and
context, not colour.
"""

from __future__ import annotations

import numpy as np

RGBN = tuple[float, float, float, float]

ASPHALT: RGBN = (96, 97, 101, 86)
ASPHALT_PATCH: RGBN = (70, 71, 74, 64)
CONCRETE: RGBN = (156, 153, 146, 148)
PAVING: RGBN = (150, 130, 118, 138)
MARKING: RGBN = (226, 226, 220, 214)
LAWN: RGBN = (98, 126, 64, 192)
DRY_GRASS: RGBN = (140, 138, 92, 172)
FIELD: RGBN = (118, 132, 76, 180)
TREE: RGBN = (82, 110, 60, 186)
CONIFER: RGBN = (62, 84, 54, 150)
SOIL: RGBN = (136, 112, 90, 126)
SAND: RGBN = (194, 180, 150, 170)
GRAVEL: RGBN = (160, 156, 146, 150)
WATER: RGBN = (58, 132, 160, 34)
GLASS: RGBN = (38, 44, 52, 40)

ROOFS: dict[str, tuple[RGBN, float]] = {
    # kind: (colour, brightness jitter)
    "red tiles": ((168, 82, 62, 124), 0.12),
    "brown tiles": ((118, 74, 60, 104), 0.12),
    "grey tiles": ((98, 100, 106, 92), 0.2),
    "gravel": ((158, 154, 146, 148), 0.12),
    "bitumen": ((84, 84, 88, 76), 0.22),
    "green roof": ((96, 120, 66, 180), 0.1),
}
PITCHED_ROOFS = ("red tiles", "brown tiles", "grey tiles")
FLAT_ROOFS = ("gravel", "bitumen", "grey tiles", "green roof")

CAR_COLOURS: tuple[tuple[RGBN, float], ...] = (
    # colour, probability
    ((222, 222, 220, 200), 0.22),  # white
    ((172, 174, 176, 156), 0.2),  # silver
    ((104, 106, 110, 94), 0.14),  # grey
    ((36, 37, 40, 34), 0.2),  # black
    ((168, 40, 36, 110), 0.09),  # red
    ((120, 56, 44, 92), 0.04),  # dark red, the colour of old roof tiles
    ((40, 66, 128, 70), 0.07),  # blue
    ((190, 176, 150, 170), 0.04),  # beige
)

CONTAINER_COLOURS: tuple[RGBN, ...] = (
    (150, 70, 46, 110),
    (46, 82, 140, 74),
    (62, 110, 72, 96),
    (128, 130, 132, 118),
    (208, 120, 40, 150),
    (206, 204, 198, 190),
)


def jitter(rng: np.random.Generator, colour: RGBN, lum: float = 0.08, chroma: float = 0.04
           ) -> np.ndarray:
    """A random variant of ``colour``: overall brightness and per-band jitter (fractions)."""
    base = np.asarray(colour, dtype=np.float32)
    scale = (1.0 + lum * rng.standard_normal()) * (1.0 + chroma * rng.standard_normal(4))
    return np.clip(base * scale.astype(np.float32), 0.0, 255.0)


def vegetation_tones(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The lawn and tree tones of one scene (shared season and health, tree a little darker)."""
    dryness = rng.beta(1.6, 3.5)
    lush, dry = np.asarray(LAWN, np.float32), np.asarray(DRY_GRASS, np.float32)
    lawn = jitter(rng, tuple((1 - dryness) * lush + dryness * dry), lum=0.08)
    tint = np.asarray([0.92, 0.97, 1.0, 1.0], np.float32)
    tree = lawn * np.float32(rng.uniform(0.78, 0.97)) * tint
    return lawn, jitter(rng, tuple(tree), lum=0.05)


def car_colour(rng: np.random.Generator) -> np.ndarray:
    """Body colour of one car."""
    probs = np.asarray([p for _, p in CAR_COLOURS])
    idx = rng.choice(len(CAR_COLOURS), p=probs / probs.sum())
    return jitter(rng, CAR_COLOURS[idx][0], lum=0.06)


def roof_colour(rng: np.random.Generator, kind: str, lawn: np.ndarray) -> np.ndarray:
    """Colour of one roof of ``kind`` (a key of :data:`ROOFS`); green roofs take the lawn tone."""
    colour, lum = ROOFS[kind]
    if kind == "green roof":
        return jitter(rng, tuple(lawn * np.float32(0.95)), lum=lum)
    return jitter(rng, colour, lum=lum)


def expand(colour: np.ndarray | RGBN, like: np.ndarray) -> np.ndarray:
    """``colour`` (4,) reshaped to broadcast against arrays shaped like ``like``."""
    return np.asarray(colour, dtype=np.float32).reshape(4, *([1] * like.ndim))


def stripes(coord: np.ndarray, period: float, amplitude: float) -> np.ndarray:
    """Brightness ``1 ± amplitude`` varying as a sine of ``coord`` (m) with ``period`` (m)."""
    return 1.0 + np.float32(amplitude) * np.sin(coord * np.float32(2 * np.pi / period))
