"""Training/eval data path: geociss WindowDataset vs plain rasterio reads vs torchgeo 0.8.1.

Run: ``python -m benchmarks.bench_sampler`` (about a minute on 2 cores). Writes the
``sampler`` section of docs/benchmarks.md. With ``--block-cache-mb 4`` (GDAL's block cache far
smaller than the tiles: nearly every window decodes its blocks, as when a dataset holds more
pixels than the cache, e.g. ISPRS Potsdam's 38 tiles of 6000², 5.5 GB) it writes the
``sampler-decode`` section.

Data: tiles of 2048² side by side, EPSG:32632, 0.09 m, tiled 256, deflate;
images 3-band uint8 noise, masks 1-band uint8 with 6 classes in 64-px blocks, nodata 255.
Every path reads the same 256² windows and ends with batches of 16 in the main process: image
float32 + mask int64, the same label look-up table applied to the stacked masks. geociss's
DataLoader workers hand over the raster's uint8 image and a uint8 mask (shared memory); the
main process converts them to the normalised float32 image and the int64 mask
(:func:`to_input`), timed as part of the path, as training does on its device. Rates are
patches per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.windows import Window as RioWindow
from torch.utils.data import DataLoader

from benchmarks._report import update_section
from geociss.data.classes import ClassSchema
from geociss.data.dataset import Collate, WindowDataset
from geociss.data.normalise import input_columns, normalise
from geociss.data.records import BandStats, Region, TileRecord, Window
from geociss.data.samplers import GridWindowSampler, RandomWindowSampler

SIZE, GSD, BATCH, PATCH = 2048, 0.09, 16, 256
GRID_EPOCHS = 4
ORIGIN = (368000.0, 5806000.0)
SCHEMA = ClassSchema.preset("isprs")
LUT = np.array([0, 0, 1, 2, 255, 3] + [255] * 250, np.uint8)  # a step's class -> channel table
MEAN, STD = [127.5] * 3, [73.9] * 3  # uint8 noise: what the band statistics would be
COLUMNS = input_columns(MEAN, STD)


def write_tiles(root: Path, count: int) -> list[TileRecord]:
    """Write ``count`` image/mask tile pairs side by side and return their records."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(count):
        transform = from_origin(ORIGIN[0] + i * SIZE * GSD, ORIGIN[1], GSD, GSD)
        profile = {"driver": "GTiff", "width": SIZE, "height": SIZE, "crs": "EPSG:32632",
                   "transform": transform, "tiled": True, "blockxsize": 256, "blockysize": 256,
                   "compress": "deflate", "dtype": "uint8"}
        image = rng.integers(0, 256, (3, SIZE, SIZE), dtype=np.uint8)
        blocks = rng.integers(0, 6, (SIZE // 64, SIZE // 64), dtype=np.uint8)
        mask = np.kron(blocks, np.ones((64, 64), np.uint8))
        img, msk = root / f"t{i}_img.tif", root / f"t{i}_mask.tif"
        with rasterio.open(img, "w", count=3, **profile) as dst:
            dst.write(image)
        with rasterio.open(msk, "w", count=1, nodata=255, **profile) as dst:
            dst.write(mask, 1)
        hist = np.bincount(mask.ravel(), minlength=6).astype(np.int64)
        stats = BandStats(SIZE * SIZE, (0.0,) * 3, (0.0,) * 3, (0.0,) * 3, (255.0,) * 3)
        region = Region(Window(i, 0, 0, SIZE, SIZE), hist, 0)
        records.append(TileRecord(
            stem=f"t{i}", image=img, label=msk, label_encoded=False, width=SIZE, height=SIZE,
            bands=3, dtype="uint8", crs=rasterio.crs.CRS.from_epsg(32632).to_wkt(),
            transform=tuple(transform)[:6], nodata=None, has_mask=False, hist=hist, ignored=0,
            stats=stats, regions=[region],
        ))
    return records


def rates(paths: list[tuple[str, str, int, Callable[[], int]]], repeats: int) -> list[tuple]:
    """Patches per second of every path, ``repeats`` rounds, the paths interleaved per round.

    Interleaving exposes every path to the same background load (the machine is shared), so
    the ratios of the medians are fair even when the absolute rates drift.
    """
    out: list[list[float]] = [[] for _ in paths]
    for round_ in range(repeats + 1):  # round 0 warms up (imports, allocator, page cache)
        for k, (*_, run) in enumerate(paths):
            start = time.perf_counter()
            n = run()
            if round_:
                out[k].append(n / (time.perf_counter() - start))
    return [(kind, name, n, r) for (kind, name, n, _), r in zip(paths, out, strict=True)]


def count(loader: Iterable[dict], convert: Callable[[dict], dict] | None = None) -> int:
    """Drain a loader (converting each batch), check the batch layout, return the patches."""
    n = 0
    for batch in loader:
        if convert is not None:
            batch = convert(batch)
        assert batch["image"].dtype == torch.float32 and batch["mask"].dtype == torch.int64
        n += batch["image"].shape[0]
    return n


def to_input(batch: dict) -> dict:
    """The main-process side of geociss's path: raw batch -> normalised float32 + int64 mask.

    What ``IncrementalStep.normalise`` and the evaluation loop do on the training device (here
    the CPU): float conversion, nodata filling (a ``nodata`` mask only comes with batches that
    hold invalid pixels) and ``(x - mean) / std``.
    """
    m, inv, _, _ = COLUMNS
    image = normalise(batch["image"], m, inv, inplace=True, nodata=batch.get("nodata"))
    return {**batch, "image": image, "mask": batch["mask"].long()}



def geociss_loader(
    records: list[TileRecord], sampler: Iterable[Window], workers: int, persistent: bool = False
) -> DataLoader:
    """WindowDataset + DataLoader as training builds it (``persistent``: workers kept between
    passes, as the training loader keeps them between epochs)."""
    return DataLoader(WindowDataset(records, SCHEMA), batch_size=BATCH, sampler=sampler,
                      num_workers=workers, collate_fn=Collate(LUT),
                      persistent_workers=persistent and workers > 0)


def rasterio_run(records: list[TileRecord], windows: list[Window]) -> int:
    """Plain windowed reads with handles opened once, batched as lean as numpy allows.

    The same output as geociss (float32 images, int64 masks through the same table; geociss
    also normalises), with no DataLoader, no schema check, no nodata handling and
    single-threaded numpy copies (the fastest way found on this machine), so it is the floor
    that geociss is measured against.
    """
    handles = {i: (rasterio.open(r.image), rasterio.open(r.label)) for i, r in enumerate(records)}
    lut = LUT.astype(np.int64)
    n = 0
    try:
        for start in range(0, len(windows), BATCH):
            images, masks = [], []
            for w in windows[start : start + BATCH]:
                img, msk = handles[w.tile]
                rw = RioWindow(w.col, w.row, w.width, w.height)
                images.append(img.read(window=rw).astype(np.float32))
                masks.append(msk.read(1, window=rw))
            batch = {
                "image": torch.from_numpy(np.stack(images)),
                "mask": torch.from_numpy(np.take(lut, np.stack(masks), mode="clip")),
            }
            n += batch["image"].shape[0]
    finally:
        for img, msk in handles.values():
            img.close()
            msk.close()
    return n


def torchgeo_dataset(root: Path) -> object:
    """``Img & Msk`` RasterDatasets over the same files.

    Image first: ``&`` converts the second dataset to the first's CRS and resolution.
    """
    from torchgeo.datasets import RasterDataset

    class Img(RasterDataset):
        filename_glob = "*_img.tif"

    class Msk(RasterDataset):
        filename_glob = "*_mask.tif"
        is_image = False

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Img(str(root)) & Msk(str(root))


def geoslices(records: list[TileRecord], windows: list[Window]) -> list[tuple[slice, ...]]:
    """The windows as torchgeo GeoSlices (integer pixel offsets -> CRS bounds)."""
    out = []
    for w in windows:
        a, _, c, _, e, f = records[w.tile].transform
        x0, y1 = c + w.col * a, f + w.row * e
        x1, y0 = x0 + w.width * a, y1 + w.height * e
        out.append((slice(x0, x1), slice(y0, y1), slice(pd.Timestamp.min, pd.Timestamp.max)))
    return out


def torchgeo_loader(root: Path, queries: Callable[[object], Iterable], workers: int) -> DataLoader:
    """torchgeo ``ds[query]`` through a DataLoader with ``stack_samples``, workers kept."""
    from torchgeo.datasets import stack_samples

    ds = torchgeo_dataset(root)
    return DataLoader(ds, batch_size=BATCH, sampler=queries(ds), num_workers=workers,
                      collate_fn=stack_samples, persistent_workers=workers > 0)


def torchgeo_count(loader: DataLoader) -> int:
    """Drain a torchgeo loader, remapping each batch's mask with the same table."""
    lut = torch.from_numpy(LUT.astype(np.int64))
    n = 0
    for batch in loader:
        batch["mask"] = torch.take(lut, batch["mask"])
        n += batch["image"].shape[0]
    return n


class Zeros(torch.utils.data.Dataset):
    """Zero-filled samples of the benchmark's shape: the DataLoader's own cost.

    ``raw``: uint8 image and mask (what geociss's workers hand over), else float32 and int64.
    """

    def __init__(self, raw: bool = False) -> None:
        self.raw = raw

    def __getitem__(self, window: Window) -> dict:
        if self.raw:
            return {"image": torch.zeros(3, PATCH, PATCH, dtype=torch.uint8),
                    "mask": torch.zeros(PATCH, PATCH, dtype=torch.uint8)}
        return {"image": torch.zeros(3, PATCH, PATCH), "mask": torch.zeros(PATCH, PATCH).long()}


def zeros_loader(windows: list[Window], workers: int, raw: bool = False) -> DataLoader:
    """Zero-filled batches through a DataLoader (default collate), workers kept between passes."""
    return DataLoader(Zeros(raw), batch_size=BATCH, sampler=windows, num_workers=workers,
                      persistent_workers=workers > 0)


def check_same_pixels(root: Path, records: list[TileRecord], windows: list[Window]) -> None:
    """geociss and torchgeo read identical pixels for a few windows (geociss's raw uint8)."""
    ds, tg = WindowDataset(records, SCHEMA), torchgeo_dataset(root)
    for w, q in zip(windows[:8], geoslices(records, windows[:8]), strict=True):
        a, b = ds[w], tg[q]
        assert a["image"].dtype == torch.uint8 and a["mask"].dtype == torch.uint8, w
        assert torch.equal(a["image"].float(), b["image"]), w
        assert torch.equal(a["mask"].long(), b["mask"]), w


def measure(root: Path, records: list[TileRecord], n: int, n_tg: int, repeats: int) -> list:
    """All rows of the table: (kind, path, patches, rates)."""
    from torchgeo.samplers import GridGeoSampler, RandomGeoSampler

    regions = [r for t in records for r in t.regions]
    rnd = RandomWindowSampler(regions, PATCH, length=n, seed=0, tiles=records)
    windows = list(rnd)
    gwin = list(GridWindowSampler(records, PATCH)) * GRID_EPOCHS  # long enough to time
    check_same_pixels(root, records, windows)
    # the training loader keeps its workers between epochs (persistent_workers): the warm-up
    # round starts them and opens their raster handles, the timed rounds are later epochs
    tg_windows = geoslices(records, windows[:n_tg])
    tg_grid = len(GridGeoSampler(torchgeo_dataset(root), PATCH, PATCH))
    rnd_0, grid_0 = geociss_loader(records, rnd, 0), geociss_loader(records, gwin, 0)
    rnd_2 = geociss_loader(records, rnd, 2, persistent=True)
    grid_2 = geociss_loader(records, gwin, 2, persistent=True)
    zeros_2, zeros_raw_2 = zeros_loader(windows, 2), zeros_loader(windows, 2, raw=True)
    tg = {w: torchgeo_loader(root, lambda _: tg_windows, w) for w in (0, 2)}
    tg_random = torchgeo_loader(root, lambda d: RandomGeoSampler(d, PATCH, n_tg), 0)
    tg_grid_loader = torchgeo_loader(root, lambda d: GridGeoSampler(d, PATCH, PATCH), 0)
    paths = [
        ("random", "plain rasterio, handles opened once (loop, no DataLoader)", n,
         lambda: rasterio_run(records, windows)),
        ("random", "**geociss** WindowDataset + RandomWindowSampler, workers=0", n,
         lambda: count(rnd_0, to_input)),
        ("random", "**geociss** WindowDataset + RandomWindowSampler, workers=2 (persistent)", n,
         lambda: count(rnd_2, to_input)),
        ("random", "torchgeo `Img & Msk`, same windows (first part), workers=0", n_tg,
         lambda: torchgeo_count(tg[0])),
        ("random", "torchgeo `Img & Msk`, same windows (first part), workers=2 (persistent)", n_tg,
         lambda: torchgeo_count(tg[2])),
        ("random", "torchgeo `Img & Msk` + RandomGeoSampler, workers=0", n_tg,
         lambda: torchgeo_count(tg_random)),
        ("grid", f"plain rasterio, same grid windows ({GRID_EPOCHS} passes)", len(gwin),
         lambda: rasterio_run(records, gwin)),
        ("grid", f"**geociss** GridWindowSampler(256) ({GRID_EPOCHS} passes), workers=0", len(gwin),
         lambda: count(grid_0, to_input)),
        ("grid", f"**geociss** GridWindowSampler(256) ({GRID_EPOCHS} passes), workers=2 "
         "(persistent)", len(gwin), lambda: count(grid_2, to_input)),
        ("grid", f"torchgeo GridGeoSampler(256), workers=0 ({tg_grid} chips, float drift)",
         tg_grid, lambda: torchgeo_count(tg_grid_loader)),
        ("reference", "DataLoader moving zero-filled batches only, workers=2 (persistent)", n,
         lambda: count(zeros_2)),
        ("reference", "DataLoader moving zero-filled uint8 batches + the conversion, workers=2 "
         "(persistent)",
         n, lambda: count(zeros_raw_2, to_input)),
        ("random", "**geociss** workers=2, a new loader per pass (start-up timed)", n,
         lambda: count(geociss_loader(records, rnd, 2), to_input)),
        ("grid", f"**geociss** GridWindowSampler(256) ({GRID_EPOCHS} passes), workers=2, a new "
         "loader per pass", len(gwin), lambda: count(geociss_loader(records, gwin, 2), to_input)),
    ]
    return rates(paths, repeats)


def _ratio(rows: list[tuple], num: int, den: int) -> str:
    """Median over rounds of the paired ratio, and the range."""
    r = [a / b for a, b in zip(rows[num][3], rows[den][3], strict=True)]
    return f"**{statistics.median(r):.2f}×** ({min(r):.2f}–{max(r):.2f})"


def table(
    rows: list[tuple], tiles: int, repeats: int, load: tuple[float, ...],
    cache_mb: int | None = None, command: str = "python -m benchmarks.bench_sampler",
) -> str:
    """The markdown section (``cache_mb``: GDAL's block cache was set to that size)."""
    decoded = tiles * SIZE * SIZE * 4 / 1e6  # 3 image bands + 1 mask band, uint8
    title, cache = (
        (" — windows decoded",
         f"GDAL's block cache set to {cache_mb} MB, far below the {decoded:.0f} MB of decoded "
         "tiles: "
         "nearly every window decompresses its blocks, as when a dataset holds more pixels "
         "than the cache (5 % of RAM by default). ")
        if cache_mb is not None
        else ("", "GDAL's block cache at its default size: after the warm-up round every block "
              f"of the {decoded:.0f} MB of decoded tiles is cached, in every process. ")
    )
    lines = [
        f"## Window sampler and reader (`geociss.data`){title}",
        "",
        f"`{command}` — {tiles} tiles of {SIZE}² (EPSG:32632, 0.09 m, "
        "tiled 256, deflate), 3-band uint8 noise + 1-band mask, 256² patches, batch 16; "
        + cache
        + "Every "
        "path ends with image float32 + mask int64 remapped by a label look-up table in the "
        "main process. geociss's workers hand over the uint8 image and uint8 mask (shared "
        "memory); the main process converts them to the normalised float32 image and the int64 "
        "mask, timed as part of the path. "
        "Each loader is built once and kept between rounds, its workers too (training keeps "
        "them between epochs); the warm-up round starts them and opens their raster handles, "
        "the last two rows build a new loader every pass. "
        f"{repeats} timed rounds after a warm-up round, the paths interleaved in each round; "
        "median. One torch thread. "
        f"{os.cpu_count()} CPUs (shared machine, load average {load[0]:.1f} at start), "
        f"Python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"rasterio {rasterio.__version__}.",
        "",
        "| windows | path | patches | patches/s (rounds) | median |",
        "|---|---|---:|---|---:|",
    ]
    for kind, name, n, r in rows:
        runs = " / ".join(f"{x:,.0f}" for x in r)
        lines.append(f"| {kind} | {name} | {n} | {runs} | {statistics.median(r):,.0f} |")
    lines += [
        "",
        "Ratios (median of the per-round ratios, range): geociss workers=0 / plain rasterio = "
        f"{_ratio(rows, 1, 0)} (goal ≥ 0.8); geociss workers=2 / workers=0 = "
        f"{_ratio(rows, 2, 1)} random, {_ratio(rows, 8, 7)} grid (goal ≥ 0.8) with the "
        "workers kept between passes as training keeps them between epochs, "
        f"{_ratio(rows, 12, 1)} random, {_ratio(rows, 13, 7)} grid with a new loader per pass "
        "(two worker processes started and their raster handles opened every pass, once per "
        "run in training); "
        f"geociss / torchgeo = {_ratio(rows, 1, 3)} with 0 "
        f"workers, {_ratio(rows, 2, 4)} with 2 (goal ≥ 8); grid: geociss / plain rasterio = "
        f"{_ratio(rows, 7, 6)}, geociss / torchgeo = {_ratio(rows, 7, 9)}. geociss's grid has "
        "no float drift (64 windows per 2048² tile, none padded); torchgeo's GridGeoSampler "
        "makes 81 per tile, partly outside the raster (float rounding of its CRS-unit grid adds a "
        "row and a column of chips). The reference rows are the DataLoader alone with "
        "zero-filled batches: float32 image + int64 mask crossing the process boundary (what "
        "geociss's workers handed over before), and uint8 + uint8 converted in the main "
        "process (what they hand over now), the ceiling of the geociss rows with 2 workers.",
    ]
    return "\n".join(lines)


def main() -> None:
    """Write the data, measure every path, print and record the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=3)
    parser.add_argument("--windows", type=int, default=1600, help="random windows")
    parser.add_argument("--torchgeo-windows", type=int, default=400,
                        help="how many of the same windows torchgeo reads (it is slow)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--block-cache-mb", type=int, default=None,
                        help="GDAL's block cache size (default: GDAL's, 5 %% of RAM)")
    args = parser.parse_args()
    if args.block_cache_mb is not None:  # before the first raster is opened; workers inherit it
        os.environ["GDAL_CACHEMAX"] = str(args.block_cache_mb)
    # One intra-op thread, as in DataLoader workers: with 2 threads on a busy 2-core machine,
    # torch's small ops (torchgeo's torch.cat/.to, stacking) ran up to 10x slower.
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench_sampler_") as tmp:
        root = Path(tmp)
        records = write_tiles(root, args.tiles)
        load = os.getloadavg()
        rows = measure(root, records, args.windows, args.torchgeo_windows, args.repeats)
        command = "python -m benchmarks.bench_sampler " + " ".join(sys.argv[1:])
        md = table(rows, args.tiles, args.repeats, load, args.block_cache_mb, command.strip())
    print(md)
    if not args.no_write:
        update_section("sampler" if args.block_cache_mb is None else "sampler-decode", md)


if __name__ == "__main__":
    main()
