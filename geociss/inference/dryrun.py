"""``predict --dry-run``: what a run would do, and what it would cost, without predicting.

For each input: its size, bands and CRS, the tile grid and tile count, the column groups, the
host memory of the row-band buffer and the estimated accelerator memory of one batch
(:mod:`geociss.inference.plan`), the outputs, and whether the input would be skipped (finished
with the same settings) or resumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from geociss.errors import GeocissError
from geociss.inference.model import LoadedModel, PredictOptions
from geociss.inference.outputs import BLOCK_SIZE
from geociss.inference.plan import BatchMemory, batch_memory, human_bytes, stream_bytes
from geociss.inference.predictor import CPU_BATCH
from geociss.inference.resume import finished, read_sidecar
from geociss.inference.run import expand_inputs, prepare


def dry_run(
    inputs: Sequence[str | Path], model: LoadedModel, opts: PredictOptions, out_dir: str | Path
) -> tuple[list[str], int]:
    """Describe the run for every input.

    Returns:
        ``(lines, failures)``: the report, and how many inputs could not be used.
    """
    out_dir = Path(out_dir)
    files, failures = expand_inputs(inputs, out_dir)
    lines = [f"failed: {f.message}" for f in failures]
    cuda = torch.cuda.is_available() and (opts.device is None or opts.device.startswith("cuda"))
    memory = batch_memory(model.module, model.in_channels, model.num_classes, opts.tile, cuda)
    lines += _batch_lines(model, memory, opts, cuda)
    bad = len(failures)
    pieces = opts.devices if len(files) < opts.devices else 1  # as the ranks would share
    for path in files:
        try:
            lines += _describe(path, model, opts, out_dir, pieces)
        except GeocissError as err:
            lines.append(f"failed: {err}")
            bad += 1
    return lines, bad


def _batch_lines(
    model: LoadedModel, memory: BatchMemory, opts: PredictOptions, cuda: bool
) -> list[str]:
    where = "cuda" if cuda else "cpu"
    views = {"none": 1, "flip": 4, "d4": 8}[opts.tta]
    if opts.batch_size != "auto":
        batch = int(opts.batch_size)
        how = "as given"
    elif cuda:
        total = torch.cuda.mem_get_info()[1]
        batch = max(1, int((0.8 * total - memory.fixed) // max(memory.per_tile, 1)))
        how = f"estimate of what 'auto' finds on {human_bytes(total)} (probed at start)"
    else:
        batch, how = CPU_BATCH, "CPU default"
    return [
        f"model: {model.name}, {model.in_channels} band(s) in, {model.num_classes} class(es) "
        f"out, {human_bytes(memory.fixed)} of weights",
        f"batch: {batch} tile(s) on {where} ({how}), TTA {opts.tta} ({views} forward pass(es) "
        f"per tile); accelerator memory ≈ {human_bytes(memory.total(batch))} "
        f"({human_bytes(memory.per_tile)} per tile + {human_bytes(memory.fixed)} weights)",
    ]


def _describe(
    path: Path, model: LoadedModel, opts: PredictOptions, out_dir: Path, pieces: int
) -> list[str]:
    job = prepare(path, model, opts, out_dir, row_pieces=pieces)
    s, g = job.source, job.grid
    crs = s.crs.to_string() if s.crs is not None else "no CRS"
    geo = crs if s.transform is not None else "not georeferenced (pixel space)"
    parts = [p for r in job.parts for p in r]
    groups = len(job.parts[0])
    outputs = len(job.outs.rasters()) - ("probabilities" in job.outs.rasters()) + (
        model.num_classes if "probabilities" in job.outs.rasters() else 0
    )
    host = stream_bytes(g, model.num_classes, job.parts[0], outputs, BLOCK_SIZE)
    if finished(job.outs.sidecar, job.digest):
        state = "skip: finished earlier with the same model, settings and input"
    elif (read_sidecar(job.outs.sidecar) or {}).get("hash") == job.digest:
        state = "resume: an interrupted run with the same settings continues"
    else:
        state = "predict"
    pad = " (raster smaller than a tile: reflect-padded)" if g.padded else ""
    ranks = f", {len(job.parts)} row range(s) across ranks" if len(job.parts) > 1 else ""
    return [
        f"{path}: {s.width} x {s.height} px, {len(s.indexes)} band(s) {s.dtype}, {geo}",
        f"  grid: tile {g.tile}, overlap {g.overlap}, margin {g.margin}, stride {g.stride} -> "
        f"{g.shape[0]} x {g.shape[1]} = {len(g)} tiles{pad}; {groups} column group(s){ranks}",
        f"  row-band buffer: {human_bytes(host)} per stream ({model.num_classes} x "
        f"{g.tile_h} x width float32 on the predicting device + pending uint8 block rows on the "
        "host; independent of the height)",
        f"  outputs: {', '.join(p.name for p in job.outs.files())}",
        f"  {state} ({len(parts)} part(s))",
    ]
