"""``predict`` on large rasters: wall time vs the bare model forward, throughput, peak memory.

Run: ``python -m benchmarks.bench_predict`` (about 10 minutes on 2 cores; ``--sizes 4096`` for
a quick look). Writes the ``predict`` section of docs/benchmarks.md.

Rasters of 4096², 16384² and 32768² pixels (3-band uint8, tiled 512, deflate, a cheap integer
pattern) are generated once into a cache folder. Each case runs in a fresh subprocess, which
reports:

* **predict**: wall time of :func:`geociss.inference.run.predict_many` (grid, reads in a
  DataLoader worker, forward, blending, streamed GTiff writes; the COG finalisation is timed
  apart) with the default settings: tile 512, overlap 128, batch 4, class raster only;
* **bare**: the model alone (``model(x)`` under ``inference_mode``) on the same number of tiles
  and the same batch size, on a tensor already in memory;
* **peak RSS**: ``VmHWM`` of the process (the reader worker's peak is reported apart), and the
  resident size after the imports and the model load, before predicting. Memory does not grow
  with the height; it grows with the width up to the row-band budget, so the 32768² raster is
  run a second time with a 32 MiB budget (column groups) to show the cap.

The model is deliberately tiny (a 3x3 conv to 8 channels, ReLU, a 1x1 conv to 3 classes) so
that the 32k² case finishes in minutes on a CPU; the ratio bare/predict is then a measure of
everything around the model. A second row on the 4096² raster uses a heavier fully convolutional
net (4 3x3 convs of width 32) to show the ratio when the model does real work.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.windows import Window as RioWindow
from torch import nn

from benchmarks._report import update_section

SIZES = (4096, 16384, 32768)
TILE, OVERLAP, BATCH = 512, 128, 4
DEFAULT_MB, SMALL_MB = 256, 32
CACHE = Path(os.environ.get("GEOCISS_BENCH_DIR", Path(tempfile.gettempdir()) / "geociss-bench"))


def make_raster(size: int) -> Path:
    """Write (once) a ``size``² 3-band uint8 GeoTIFF with a cheap pattern."""
    path = CACHE / f"pattern_{size}.tif"
    if path.is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.tif")
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32632", "transform": from_origin(368000.0, 5806000.0, 0.1, 0.1),
        "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
        "predictor": 2, "BIGTIFF": "IF_SAFER", "NUM_THREADS": "ALL_CPUS",
    }
    yy, xx = np.mgrid[0:512, 0:512]
    with rasterio.open(tmp, "w", **profile) as dst:
        for y in range(0, size, 512):
            for x in range(0, size, 512):
                gy, gx = yy + y, xx + x
                block = np.stack([
                    (gx // 7 + gy // 11) % 256, (gx * gy // 97) % 256, ((gx ^ gy) // 3) % 256,
                ]).astype(np.uint8)
                dst.write(block, window=RioWindow(x, y, 512, 512))
    tmp.rename(path)
    return path


def build_net(kind: str) -> nn.Module:
    """The benchmark models (random weights, fixed seed)."""
    torch.manual_seed(0)
    if kind == "tiny":
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1)).eval()
    layers: list[nn.Module] = []
    width = 3
    for _ in range(4):
        layers += [nn.Conv2d(width, 32, 3, padding=1), nn.ReLU()]
        width = 32
    return nn.Sequential(*layers, nn.Conv2d(32, 3, 1)).eval()


def _status(key: str) -> int:
    """A ``/proc/self/status`` entry in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def child(size: int, kind: str, buffer_mb: int) -> dict[str, float]:
    """One case, in this (fresh) process; returns the measurements."""
    from geociss.inference.grid import TileGrid
    from geociss.inference.model import LoadedModel, PredictOptions
    from geociss.inference.qml import ClassStyle
    from geociss.inference.run import predict_many

    src = make_raster(size)
    net = build_net(kind)
    style = ClassStyle(["a", "b", "c"], [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    model = LoadedModel(net, 3, 3, style, mean=[127.0] * 3, std=[64.0] * 3, key=kind, name=kind)
    opts = PredictOptions(tile=TILE, overlap=OVERLAP, batch_size=BATCH, buffer_mb=buffer_mb)
    baseline = _status("VmRSS")
    with tempfile.TemporaryDirectory(dir=CACHE) as out:
        import geociss.inference.run as run_module

        publish = run_module.publish
        spent = {"publish": 0.0}

        def timed_publish(*args, **kwargs):
            t = time.perf_counter()
            try:
                return publish(*args, **kwargs)
            finally:
                spent["publish"] += time.perf_counter() - t

        run_module.publish = timed_publish
        start = time.perf_counter()
        (result,) = predict_many([src], model, opts, out)
        total = time.perf_counter() - start
        assert result.status == "written", result.message
    peak = _status("VmHWM")
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    tiles = len(TileGrid.build(size, size, TILE, OVERLAP))
    x = torch.rand(BATCH, 3, TILE, TILE) * 255
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(-(-tiles // BATCH)):
            net(x)
    bare = time.perf_counter() - start
    return {
        "size": size, "model": kind, "buffer_mb": buffer_mb, "tiles": tiles,
        "predict_s": total - spent["publish"],
        "publish_s": spent["publish"], "bare_s": bare, "peak": peak, "baseline": baseline,
        "worker_peak": workers,
    }


def run_case(size: int, kind: str, buffer_mb: int) -> dict[str, float]:
    """Run :func:`child` in a fresh interpreter (clean peak-memory counters)."""
    cmd = [sys.executable, "-m", "benchmarks.bench_predict", "--child", str(size), kind,
           str(buffer_mb)]
    env = {"THP_MEM_ALLOC_ENABLE": "1", **os.environ}  # as `geociss predict` sets it
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def table(rows: list[dict[str, float]]) -> str:
    """The markdown table of the measured cases."""
    mib = 2**20
    lines = [
        "| raster | model | buffer MiB | tiles | predict s | bare model s | bare/predict | "
        "output Mpx/s | COG finalise s | peak RSS MiB | RSS before predict MiB | "
        "reader worker peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mpx = r["size"] ** 2 / 1e6
        lines.append(
            f"| {r['size']}² | {r['model']} | {r['buffer_mb']} | {r['tiles']} | "
            f"{r['predict_s']:.1f} | "
            f"{r['bare_s']:.1f} | {r['bare_s'] / r['predict_s']:.2f} | "
            f"{mpx / r['predict_s']:.1f} | {r['publish_s']:.1f} | {r['peak'] / mib:.0f} | "
            f"{r['baseline'] / mib:.0f} | {r['worker_peak'] / mib:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Entry point: run the cases and write the report section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--child", nargs=3, metavar=("SIZE", "MODEL", "MB"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1], int(args.child[2]))))
        return
    big, small = max(args.sizes), min(args.sizes)
    cases = [(s, "tiny", DEFAULT_MB) for s in args.sizes]
    cases += [(big, "tiny", SMALL_MB), (small, "conv32x4", DEFAULT_MB)]
    rows = []
    for size, kind, mb in cases:
        make_raster(size)
        rows.append(run_case(size, kind, mb))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    md = (
        f"`python -m benchmarks.bench_predict` on {os.cpu_count()} CPU cores, torch "
        f"{torch.__version__}: tile {TILE}, overlap {OVERLAP}, batch {BATCH}, one reader "
        "worker, class raster only; *buffer* = the row-band budget (`--buffer-mb`, default 256; "
        f"the {SMALL_MB} MiB row cuts the widest raster into column groups). "
        "*predict* excludes the COG "
        "finalisation (its own column). *bare model* = the network alone on the same number of "
        "tiles and batch size (goal: bare/predict >= 0.85). Peak RSS = VmHWM of the predicting "
        "process, including the torch baseline shown before it.\n\n" + table(rows)
    )
    update_section("predict", md)
    print(md)


if __name__ == "__main__":
    main()
