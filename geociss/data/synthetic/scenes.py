"""Generate sets of ISPRS-like sample scenes: one call, a folder of GeoTIFF image/label pairs.

Each tile draws from its own generator ``np.random.default_rng([seed, tile])``, so a tile does
not depend on how many tiles are made, and the same seed gives byte-identical files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geociss.data.classes import ClassSchema
from geociss.data.synthetic.layout import layout_scene
from geociss.data.synthetic.render import BAND_NAMES, BAND_ORDERS, render
from geociss.errors import ConfigError, DataError

MIN_SIZE, MAX_SIZE = 64, 4096
MIN_GSD, MAX_GSD = 0.03, 0.5
MAX_TILES = 10_000
STEM = re.compile(r"^scene_\d{3,}$")


@dataclass(frozen=True)
class SceneSet:
    """What :func:`generate_scenes` wrote.

    Attributes:
        root: the output folder.
        images: folder of the image GeoTIFFs (``<stem>.tif``).
        labels: folder of the label GeoTIFFs (``<stem>.tif``, class ids).
        schema: the class schema file (``classes.yaml``).
        stems: file stems, in tile order.
        class_counts: pixels per class name over all tiles, in class-id order.
    """

    root: Path
    images: Path
    labels: Path
    schema: Path
    stems: list[str]
    class_counts: dict[str, int]

    def shares(self) -> dict[str, float]:
        """Fraction of all pixels per class name."""
        total = sum(self.class_counts.values()) or 1
        return {name: count / total for name, count in self.class_counts.items()}


def make_scene(size: int, gsd: float, rng: np.random.Generator, bands: str = "rgb"
               ) -> tuple[np.ndarray, np.ndarray]:
    """Draw one scene in memory.

    Args:
        size: width and height in pixels.
        gsd: metres per pixel.
        rng: the scene's random generator.
        bands: ``rgb``, ``irrg`` (near-infrared, red, green) or ``rgbir``.

    Returns:
        (image, label): uint8 (C, size, size) image and uint8 (size, size) class ids of the
        ``isprs`` schema.
    """
    if bands not in BAND_ORDERS:
        raise ConfigError(f"bands {bands!r}: choose one of {', '.join(BAND_ORDERS)}")
    canvas = layout_scene(size, gsd, rng)
    return render(canvas, rng, bands), canvas.label


def _check(out: Path, tiles: int, size: int, seed: int, bands: str, gsd: float,
           overwrite: bool) -> None:
    if bands not in BAND_ORDERS:
        raise ConfigError(f"--bands {bands!r}: choose one of {', '.join(BAND_ORDERS)}")
    if not 1 <= tiles <= MAX_TILES:
        raise ConfigError(f"--tiles {tiles}: must be between 1 and {MAX_TILES}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ConfigError(f"--size {size}: must be between {MIN_SIZE} and {MAX_SIZE} pixels")
    if not MIN_GSD <= gsd <= MAX_GSD:
        raise ConfigError(f"--gsd {gsd}: must be between {MIN_GSD} and {MAX_GSD} m per pixel")
    if seed < 0:
        raise ConfigError(f"--seed {seed}: must be 0 or more")
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder")
    held = [p for d in ("images", "labels") for p in (out / d).glob("*.tif")]
    held += [out / "classes.yaml"] if (out / "classes.yaml").exists() else []
    if held and not overwrite:
        raise DataError(out, f"already holds {len(held)} scene file(s); pass --overwrite to "
                        "replace them, or choose another folder")


def generate_scenes(out: Path, tiles: int = 6, size: int = 1024, seed: int = 0,
                    bands: str = "rgb", crs: str = "EPSG:32632", gsd: float = 0.09,
                    overwrite: bool = False) -> SceneSet:
    """Write a set of ISPRS-like scenes: ``images/``, ``labels/`` and ``classes.yaml``.

    Args:
        out: output folder (created if needed).
        tiles: number of scenes.
        size: width and height of each scene in pixels.
        seed: random seed; the same seed gives byte-identical files.
        bands: ``rgb``, ``irrg`` or ``rgbir``.
        crs: projected CRS of the tile grid (metre units).
        gsd: ground sampling distance in metres per pixel.
        overwrite: replace the scenes of an earlier run in ``out``; with it, ``scene_*`` files
            left over from a larger earlier set are removed too, so the folder holds one set.

    Returns:
        What was written.

    Raises:
        ConfigError: an option is out of range or the CRS is unusable.
        DataError: ``out`` is a file, or already holds scenes and ``overwrite`` is False.
    """
    from geociss.data.synthetic.writer import (
        grid_origin,
        projected_crs,
        tile_transform,
        write_image,
        write_label,
    )

    out = Path(out)
    _check(out, tiles, size, seed, bands, gsd, overwrite)
    ref = projected_crs(crs)
    origin = grid_origin(ref)
    schema = ClassSchema.preset("isprs")
    names = tuple(BAND_NAMES[i] for i in BAND_ORDERS[bands])
    width = max(3, len(str(tiles - 1)))
    stems = [f"scene_{i:0{width}d}" for i in range(tiles)]
    counts = np.zeros(schema.num_classes, dtype=np.int64)
    for i, stem in enumerate(stems):
        image, label = make_scene(size, gsd, np.random.default_rng([seed, i]), bands)
        counts += np.bincount(label.ravel(), minlength=schema.num_classes)[: schema.num_classes]
        transform = tile_transform(origin, i, tiles, size, gsd)
        tags = {"generator": "geociss sample-data", "seed": str(seed), "tile": str(i)}
        write_image(out / "images" / f"{stem}.tif", image, ref, transform, names, tags)
        write_label(out / "labels" / f"{stem}.tif", label, ref, transform, schema, tags)
    schema.to_yaml(out / "classes.yaml")
    keep = set(stems)
    for folder in (out / "images", out / "labels"):
        for stale in folder.glob("scene_*.tif"):
            if STEM.match(stale.stem) and stale.stem not in keep:
                stale.unlink()
    return SceneSet(out, out / "images", out / "labels", out / "classes.yaml", stems,
                    dict(zip(schema.names, counts.tolist(), strict=True)))
