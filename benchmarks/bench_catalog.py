"""Catalogue scan: first scan of Potsdam-sized tiles, cached rescan, vector-label rasterising.

Run: ``python -m benchmarks.bench_catalog`` (about a minute on 2 cores). Writes the ``catalog``
section of docs/benchmarks.md.

Data: ``--tiles`` pairs of ``--size``² tiles (default 2 x 6000², the size of an ISPRS Potsdam
tile), EPSG:32632, 5 cm, tiled 256, deflate; images 4-band uint8 (smooth pattern plus noise,
written as MINISBLACK), labels 1-band uint8 with 6 classes in 50-px blocks. Peak memory is
the tracemalloc peak of Python/numpy allocations during the scan (GDAL's block cache is not
counted).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.transform import from_origin

from benchmarks._report import update_section
from geociss.data.catalog import Catalog
from geociss.data.classes import ClassSchema

GSD = 0.05
ORIGIN = (368000.0, 5806000.0)
SCHEMA = ClassSchema.preset("isprs")


def write_tiles(root: Path, count: int, size: int) -> None:
    """Write ``count`` image/label pairs of ``size``² side by side."""
    rng = np.random.default_rng(0)
    for i in range(count):
        transform = from_origin(ORIGIN[0] + i * size * GSD, ORIGIN[1], GSD, GSD)
        profile = {"driver": "GTiff", "width": size, "height": size, "crs": "EPSG:32632",
                   "transform": transform, "tiled": True, "blockxsize": 256,
                   "blockysize": 256, "compress": "deflate", "dtype": "uint8"}
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        with rasterio.open(root / "images" / f"t{i}.tif", "w", count=4,
                           photometric="MINISBLACK", **profile) as dst:
            for r0 in range(0, size, 1000):
                h = min(1000, size - r0)
                base = (np.arange(size)[None, :] + np.arange(r0, r0 + h)[:, None]) % 200
                noise = rng.integers(0, 16, (4, h, size), dtype=np.uint8)
                dst.write(base.astype(np.uint8)[None] + noise,
                          window=rasterio.windows.Window(0, r0, size, h))
        blocks = rng.integers(0, 6, (-(-size // 50), -(-size // 50)), dtype=np.uint8)
        label = np.kron(blocks, np.ones((50, 50), np.uint8))[:size, :size]
        with rasterio.open(root / "labels" / f"t{i}.tif", "w", count=1, **profile) as dst:
            dst.write(label, 1)


def timed_scan(images: Path, labels: Path, **kwargs: object) -> tuple[float, float, Catalog]:
    """Seconds and tracemalloc peak (MiB) of one scan."""
    tracemalloc.start()
    t0 = time.perf_counter()
    cat = Catalog.scan(images, labels, SCHEMA, **kwargs)  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, cat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiles", type=int, default=2)
    parser.add_argument("--size", type=int, default=6000)
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["GEOCISS_CACHE"] = str(root / "cache")
        write_tiles(root, args.tiles, args.size)
        images, labels = root / "images", root / "labels"
        mpix = args.tiles * args.size**2 / 1e6
        rows = []
        s, peak, _ = timed_scan(images, labels, chip_size=512)
        rows.append(("first scan, chip 512", s, peak, f"{mpix / s:.0f} Mpx/s"))
        s, peak, _ = timed_scan(images, labels, chip_size=512)
        rows.append(("second scan (manifest, unchanged)", s, peak, "0 tiles read"))
        t = (images / "t0.tif").stat()
        os.utime(images / "t0.tif", ns=(t.st_atime_ns, t.st_mtime_ns + 10**9))
        s, peak, _ = timed_scan(images, labels, chip_size=512)
        rows.append(("rescan after touching 1 image", s, peak, "1 tile read"))
        rng = np.random.default_rng(1)
        extent = args.tiles * args.size * GSD
        boxes = [shapely.box(x, y, x + 5, y + 5) for x, y in zip(
            ORIGIN[0] + rng.uniform(0, extent - 5, 2000),
            ORIGIN[1] - args.size * GSD + rng.uniform(0, args.size * GSD - 5, 2000), strict=True)]
        vec = root / "labels.gpkg"
        gpd.GeoDataFrame({"class": rng.integers(0, 6, 2000)}, geometry=boxes,
                         crs="EPSG:32632").to_file(vec)
        s, peak, _ = timed_scan(images, vec)
        rows.append(("vector labels (2000 polygons), rasterise + scan", s, peak, ""))
    table = [
        f"{args.tiles} tiles of {args.size}² px (4-band uint8 + 1-band labels), "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores.",
        "",
        "| case | seconds | peak Python memory (MiB) | note |",
        "| --- | ---: | ---: | --- |",
        *(f"| {name} | {s:.3f} | {peak:.0f} | {note} |" for name, s, peak, note in rows),
    ]
    text = "\n".join(table)
    print(text)
    if not args.no_report:
        update_section("catalog", "## Catalogue scan (`python -m benchmarks.bench_catalog`)\n\n"
                       + text)


if __name__ == "__main__":
    main()
