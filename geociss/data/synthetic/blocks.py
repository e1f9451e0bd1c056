"""Fill the blocks between roads with a land use.

Houses with gardens, perimeter blocks, halls with car parks, parks, allotments, building sites.
Each filler works in a :class:`Frontage` frame: ``x`` runs along the street, ``y`` from the street
into the block, so that lots, setbacks and driveways read naturally whichever side they face.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from geociss.data.synthetic import materials as mat
from geociss.data.synthetic.canvas import Patch
from geociss.data.synthetic.objects import Painter
from geociss.data.synthetic.roads import Block


@dataclass(frozen=True)
class Frontage:
    """A local frame: origin at a block corner on the street, ``x`` along it, ``y`` inwards."""

    u: float
    v: float
    angle: float

    def at(self, x: float, y: float) -> tuple[float, float]:
        """Layout-frame point of local (x, y)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        return self.u + c * x - s * y, self.v + s * x + c * y

    def rect(self, pt: Painter, x0: float, x1: float, y0: float, y1: float) -> Patch | None:
        """Rasterise the local rectangle ``[x0, x1] × [y0, y1]`` (None when off the tile)."""
        return pt.canvas.rect(*self.at((x0 + x1) / 2, (y0 + y1) / 2), x1 - x0, y1 - y0, self.angle)


def frontages(b: Block) -> tuple[tuple[Frontage, float, float], tuple[Frontage, float, float]]:
    """The two frames on the long sides of a block, each with (length, depth) of the block.

    The second frame faces the first across the block (it is rotated by half a turn).
    """
    du, dv = b.u1 - b.u0, b.v1 - b.v0
    if du >= dv:
        return (Frontage(b.u0, b.v0, 0.0), du, dv), (Frontage(b.u1, b.v1, math.pi), du, dv)
    return (Frontage(b.u1, b.v0, math.pi / 2), dv, du), (Frontage(b.u0, b.v1, -math.pi / 2), dv, du)


def _roof(pt: Painter, flat_share: float) -> str:
    kinds = mat.FLAT_ROOFS if pt.rng.random() < flat_share else mat.PITCHED_ROOFS
    weights = np.asarray([0.4, 0.32, 0.22, 0.06] if kinds == mat.FLAT_ROOFS else [0.5, 0.18, 0.32])
    return str(kinds[pt.rng.choice(len(kinds), p=weights)])


def _garden(pt: Painter, f: Frontage, x0: float, x1: float, y0: float, y1: float) -> None:
    """Trees, hedges, beds and odds and ends in a garden ``[x0, x1] × [y0, y1]``."""
    w, d = x1 - x0, y1 - y0
    if w < 3 or d < 3:
        return
    for _ in range(pt.rng.poisson(max(w * d / 42.0, 0.3))):
        r = pt.rng.uniform(1.8, 4.6)
        kind = "conifer" if pt.rng.random() < 0.2 else "broadleaf"
        pt.canvas.trees.append((*f.at(pt.rng.uniform(x0, x1), pt.rng.uniform(y0, y1)), r, kind))
    if pt.rng.random() < 0.4:
        pt.hedge(*f.at(x1 - 0.6, (y0 + y1) / 2), d, f.angle + math.pi / 2)
    if pt.rng.random() < 0.3:
        pt.hedge(*f.at((x0 + x1) / 2, y1 - 0.6), w, f.angle)
    for _ in range(pt.rng.poisson(0.4 + w * d / 110.0)):
        pt.soil_patch(*f.at(pt.rng.uniform(x0, x1), pt.rng.uniform(y0, y1)),
                      pt.rng.uniform(2.0, 4.5), furrows=pt.rng.random() < 0.5)
    if pt.rng.random() < 0.5 and w > 6 and d > 6:
        bx, by = pt.rng.uniform(x0, x1 - 5), pt.rng.uniform(y0, y1 - 5)
        pt.soil(f.rect(pt, bx, bx + pt.rng.uniform(3, 6), by, by + pt.rng.uniform(3, 7)),
                furrows=True)
    if pt.rng.random() < 0.6:
        pt.small_things(*f.at(pt.rng.uniform(x0, x1), pt.rng.uniform(y0, y1)), 2.5,
                        int(pt.rng.integers(2, 8)))
    if pt.rng.random() < 0.07 and w > 10 and d > 8:
        pt.pool(*f.at((x0 + x1) / 2, (y0 + y1) / 2), f.angle)


def _house_lot(pt: Painter, f: Frontage, x0: float, x1: float, depth: float) -> None:
    w = x1 - x0
    hw = pt.rng.uniform(10.0, max(10.5, min(18.0, w - 3.5)))
    hd = pt.rng.uniform(10.0, max(10.5, min(15.0, depth * 0.6)))
    setback = pt.rng.uniform(3.0, min(7.0, max(3.5, depth - hd - 3)))
    hx = x0 + pt.rng.uniform(1.0, max(1.2, w - hw - 3.5)) + hw / 2
    drive_x = hx + hw / 2 + 1.8 if x1 - (hx + hw / 2) > 3.6 else hx - hw / 2 - 1.8
    if pt.rng.random() < 0.4:
        pt.paving(f.rect(pt, x0 + 0.3, x1 - 0.3, 0.0, setback))
    pt.paving(f.rect(pt, drive_x - 1.5, drive_x + 1.5, 0.0, setback + hd * 0.7))
    terrace = pt.rng.uniform(3.0, 6.0)
    if pt.rng.random() < 0.6:
        pt.slabs(f.rect(pt, hx - hw / 2.5, hx + hw / 2.5, setback + hd, setback + hd + terrace),
                 slab=0.5)
    _garden(pt, f, x0, x1, setback + hd + terrace, depth - 0.5)
    if pt.rng.random() < 0.5:
        _garden(pt, f, x0, x1, 0.5, setback - 1.0)
    roof, eave = _roof(pt, 0.12), pt.rng.uniform(4.5, 7.5)
    u, v = f.at(hx, setback + hd / 2)
    if pt.rng.random() < 0.4:
        pt.l_building(u, v, hw, hd * 0.7, f.angle, roof, eave)
    else:
        pt.building(u, v, hw, hd, f.angle, roof, eave)
    if pt.rng.random() < 0.5:
        pt.building(*f.at(drive_x, setback + hd * 0.7 + 3.2), 3.2, 6.0, f.angle + math.pi / 2,
                    "bitumen" if pt.rng.random() < 0.6 else "gravel", 2.6)
    if pt.rng.random() < 0.45:
        pt.car(*f.at(drive_x, setback * 0.5 + 1.5), f.angle + math.pi / 2)
    if pt.rng.random() < 0.5:
        pt.small_things(*f.at(drive_x, 1.2), 1.0, int(pt.rng.integers(1, 4)))


def _back_strip(pt: Painter, f: Frontage, length: float, y0: float, y1: float) -> None:
    """The middle of a deep block: a parking court, a row of garages or shared green."""
    pick = pt.rng.random()
    if pick < 0.4:
        parking(pt, f, 2.0, length - 2.0, y0, y1)
    elif pick < 0.7:
        pt.asphalt(f.rect(pt, 0.0, length, y0, y1))
        x = pt.rng.uniform(1.0, 4.0)
        while x < length - 4:
            pt.building(*f.at(x + 1.5, y0 + 3.2), 3.0, 6.0, f.angle + math.pi / 2, "bitumen", 2.5)
            x += 3.0
    else:
        _garden(pt, f, 0.0, length, y0, y1)


def residential(pt: Painter, b: Block) -> None:
    """Detached houses on lots facing the street, gardens behind."""
    sides = frontages(b)
    length, depth = sides[0][1], sides[0][2]
    rows = sides if depth > 30 else sides[:1]
    lot_depth = min(depth / len(rows), pt.rng.uniform(24.0, 34.0))
    if len(rows) == 2 and depth - 2 * lot_depth > 12:
        _back_strip(pt, sides[0][0], length, lot_depth, depth - lot_depth)
    for f, _, _ in rows:
        x = pt.rng.uniform(0.0, 4.0)
        while x < length - 8.0:
            lot = min(pt.rng.uniform(12.5, 19.0), length - x)
            _house_lot(pt, f, x, x + lot, lot_depth)
            x += lot


def perimeter(pt: Painter, b: Block) -> None:
    """Apartment buildings along the block edges around a green courtyard."""
    (f, length, depth), _ = frontages(b)
    wing, gap = pt.rng.uniform(12.0, 17.0), pt.rng.uniform(0.0, 3.0)
    roof, eave = _roof(pt, 0.45), pt.rng.uniform(9.0, 18.0)
    inner = f.rect(pt, gap + wing, length - gap - wing, gap + wing, depth - gap - wing)
    pt.lawn(inner)
    if pt.rng.random() < 0.7:
        parking(pt, f, gap + wing + 2, min(length - gap - wing - 2, gap + wing + 30),
                gap + wing + 1, gap + wing + 17)
    _garden(pt, f, gap + wing + 1, length - gap - wing - 1, gap + wing + 1, depth - gap - wing - 1)
    if pt.rng.random() < 0.6:
        x, y = pt.rng.uniform(gap + wing + 5, max(gap + wing + 6, length - gap - wing - 5)), (
            depth - gap - wing - 6)
        pt.soil(f.rect(pt, x - 5, x + 5, y - 4, y + 4), mat.SAND)
        pt.small_things(*f.at(x, y), 3.5, int(pt.rng.integers(2, 6)))
    pt.small_things(*f.at(length / 2, gap + wing + 1.5), length / 3, int(pt.rng.integers(2, 10)))
    for y in (gap + wing / 2, depth - gap - wing / 2):
        if pt.rng.random() < 0.9:
            pt.building(*f.at(length / 2, y), length - 2 * gap, wing, f.angle, roof, eave)
    for x in (gap + wing / 2, length - gap - wing / 2):
        if pt.rng.random() < 0.8:
            pt.building(*f.at(x, depth / 2), depth - 2 * gap - 2 * wing + 1, wing,
                        f.angle + math.pi / 2, roof, eave)


def parking(pt: Painter, f: Frontage, x0: float, x1: float, y0: float, y1: float) -> None:
    """An asphalt car park with marked bays along an aisle, partly occupied."""
    if x1 - x0 < 6 or y1 - y0 < 11:
        return
    pt.asphalt(f.rect(pt, x0, x1, y0, y1))
    rows = [y0] if y1 - y0 < 16 else [y0, y1 - 5.0]
    occupancy = pt.rng.uniform(0.25, 0.8)
    for y in rows:
        x = x0 + 0.3
        while x + 2.5 <= x1:
            pt.marking(f.rect(pt, x - 0.06, x + 0.06, y, y + 5.0))
            if pt.rng.random() < occupancy:
                pt.car(*f.at(x + 1.25, y + 2.5), f.angle + math.pi / 2)
            x += 2.5


def commercial(pt: Painter, b: Block) -> None:
    """A flat-roofed hall, its yard with containers and clutter, and a car park."""
    (f, length, depth), _ = frontages(b)
    hl, hd = length * pt.rng.uniform(0.5, 0.8), depth * pt.rng.uniform(0.45, 0.65)
    hx = pt.rng.uniform(3.0, max(3.5, length - hl - 3))
    pt.slabs(f.rect(pt, 0, length, 0, depth), slab=pt.rng.uniform(3.0, 6.0))
    parking(pt, f, 2.0, length - 2.0, depth - min(17.0, depth * 0.35), depth - 1.0)
    yard_x = hx + hl + 2 if length - hx - hl > 12 else 2.0
    for _ in range(pt.rng.integers(1, 5)):
        pt.container(*f.at(yard_x + pt.rng.uniform(2, 8), pt.rng.uniform(4, hd)),
                     f.angle + math.pi / 2 * int(pt.rng.integers(2)))
    pt.soil(f.rect(pt, yard_x, yard_x + 12, 2.0, 2.0 + hd), mat.GRAVEL)
    pt.small_things(*f.at(yard_x + 5, hd / 2), 4.0, int(pt.rng.integers(2, 8)))
    if pt.rng.random() < 0.5:
        pt.heap(*f.at(yard_x + 6, hd + 2), pt.rng.uniform(1.5, 3.5))
    roof = str(pt.rng.choice(["gravel", "bitumen", "grey tiles"], p=[0.5, 0.35, 0.15]))
    pt.building(*f.at(hx + hl / 2, 2.0 + hd / 2), hl, hd, f.angle, roof, pt.rng.uniform(6, 12))
    for x in np.arange(1.5, length, pt.rng.uniform(9.0, 15.0)):
        if pt.rng.random() < 0.5:
            pt.canvas.trees.append((*f.at(float(x), depth - 0.5), pt.rng.uniform(2.0, 3.5),
                                    "broadleaf"))


def park(pt: Painter, b: Block) -> None:
    """Mown grass with groups of trees, paths and sometimes a playground."""
    (f, length, depth), _ = frontages(b)
    pt.lawn(f.rect(pt, 0, length, 0, depth), mown=pt.rng.random() < 0.5)
    path = pt.rng.uniform(0.2, 0.8) * depth
    pt.slabs(f.rect(pt, 0, length, path - 1.2, path + 1.2), slab=0.6)
    for _ in range(pt.rng.poisson(length * depth / 150.0)):
        cx, cy = pt.rng.uniform(0, length), pt.rng.uniform(0, depth)
        for _ in range(pt.rng.integers(1, 5)):
            x, y = cx + pt.rng.normal(0, 4), cy + pt.rng.normal(0, 4)
            if abs(y - path) > 2.5:
                pt.canvas.trees.append((*f.at(x, y), pt.rng.uniform(2.5, 6.0), "broadleaf"))
    if pt.rng.random() < 0.4:
        pt.pond(*f.at(pt.rng.uniform(0, length), pt.rng.uniform(0, depth)), pt.rng.uniform(4, 10))
    if pt.rng.random() < 0.6:
        x, y = pt.rng.uniform(8, max(9, length - 8)), pt.rng.uniform(6, max(7, depth - 6))
        pt.soil(f.rect(pt, x - 5, x + 5, y - 4, y + 4), mat.SAND)
        pt.small_things(*f.at(x, y), 3.5, int(pt.rng.integers(2, 6)))


def allotments(pt: Painter, b: Block) -> None:
    """Garden plots or a field: crops, beds of bare soil, sheds and hedges."""
    (f, length, depth), _ = frontages(b)
    pt.field(f.rect(pt, 0, length, 0, depth))
    plot = pt.rng.uniform(12.0, 20.0)
    for x in np.arange(0.0, length - 4, plot):
        for y in np.arange(0.0, depth - 4, plot):
            if pt.rng.random() < 0.5:
                pt.soil_patch(*f.at(x + plot / 2, y + plot / 2), pt.rng.uniform(1.5, 3.5), True)
            if pt.rng.random() < 0.4:
                pt.building(*f.at(x + 2.5, y + 2.5), 3.0, 2.5, f.angle,
                            _roof(pt, 0.6), 2.3)
            if pt.rng.random() < 0.4:
                pt.hedge(*f.at(x + plot / 2, y + plot - 0.5), plot, f.angle)
            if pt.rng.random() < 0.25:
                pt.canvas.trees.append((*f.at(x + pt.rng.uniform(0, plot), y + plot / 2),
                                        pt.rng.uniform(1.5, 3.0), "broadleaf"))


def building_site(pt: Painter, b: Block) -> None:
    """A building site of at most 40 × 35 m: bare ground, heaps, containers, a shell going up."""
    (f, length, depth), _ = frontages(b)
    w, d = min(length - 2, pt.rng.uniform(25.0, 40.0)), min(depth - 2, pt.rng.uniform(20.0, 35.0))
    x0 = pt.rng.uniform(1.0, max(1.5, length - w - 1))
    pt.soil(f.rect(pt, x0, x0 + w, 1, 1 + d))
    pt.building(*f.at(x0 + w / 2, 1 + d / 2), w * 0.45, d * 0.4, f.angle, "grey tiles",
                pt.rng.uniform(3, 9))
    for _ in range(pt.rng.integers(2, 6)):
        pt.heap(*f.at(x0 + pt.rng.uniform(3, w - 3), pt.rng.uniform(3, d - 2)),
                pt.rng.uniform(1.5, 4.0))
    for _ in range(pt.rng.integers(1, 4)):
        pt.container(*f.at(x0 + pt.rng.uniform(4, w - 4), pt.rng.uniform(2, 5)), f.angle)
    _garden(pt, f, 1.0, length - 1.0, d + 3.0, depth - 1.0)


FILLERS: tuple[tuple[Callable[[Painter, Block], None], float], ...] = (
    (residential, 0.35),
    (perimeter, 0.32),
    (commercial, 0.14),
    (park, 0.08),
    (allotments, 0.03),
    (building_site, 0.08),
)
"""Block fillers and how often each is drawn."""


def fill_block(pt: Painter, b: Block) -> None:
    """Fill one block with a randomly chosen kind of land use."""
    weights = np.asarray([w for _, w in FILLERS])
    filler = FILLERS[pt.rng.choice(len(FILLERS), p=weights / weights.sum())][0]
    filler(pt, b)
