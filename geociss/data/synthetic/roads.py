"""The street grid of a synthetic scene: roads with pavements, markings, parked cars, street trees.

Roads run along the two axes of the layout frame. The land between them is cut into blocks,
which :mod:`geociss.data.synthetic.blocks` fills.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from geociss.data.synthetic.objects import Painter


@dataclass(frozen=True)
class Road:
    """A straight road of the grid.

    Attributes:
        axis: 0 for a road at constant ``u`` (running along ``v``), 1 for constant ``v``.
        pos: its centre line, metres in the layout frame.
        half: half the width of the carriageway (m).
        walk: width of the pavement on each side (m).
    """

    axis: int
    pos: float
    half: float
    walk: float

    @property
    def outer(self) -> float:
        """Half the width including pavements (m)."""
        return self.half + self.walk

    @property
    def angle(self) -> float:
        """Direction of travel in the layout frame (radians)."""
        return math.pi / 2 if self.axis == 0 else 0.0

    def point(self, along: float, across: float) -> tuple[float, float]:
        """Layout-frame point at ``along`` metres down the road, ``across`` from its centre."""
        return (self.pos + across, along) if self.axis == 0 else (along, self.pos + across)


@dataclass(frozen=True)
class Block:
    """The land between roads, an axis-aligned rectangle of the layout frame (metres)."""

    u0: float
    u1: float
    v0: float
    v1: float


def plan_roads(rng: np.random.Generator, reach: float) -> list[Road]:
    """Draw the roads of a grid covering ``[-reach, reach]²`` of the layout frame."""
    roads: list[Road] = []
    for axis in (0, 1):
        spacing = rng.uniform(62.0, 105.0)
        pos = -reach - rng.uniform(0.0, spacing)
        while pos < reach + spacing:
            if rng.random() < 0.78:
                roads.append(Road(axis, pos, rng.uniform(2.8, 4.8), rng.uniform(1.4, 2.8)))
            pos += spacing * rng.uniform(0.75, 1.25)
    return roads


def blocks_between(roads: list[Road], reach: float) -> list[Block]:
    """The blocks left between the roads inside ``[-reach, reach]²``."""
    edges: list[list[tuple[float, float]]] = [[], []]
    for axis in (0, 1):
        cuts = sorted((r.pos - r.outer, r.pos + r.outer) for r in roads if r.axis == axis)
        bounds = [-reach - 60.0, *(x for c in cuts for x in c), reach + 60.0]
        edges[axis] = [(bounds[i], bounds[i + 1]) for i in range(0, len(bounds), 2)
                       if bounds[i + 1] - bounds[i] > 6.0]
    return [Block(u0, u1, v0, v1) for u0, u1 in edges[0] for v0, v1 in edges[1]]


def paint_roads(pt: Painter, roads: list[Road]) -> None:
    """Paint pavements, carriageways and markings of all roads that touch the tile."""
    u, v = pt.canvas.layout_grid()
    coords = (u, v)
    visible = [r for r in roads if abs(r.pos) < pt.canvas.extent + r.outer]
    dist = {id(r): np.abs(coords[r.axis] - np.float32(r.pos)) for r in visible}
    for r in visible:
        along = coords[1 - r.axis]
        pt.slabs(pt.canvas.full(dist[id(r)] <= r.outer, along, coords[r.axis]),
                 slab=pt.rng.uniform(1.5, 3.0))
    tarmac = {id(r): dist[id(r)] <= r.half for r in visible}
    for r in visible:
        pt.asphalt(pt.canvas.full(tarmac[id(r)], coords[1 - r.axis], coords[r.axis]))
    crossing = [np.zeros_like(u, dtype=bool), np.zeros_like(u, dtype=bool)]
    for r in visible:
        crossing[r.axis] |= dist[id(r)] <= r.outer
    for r in visible:
        d, along = dist[id(r)], coords[1 - r.axis]
        lines = np.abs(d - np.float32(r.half - 0.4)) < 0.06
        if r.half > 3.2:
            lines |= (d < 0.07) & (np.mod(along, 9.0) < 3.0)
        pt.marking(pt.canvas.full(lines & ~crossing[1 - r.axis], along, d))


def street_life(pt: Painter, roads: list[Road]) -> None:
    """Park cars along the kerbs, put a few in the lanes and plant street trees."""
    ext = pt.canvas.extent + 6.0
    for r in (r for r in roads if abs(r.pos) < pt.canvas.extent + r.outer):
        others = [o for o in roads if o.axis != r.axis]

        def clear(along: float, margin: float, others: list[Road] = others) -> bool:
            return all(abs(along - o.pos) > o.outer + margin for o in others)

        occupancy = pt.rng.uniform(0.0, 0.3) if r.half > 3.3 else 0.0
        for side in (-1.0, 1.0):
            along = -ext + pt.rng.uniform(0, 6)
            while along < ext:
                if pt.rng.random() < occupancy and clear(along, 4.0):
                    pt.car(*r.point(along, side * (r.half - 1.15)), r.angle)
                along += pt.rng.uniform(5.6, 7.0)
        for _ in range(pt.rng.poisson(0.8)):
            along = pt.rng.uniform(-ext, ext)
            if clear(along, 1.0):
                pt.car(*r.point(along, pt.rng.choice([-1.0, 1.0]) * r.half * 0.45), r.angle)
        if pt.rng.random() < 0.45:
            step, side = pt.rng.uniform(8.0, 14.0), pt.rng.choice([-1.0, 1.0], p=[0.5, 0.5])
            both = pt.rng.random() < 0.5
            along = -ext + pt.rng.uniform(0, step)
            while along < ext:
                for s in ((-1.0, 1.0) if both else (side,)):
                    if clear(along, 3.0):
                        u, v = r.point(along, s * (r.half + r.walk * 0.6))
                        pt.canvas.trees.append((u, v, pt.rng.uniform(2.2, 4.2), "broadleaf"))
                along += step
