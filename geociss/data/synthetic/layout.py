"""Lay out one synthetic scene: street grid, blocks, street life, then tree crowns on top.

The result is a :class:`~geociss.data.synthetic.canvas.Canvas` holding the class map, the
height map and the unlit surface colours; :mod:`geociss.data.synthetic.render` turns it into an
image.
"""

from __future__ import annotations

import math

import numpy as np

from geociss.data.synthetic.blocks import fill_block
from geociss.data.synthetic.canvas import BUILDING, Canvas, Sun
from geociss.data.synthetic.noise import NoiseBank
from geociss.data.synthetic.objects import Painter
from geociss.data.synthetic.roads import Block, blocks_between, paint_roads, plan_roads, street_life
from geociss.data.synthetic.surfaces import Tones

MAX_BLOCK_M = 95.0
"""Blocks longer than this are cut in two by a footpath (keeps halls and parks town-sized)."""


def split_blocks(rng: np.random.Generator, blocks: list[Block]) -> list[Block]:
    """Cut blocks longer than :data:`MAX_BLOCK_M` into smaller ones, leaving a 3 m path."""
    out: list[Block] = []
    todo = list(blocks)
    while todo:
        b = todo.pop()
        du, dv = b.u1 - b.u0, b.v1 - b.v0
        if max(du, dv) <= MAX_BLOCK_M:
            out.append(b)
            continue
        t = rng.uniform(0.35, 0.65)
        if du >= dv:
            cut = b.u0 + t * du
            todo += [Block(b.u0, cut - 1.5, b.v0, b.v1), Block(cut + 1.5, b.u1, b.v0, b.v1)]
        else:
            cut = b.v0 + t * dv
            todo += [Block(b.u0, b.u1, b.v0, cut - 1.5), Block(b.u0, b.u1, cut + 1.5, b.v1)]
    return sorted(out, key=lambda b: (b.u0, b.v0))


def _visible(b: Block, extent: float) -> bool:
    du = max(b.u0, 0.0, -b.u1)
    dv = max(b.v0, 0.0, -b.v1)
    return math.hypot(du, dv) < extent


def _plant_trees(pt: Painter) -> None:
    canvas = pt.canvas
    n, g = canvas.size, canvas.gsd
    for u, v, radius, kind in canvas.trees:
        x, y = canvas.to_image(u, v)
        col, row = int(x / g + n / 2), int(y / g + n / 2)
        if 0 <= row < n and 0 <= col < n and canvas.label[row, col] == BUILDING:
            continue
        pt.crown(u, v, radius, kind)


def layout_scene(size: int, gsd: float, rng: np.random.Generator) -> Canvas:
    """Draw the layout of one scene.

    Args:
        size: width and height in pixels.
        gsd: metres per pixel.
        rng: the scene's random generator (the only source of randomness).

    Returns:
        The filled canvas: class ids, heights and unlit surface colours.
    """
    angle = rng.normal(0.0, 0.04) if rng.random() < 0.5 else rng.uniform(-math.pi / 4, math.pi / 4)
    sun = Sun(math.radians(rng.normal(165.0, 25.0)), math.radians(rng.uniform(35.0, 60.0)))
    canvas = Canvas(size, gsd, angle, sun, NoiseBank.create(rng, size, gsd))
    pt = Painter(canvas, rng, Tones.draw(rng))
    u, v = canvas.layout_grid()
    pt.lawn(canvas.full(np.ones_like(u, dtype=bool), u, v))
    reach = canvas.extent + 10.0
    roads = plan_roads(rng, reach)
    paint_roads(pt, roads)
    for block in split_blocks(rng, blocks_between(roads, reach)):
        if _visible(block, canvas.extent):
            fill_block(pt, block)
    street_life(pt, roads)
    _plant_trees(pt)
    return canvas
