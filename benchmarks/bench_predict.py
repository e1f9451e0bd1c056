"""``predict`` on large rasters: wall time vs the bare model forward, throughput, peak memory.

Run: ``python -m benchmarks.bench_predict`` (25-60 minutes on 2 cores, depending on what else
runs there; ``--quick`` runs the 4096² rows only; ``--rounds N`` repeats the 4096² rows N times,
interleaved, and reports the median and range of each time and ratio). Writes the ``predict``
section of docs/benchmarks.md.

Rasters of 4096², 16384² and 32768² pixels (3-band uint8, tiled 512, deflate, a cheap integer
pattern) are generated once into a cache folder. Each case runs in a fresh subprocess, which
reports:

* **predict**: wall time of :func:`geociss.inference.run.predict_many` (grid, reads in a
  DataLoader worker, forward, blending, streamed GTiff writes; the COG finalisation is timed
  apart) with the default settings: tile 512, overlap 128, batch 4, class raster only;
* **bare**: the model alone (``model(x)`` under ``inference_mode``) on the same number of tiles
  (overlap included: the extra tiles are the model's cost, not overhead) and the same batch
  size, on a tensor already in memory;
* **peak RSS**: ``VmHWM`` of the process (the reader worker's peak is reported apart), and the
  resident size after the imports and the model load, before predicting.

The models are geociss :class:`~geociss.models.SegmentationModel` networks built from a
:class:`~geociss.models.ModelConfig` as a step bundle would build them (random weights, 4 + 1
classes like the demo's 4-1 task):

* ``deeplab-lite0``: the ``geociss demo`` network (``geociss.demo.MODEL``: ImageNet
  EfficientNet-Lite0, read offline, + DeepLab-v3+ head), on 4096²;
* ``deeplab-tiny``: the former demo network (encoder ``tiny``, ASPP width 64, group norm,
  output stride 16), on 4096² and 16384² (the memory rows);
* ``deeplab-resnet18``: encoder ``resnet18`` (``weights: none``, output stride 16, ASPP 256), on
  4096², a realistic CPU deployment;
* ``toy``: a 3x3 conv to 8 channels, ReLU, a 1x1 conv to 3 classes, which does almost no work:
  an overhead stress test on 4096², and the memory row at 32768² (predict only, no bare run:
  the tiny DeepLab would need about half an hour there on 2 cores).
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
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.windows import Window as RioWindow
from torch import nn

from benchmarks._report import update_section

TILE, OVERLAP, BATCH, BUFFER_MB = 512, 128, 4, 256
CLASSES_PER_STEP = [4, 1]
CASES: list[tuple[int, str, bool]] = [  # (raster side, model, measure the bare model)
    (4096, "deeplab-lite0", True),
    (4096, "deeplab-tiny", True),
    (4096, "deeplab-resnet18", True),
    (4096, "toy", True),
    (32768, "toy", False),
    (16384, "deeplab-tiny", True),
]
"""The longest case last; the report is rewritten after every case."""
ROLE = {
    "deeplab-lite0": "demo model",
    "deeplab-tiny": "from-scratch tiny model",
    "deeplab-resnet18": "CPU deployment",
    "toy": "overhead stress test",
}
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
    """The benchmark models (random weights, fixed seed), in eval mode."""
    torch.manual_seed(0)
    if kind == "toy":
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1)).eval()
    from geociss.models import ModelConfig, SegmentationModel

    if kind == "deeplab-lite0":  # geociss.demo.MODEL: the pretrained demo network
        from geociss.demo import MODEL

        config = ModelConfig(**MODEL)
    elif kind == "deeplab-tiny":
        config = ModelConfig(encoder="tiny", weights="none", aspp_channels=64, norm="group",
                             norm_groups=16, output_stride=16)
    elif kind == "deeplab-resnet18":
        config = ModelConfig(encoder="resnet18", weights="none", output_stride=16)
    else:
        raise ValueError(f"unknown benchmark model {kind!r}")
    return SegmentationModel(config, CLASSES_PER_STEP).eval()


def _status(key: str) -> int:
    """A ``/proc/self/status`` entry in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def child(size: int, kind: str, bare: bool) -> dict[str, Any]:
    """One case, in this (fresh) process; returns the measurements."""
    from geociss.inference.grid import TileGrid
    from geociss.inference.model import LoadedModel, PredictOptions
    from geociss.inference.qml import ClassStyle
    from geociss.inference.run import predict_many

    src = make_raster(size)
    net = build_net(kind)
    classes = 3 if kind == "toy" else sum(CLASSES_PER_STEP)
    style = ClassStyle([f"class {i}" for i in range(classes)],
                       [(40 * i, 255 - 40 * i, 128) for i in range(classes)])
    model = LoadedModel(net, 3, classes, style, mean=[127.0] * 3, std=[64.0] * 3, key=kind,
                        name=kind)
    opts = PredictOptions(tile=TILE, overlap=OVERLAP, batch_size=BATCH, buffer_mb=BUFFER_MB)
    baseline = _status("VmRSS")
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(dir=CACHE) as out:
        import geociss.inference.run as run_module

        publish = run_module.publish
        spent = {"publish": 0.0}

        def timed_publish(*args: Any, **kwargs: Any) -> Any:
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
    bare_s = None
    if bare:
        x = torch.rand(BATCH, 3, TILE, TILE) * 255
        load.append(os.getloadavg()[0])
        start = time.perf_counter()
        with torch.inference_mode():
            for _ in range(-(-tiles // BATCH)):
                net(x)
        bare_s = time.perf_counter() - start
    return {
        "size": size, "model": kind, "tiles": tiles, "predict_s": total - spent["publish"],
        "publish_s": spent["publish"], "bare_s": bare_s, "peak": peak, "baseline": baseline,
        "worker_peak": workers, "load": load,
    }


def run_case(size: int, kind: str, bare: bool) -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter (clean peak-memory counters)."""
    cmd = [sys.executable, "-m", "benchmarks.bench_predict", "--child", str(size), kind,
           "bare" if bare else "predict"]
    env = {"THP_MEM_ALLOC_ENABLE": "1", **os.environ}  # as `geociss predict` sets it
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of the measured cases."""
    mib = 2**20
    lines = [
        "| raster | model | tiles | predict s | bare model s | bare/predict | output Mpx/s | "
        "COG finalise s | peak RSS MiB | RSS before predict MiB | reader worker peak MiB | "
        "load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mpx = r["size"] ** 2 / 1e6
        bare, ratio, role = "–", "–", "memory only"
        if r["bare_s"] is not None:
            role = ROLE[r["model"]]
            bare, ratio = f"{r['bare_s']:.1f}", f"{r['bare_s'] / r['predict_s']:.2f}"
            ratios = r.get("ratios") or []
            if len(ratios) > 1:
                ratio = (f"**{_median(ratios):.2f}** ({min(ratios):.2f}–{max(ratios):.2f}, "
                         f"{len(ratios)} rounds)")
        lines.append(
            f"| {r['size']}² | {r['model']} ({role}) | {r['tiles']} | "
            f"{r['predict_s']:.1f} | {bare} | {ratio} | {mpx / r['predict_s']:.1f} | "
            f"{r['publish_s']:.1f} | {r['peak'] / mib:.0f} | {r['baseline'] / mib:.0f} | "
            f"{r['worker_peak'] / mib:.0f} | {' / '.join(f'{v:.1f}' for v in r['load'])} |"
        )
    return "\n".join(lines)


def describe(rows: list[dict[str, Any]]) -> str:
    """The report section: settings, how to read the table, the table."""
    return (
        f"`python -m benchmarks.bench_predict` on {os.cpu_count()} CPU cores shared with other "
        f"jobs (*load avg* = their 1-minute load average when the predict run / the bare run "
        f"started: every time grows with it, and a ratio is only fair when both are alike), "
        f"torch {torch.__version__}: tile {TILE}, overlap "
        f"{OVERLAP}, batch {BATCH}, one reader worker, class raster only, row-band budget "
        f"{BUFFER_MB} MiB. *predict* excludes the COG finalisation (its own column). *bare "
        "model* = the network alone on the same tiles (overlap included) and batch size; goal: "
        "bare/predict >= 0.85, i.e. reading, blending and writing add at most 15 %. The 4096² "
        "rows ran in interleaved rounds (each case once per round, each run a fresh process): "
        "times are medians, bare/predict the median ratio with its range over the rounds. The "
        "DeepLab networks are geociss `SegmentationModel`s built from a `ModelConfig` "
        "(5 classes): `deeplab-lite0` is the `geociss demo` network (ImageNet "
        "EfficientNet-Lite0 read offline, DeepLab-v3+ head), `deeplab-tiny` the former demo "
        "network (encoder `tiny`, ASPP 64, group norm, OS16; random weights), "
        "`deeplab-resnet18` a resnet18 encoder (OS16, ASPP 256; random weights). `toy` (a 3x3 "
        "conv to 8 channels and a 1x1 conv, 3 classes) does almost no "
        "work, so its ratio measures the pipeline's own cost per tile (overhead stress test); "
        f"its 32768² row shows memory only (no bare run): {_too_long(rows)}. Peak RSS = VmHWM "
        "of the predicting process, "
        "including the torch baseline shown before it; it does not grow with the raster's "
        "height, and a wider raster adds at most the row-band budget.\n\n" + table(rows)
    )


def _too_long(rows: list[dict[str, Any]]) -> str:
    """Why the tiny DeepLab has no 32768² row: its time there, scaled from its largest row."""
    done = [r for r in rows if r["model"] == "deeplab-tiny" and r["bare_s"] is not None]
    if not done:
        return "the tiny DeepLab would take far longer than 8 minutes there on these cores"
    big = max(done, key=lambda r: r["tiles"])
    tiles = len(_grid_origins(32768)) ** 2
    minutes = (big["predict_s"] + big["bare_s"]) * tiles / big["tiles"] / 60
    return (f"the tiny DeepLab would take about {minutes:.0f} minutes there (predict + bare, "
            f"scaled from its {big['size']}² row)")


def _median(values: list[float]) -> float:
    xs = sorted(values)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def merge_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from repeated runs of a case: median times, every round's ratio kept."""
    row = dict(runs[0])
    for key in ("predict_s", "publish_s", "bare_s", "peak", "baseline", "worker_peak"):
        values = [r[key] for r in runs if r[key] is not None]
        row[key] = _median(values) if values else None
    row["ratios"] = [r["bare_s"] / r["predict_s"] for r in runs if r["bare_s"] is not None]
    row["load"] = [max(r["load"][i] for r in runs) for i in range(len(runs[0]["load"]))]
    return row


def _grid_origins(size: int) -> list[int]:
    from geociss.inference.grid import TileGrid

    return list(TileGrid.build(size, size, TILE, OVERLAP).rows)


def main() -> None:
    """Entry point: run the cases and write the report section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 4096² rows")
    parser.add_argument("--models", default=None,
                        help="comma-separated models to run (default: all of CASES)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved repetitions of the 4096² rows (median and range)")
    parser.add_argument("--child", nargs=3, metavar=("SIZE", "MODEL", "BARE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        size, kind, bare = args.child
        print(json.dumps(child(int(size), kind, bare == "bare")))
        return
    cases = [c for c in CASES if not args.quick or c[0] == 4096]
    if args.models:
        cases = [c for c in cases if c[1] in args.models.split(",")]
    repeated = [c for c in cases if c[0] == 4096]
    runs: dict[tuple[int, str, bool], list[dict[str, Any]]] = {c: [] for c in cases}
    for _ in range(max(args.rounds, 1)):  # the paths interleaved: every case once per round
        for case in repeated:
            make_raster(case[0])
            runs[case].append(run_case(*case))
            print(table(runs[case][-1:]).splitlines()[-1], flush=True)
    for case in cases:
        if case not in repeated:
            make_raster(case[0])
            runs[case].append(run_case(*case))
    rows = [merge_rounds(runs[c]) for c in cases]
    # a subset of the models gets its own section, so the full table's rows are kept
    section = "predict" if not args.models else "predict-" + args.models.replace(",", "-")
    command = " ".join(["python -m benchmarks.bench_predict", *sys.argv[1:]])
    update_section(section, f"Command: `{command}`.\n\n" + describe(rows))
    print(describe(rows))


if __name__ == "__main__":
    main()
