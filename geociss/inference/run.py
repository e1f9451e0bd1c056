"""``predict`` over many inputs: files, folders and globs, one result per input.

For each input ``<name>.tif`` the outputs land in the output folder as
``<name>_classes.tif`` (+ ``.qml``, ``.tif.aux.xml``), optionally ``<name>_confidence.tif``,
``<name>_probabilities.tif`` and ``<name>.gpkg``, plus ``<name>.predict.json`` (the run record,
see :mod:`geociss.inference.resume`). Each input is prepared (checked against the model), its
parts streamed into partial GTiffs (:mod:`geociss.inference.stream`), then published by the
output side (:mod:`geociss.inference.outputs`, :mod:`geociss.inference.vectors`).

An input that fails (missing, unreadable, wrong band count, ...) gets a one-line message in its
:class:`FileResult`; the other inputs go on. Interrupted inputs resume where they stopped;
finished ones whose model, settings and input are unchanged are skipped.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio
from rasterio.errors import RasterioError

from geociss import __version__
from geociss.errors import GeocissError, error_detail
from geociss.faults import fault_point, progress_fault
from geociss.inference.grid import TileGrid
from geociss.inference.inputs import FileResult, expand_inputs
from geociss.inference.model import LoadedModel, PredictOptions
from geociss.inference.outputs import (
    BLOCK_SIZE,
    class_profile,
    finalize_classes,
    finalize_confidence,
    finalize_probabilities,
)
from geociss.inference.paths import OutputPaths
from geociss.inference.plan import plan_parts
from geociss.inference.predictor import Predictor
from geociss.inference.resume import PartialSet, finished, mark_done, run_hash
from geociss.inference.source import RasterInput, TileDataset
from geociss.inference.stream import Part, StreamStats, stream_part
from geociss.locks import OutputLocks

GDAL_CACHE_MB = 256
"""GDAL block cache of a predict run unless ``GDAL_CACHEMAX`` is set (GDAL's default, 5 % of the
RAM, lets reads, writes and the COG copy grow far beyond the row-band buffer)."""


@dataclass
class Job:
    """One input, checked and laid out.

    Attributes:
        source: the checked input.
        grid: its tile grid.
        outs: its output paths.
        digest: hash of model + settings + input (not of the row split across ranks, which
            does not change the output).
        parts: output rectangles, grouped by row range (one group per rank when shared).
    """

    source: RasterInput
    grid: TileGrid
    outs: OutputPaths
    digest: str
    parts: list[list[Part]]

    def profiles(self, model: LoadedModel) -> dict[str, dict[str, Any]]:
        """Creation profile of each streamed output."""
        s = self.source
        count = {"classes": 1, "confidence": 1, "probabilities": model.num_classes}
        return {
            kind: class_profile(s.width, s.height, s.transform, s.crs, count[kind])
            for kind in self.outs.rasters()
        }


def prepare(
    path: Path, model: LoadedModel, opts: PredictOptions, out_dir: Path, row_pieces: int = 1
) -> Job:
    """Check ``path`` against the model and lay out its grid, outputs and parts.

    Raises:
        DataError: the input is missing, unreadable or does not match the model.
        ConfigError: invalid tile settings.
    """
    nodata = opts.nodata if opts.nodata is not None else model.nodata  # a file's tag wins
    source = RasterInput.open(
        path, model.in_channels, model.bands, model.band_indexes, nodata=nodata
    )
    grid = TileGrid.build(source.height, source.width, opts.tile, opts.overlap, opts.margin)
    outs = OutputPaths.for_input(out_dir, path.stem, opts)
    parts = plan_parts(grid, model.num_classes, opts.buffer_mb * 2**20, BLOCK_SIZE, row_pieces)
    st = path.stat()
    digest = run_hash(
        {
            "model": model.key,
            "input": [str(path.resolve()), st.st_size, st.st_mtime_ns],
            "tile": grid.tile,
            "overlap": grid.overlap,
            "margin": grid.margin,
            "tta": opts.tta,
            "outputs": [p.name for p in outs.files()],
            "columns": [(p.x0, p.x1) for p in parts[0]],
            "min_polygon_pixels": opts.min_polygon_pixels,
            **({"nodata": opts.nodata} if opts.nodata is not None else {}),
            "geociss": __version__,
        }
    )
    return Job(source, grid, outs, digest, parts)


def compute(
    job: Job,
    model: LoadedModel,
    predictor: Predictor,
    opts: PredictOptions,
    batch_size: int,
    *,
    piece: int | None = None,
    tag: str = "",
    on_flush: Callable[[int], None] | None = None,
) -> StreamStats:
    """Stream the parts of ``job`` (all, or row range ``piece``) into partial files.

    Args:
        job: the prepared input.
        model: the model (its class count).
        predictor: the forward pass.
        opts: the settings.
        batch_size: tiles per forward pass.
        piece: stream only this row range of :attr:`Job.parts` (ranks), else all.
        tag: suffix of the partial files and their sidecar (ranks).
        on_flush: called after each flushed block row (tests interrupt with it).
    """
    parts = [p for r in job.parts for p in r] if piece is None else job.parts[piece]
    keys = [p.key for p in parts]
    digest = job.digest if not tag else run_hash({"job": job.digest, "tag": tag, "parts": keys})
    state = PartialSet.open(
        job.outs.partials(tag),
        job.profiles(model),
        job.outs.rank_sidecar(tag),
        digest,
        parts,
        info={
            "input": str(job.source.path.resolve()),
            "model": model.name,
            "settings": opts.describe(),
        },
    )
    workers = opts.workers if opts.workers is not None else default_workers()
    if len(job.grid) <= 2 * batch_size:
        workers = 0  # starting a worker costs more than reading a couple of batches
    dataset = TileDataset(job.source, job.grid)
    stats = StreamStats()
    for part in parts:
        todo = state.remaining(part)
        if todo is not None:
            stats += stream_part(
                dataset,
                predictor,
                todo,
                state.writer(part, on_flush),
                channels=model.num_classes,
                batch_size=batch_size,
                workers=workers,
                confidence=opts.confidence,
                probabilities=opts.probabilities,
            )
    return stats


def publish(job: Job, model: LoadedModel, opts: PredictOptions) -> list[Path]:
    """Finalise the streamed partials into the published outputs; record the run as done.

    Hidden temporaries of an earlier, killed publish of the same outputs are removed first. The
    partials stay until every output is published and the run recorded as done, so a kill
    between two outputs resumes by publishing again, without computing a tile.
    """
    partials, outs = job.outs.partials(), job.outs
    outs.discard_stale()
    finalize_classes(partials["classes"], outs.classes, model.style, keep_partial=True)
    fault_point("predict:published:classes")
    if outs.confidence is not None:
        finalize_confidence(partials["confidence"], outs.confidence, keep_partial=True)
    if outs.probabilities is not None:
        finalize_probabilities(
            partials["probabilities"], outs.probabilities, model.style, keep_partial=True
        )
    if outs.gpkg is not None:
        from geociss.inference.vectors import write_polygons

        write_polygons(outs.classes, outs.gpkg, model.style, opts.min_polygon_pixels)
    files = outs.files()
    mark_done(
        outs.sidecar,
        job.digest,
        files,
        {
            "input": str(job.source.path.resolve()),
            "model": model.name,
            "settings": opts.describe(),
        },
    )
    outs.remove_partials()
    return files


def bound_heap_growth(threshold: int = 8 << 20) -> bool:
    """Serve allocations above ``threshold`` bytes from fresh memory maps (glibc only).

    glibc raises its mmap threshold after large blocks are freed (up to 32 MiB), and from then
    on serves the model's per-batch tensors and the row-band temporaries from the heap, which
    fragments and keeps growing: on an 8192² raster (tiny model, batch 4 of 512²) peak RSS above
    the torch baseline was 819 MiB with glibc's default and 342 MiB with a fixed 8 MiB
    threshold. The setting is process-wide and harmless elsewhere (large blocks go back to the
    system when freed). ``THP_MEM_ALLOC_ENABLE=1``, which ``geociss predict`` sets before torch
    is imported, also avoids the growth and cuts page faults 15-fold.

    Returns:
        True when the setting was applied (Linux with glibc).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, int(threshold)))  # -3 = M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def gdal_env() -> rasterio.Env:
    """The GDAL environment of a run: a bounded block cache."""
    if "GDAL_CACHEMAX" in os.environ:
        return rasterio.Env()
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20)


def default_workers() -> int:
    """Tile-reading worker processes: one core is left to the model, at most 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def predict_one(
    path: Path,
    model: LoadedModel,
    predictor: Predictor,
    opts: PredictOptions,
    out_dir: Path,
    batch_size: int,
    on_flush: Callable[[int], None] | None = None,
) -> FileResult:
    """Predict one input; its errors become a ``failed`` result, not an exception.

    User errors (bad input, settings) keep their message; a file-system or GDAL failure while
    writing the outputs (full disk, no permission) is reported naming the input, and the
    partial outputs stay for a later resume.
    """
    start = time.perf_counter()
    try:
        job = prepare(path, model, opts, out_dir)
        if finished(job.outs.sidecar, job.digest):
            return FileResult(
                str(path),
                "skipped",
                seconds=time.perf_counter() - start,
                outputs=[str(p) for p in job.outs.files()],
            )
        try:
            stats = compute(job, model, predictor, opts, batch_size, on_flush=on_flush)
        except GeocissError:
            job.outs.discard_partials()  # the input itself is bad: nothing worth resuming
            raise
        files = publish(job, model, opts)
    except GeocissError as err:
        return FileResult(str(path), "failed", str(err), seconds=time.perf_counter() - start)
    except (RasterioError, OSError) as err:
        detail = error_detail(err)
        return FileResult(
            str(path),
            "failed",
            f"{path}: cannot write the outputs in {out_dir}: {detail}",
            seconds=time.perf_counter() - start,
        )
    return FileResult(
        str(path),
        "written",
        tiles=stats.tiles,
        skipped_tiles=stats.skipped,
        seconds=time.perf_counter() - start,
        outputs=[str(p) for p in files],
    )


def predict_many(
    inputs: Sequence[str | Path],
    model: LoadedModel,
    opts: PredictOptions,
    out_dir: str | Path,
    on_result: Callable[[FileResult], None] | None = None,
) -> list[FileResult]:
    """Predict every input (in one process, across ``opts.devices`` processes, or as a rank).

    In a process started by torchrun or srun (``RANK`` and ``WORLD_SIZE`` set), this process is
    one rank of the job: see :mod:`geociss.inference.launch`.

    Args:
        inputs: files, folders and glob patterns.
        model: the model.
        opts: the settings.
        out_dir: the output folder (created).
        on_result: called with each result as it is known (progress display).

    Returns:
        One result per input, failures of unmatched inputs first.

    Raises:
        LockedError: another live process writes one of the outputs (each input's class raster
            is locked, ``<name>_classes.tif.lock``, all before the first is predicted).
        ConfigError: ``opts.devices`` above 1 in a launched rank, or a broken launch environment.
    """
    out_dir = Path(out_dir)
    from geociss.inference.launch import Launch

    launch = Launch.from_env()
    if launch is not None:  # a rank of torchrun or srun
        from geociss.inference.launch import predict_launched

        return predict_launched(inputs, model, opts, out_dir, launch, on_result)
    out_dir.mkdir(parents=True, exist_ok=True)
    files, failures = expand_inputs(inputs, out_dir)
    for f in failures:
        if on_result:
            on_result(f)
    targets = [OutputPaths.for_input(out_dir, f.stem, opts).classes for f in files]
    with OutputLocks(targets, "geociss predict"):
        return failures + _predict_files(files, model, opts, out_dir, on_result)


def _predict_files(
    files: list[Path],
    model: LoadedModel,
    opts: PredictOptions,
    out_dir: Path,
    on_result: Callable[[FileResult], None] | None,
) -> list[FileResult]:
    """The body of :func:`predict_many` once the outputs are locked."""
    if opts.devices > 1 and files:
        from geociss.inference.distributed import predict_distributed

        results = predict_distributed(files, model, opts, out_dir)
        for r in results:
            if on_result:
                on_result(r)
        return results
    bound_heap_growth()
    predictor = model.predictor(opts)
    batch = model.batch_size(opts, predictor)
    results = []
    flushed = progress_fault("predict:flushed")
    with gdal_env():
        for path in files:
            result = predict_one(path, model, predictor, opts, out_dir, batch, on_flush=flushed)
            results.append(result)
            if on_result:
                on_result(result)
    return results
