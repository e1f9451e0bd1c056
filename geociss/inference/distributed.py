"""``predict`` across processes: ``--devices N`` on one machine, or ranks launched by torchrun.

``predict --devices N`` spawns N processes (one per GPU when there are GPUs, each on
``cuda:<rank>``; else CPU processes sharing the cores) that meet through a file rendezvous;
``torchrun`` (or ``srun``) starts the ranks itself and :mod:`geociss.inference.launch` joins
them through ``env://``. Either way every rank runs :func:`run_rank`, so both shard alike. The
process group is gloo in both cases: it carries only barriers and small Python objects, never
tensors.

* **At least as many inputs as ranks:** the files are sharded, largest first onto the least
  loaded rank; each rank predicts and publishes its own files exactly as a single process would.
* **Fewer inputs than ranks:** each raster is shared. Its rows are cut into one block-aligned row
  range per rank (:func:`geociss.inference.plan.plan_parts`); rank ``r`` streams range ``r``
  into its own partial files (``<out>.partial.rank<r>``, with their own resume sidecar
  ``<name>.predict.rank<r>.json``). After a barrier, rank 0 merges the ranges into the raster's
  partial, block row by block row (memory bounded by one block row), and publishes it. Batches
  are cut the same way as in a single process (:mod:`geociss.inference.stream`), so the output
  is byte-identical to a one-process run.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import rasterio
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window as RioWindow

from geociss.errors import GeocissError
from geociss.faults import progress_fault
from geociss.inference.model import LoadedModel, PredictOptions
from geociss.inference.outputs import BLOCK_SIZE
from geociss.inference.resume import finished
from geociss.inference.run import (
    FileResult,
    Job,
    bound_heap_growth,
    compute,
    gdal_env,
    predict_one,
    prepare,
    publish,
)

WAIT_LIMIT = timedelta(hours=24)
"""How long a rank waits at a barrier for the others (gloo's default, 30 minutes, is shorter
than rank 0 may take to publish a large raster while the others wait). A rank that dies is
noticed at once (its connections close), not after this time."""


class RankLost(GeocissError):
    """Another rank of the job is gone (it died, or its machine did): this rank cannot go on."""


def sync(op: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run the collective ``op`` (a barrier, a gather); a rank that is gone becomes one line.

    gloo raises a ``RuntimeError`` when a peer's connection closes (its process died) or the
    wait exceeds :data:`WAIT_LIMIT`; this rank then stops with :class:`RankLost` (status 2, no
    traceback) instead of an internal error. Under torchrun it usually gets torchrun's SIGTERM
    first, and ends as interrupted (143).

    Raises:
        RankLost: the collective failed.
    """
    try:
        return op(*args, **kwargs)
    except RuntimeError as err:
        detail = re.sub(r"^\[[^\]]*\]\s*", "", str(err)).split(". ")[0].strip() or repr(err)
        raise RankLost(
            f"another rank of this job stopped ({detail}); the work done so far is kept: run "
            "the same command again to resume"
        ) from None


@dataclasses.dataclass(frozen=True)
class RankPlace:
    """Where one rank runs.

    Attributes:
        rank: global rank, 0 first.
        world: number of ranks.
        local_rank: rank among the processes of this machine (picks ``cuda:<local_rank>``).
        local_world: processes on this machine (they share its cores).
        threads: torch threads of this rank (None: leave torch's setting, e.g. the
            ``OMP_NUM_THREADS`` that torchrun sets).
    """

    rank: int
    world: int
    local_rank: int
    local_world: int
    threads: int | None = None


def predict_distributed(
    files: list[Path], model: LoadedModel, opts: PredictOptions, out_dir: Path
) -> list[FileResult]:
    """Predict ``files`` with ``opts.devices`` spawned processes; one result per file, in order."""
    world = opts.devices
    payload: LoadedModel | Path = model.source if model.source is not None else model
    with tempfile.TemporaryDirectory(prefix="geociss-predict-") as tmp:
        results = Path(tmp) / "results.json"
        context = mp.start_processes(
            _rank_main,
            args=(world, Path(tmp) / "rendezvous", payload, files, opts, out_dir, results),
            nprocs=world,
            start_method="spawn",
            join=False,
        )
        try:
            while not context.join():
                pass
        except BaseException:
            _stop(context.processes)  # Ctrl-C, SIGTERM, a failed rank: no rank writes on
            raise
        rows = json.loads(results.read_text(encoding="utf-8"))
    return [FileResult(**r) for r in rows]


def _stop(processes: list[Any], grace_s: float = 10.0) -> None:
    """Terminate the ranks still running (SIGTERM, then SIGKILL after ``grace_s``) and reap them.

    Without this, an interrupted parent would wait at exit for its non-daemonic ranks to finish
    their whole share of the work, and a rank would go on writing after the parent released the
    outputs' locks.
    """
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in processes:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()


def _rank_main(
    rank: int,
    world: int,
    rendezvous: Path,
    payload: LoadedModel | Path,
    files: list[Path],
    opts: PredictOptions,
    out_dir: Path,
    results: Path,
) -> None:
    """Entry of a spawned rank: join the group, run :func:`run_rank`, rank 0 writes the results."""
    dist.init_process_group(
        "gloo",
        init_method=f"file://{rendezvous}",
        rank=rank,
        world_size=world,
        timeout=WAIT_LIMIT,
    )
    try:
        threads = max(1, (os.cpu_count() or 1) // world)
        place = RankPlace(rank, world, local_rank=rank, local_world=world, threads=threads)
        model = LoadedModel.from_bundle(payload) if isinstance(payload, Path) else payload
        rows = run_rank(place, model, files, opts, out_dir)
        if rank == 0:
            text = json.dumps([dataclasses.asdict(r) for r in rows])
            results.write_text(text, encoding="utf-8")
    finally:
        dist.destroy_process_group()


def rank_device(local_rank: int) -> str:
    """``cuda:<local_rank>`` (modulo the GPUs of this machine) when there are GPUs, else ``cpu``."""
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return "cpu"


def run_rank(
    place: RankPlace, model: LoadedModel, files: list[Path], opts: PredictOptions, out_dir: Path
) -> list[FileResult]:
    """Predict this rank's share of ``files`` in a joined process group.

    Files are sharded when there are at least as many as ranks, else every file is shared by
    row ranges (see the module docstring). Every rank must call it with the same files.

    Returns:
        The results of all files, in order, on every rank (so that every rank ends alike).
    """
    rank, world = place.rank, place.world
    if place.threads is not None:
        torch.set_num_threads(place.threads)
    if opts.workers is None:
        cores = os.cpu_count() or 1
        opts = dataclasses.replace(opts, workers=max(0, min(4, cores // place.local_world - 1)))
    predictor = model.predictor(opts, device=rank_device(place.local_rank))
    batch = model.batch_size(opts, predictor)
    bound_heap_growth()
    local: dict[str, FileResult] = {}
    with gdal_env():
        if len(files) >= world:
            for path in _shard(files, world)[rank]:
                local[str(path)] = predict_one(path, model, predictor, opts, out_dir, batch)
        else:
            for path in files:
                result = _shared_file(path, model, predictor, opts, out_dir, batch, rank, world)
                if result is not None:
                    local[str(path)] = result
    gathered: list[Any] = [None] * world
    sync(dist.all_gather_object, gathered, local)
    merged = {k: v for part in gathered for k, v in part.items()}
    return [merged[str(p)] for p in files]


def _shard(files: list[Path], world: int) -> list[list[Path]]:
    """Files per rank: largest first onto the least loaded rank (file size as the load)."""
    loads = [0] * world
    shards: list[list[Path]] = [[] for _ in range(world)]
    for path in sorted(files, key=lambda p: -_size(p)):
        r = loads.index(min(loads))
        shards[r].append(path)
        loads[r] += max(_size(path), 1)
    order = {p: i for i, p in enumerate(files)}
    return [sorted(s, key=order.__getitem__) for s in shards]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _shared_file(
    path: Path,
    model: LoadedModel,
    predictor: Any,
    opts: PredictOptions,
    out_dir: Path,
    batch: int,
    rank: int,
    world: int,
) -> FileResult | None:
    """Predict one raster with every rank; rank 0 returns the result, the others None."""
    start = time.perf_counter()
    job: Job | None = None
    error, tiles, skipped = "", 0, 0
    try:
        job = prepare(path, model, opts, out_dir, row_pieces=world)
    except GeocissError as err:
        error = str(err)
    done = job is not None and finished(job.outs.sidecar, job.digest)
    if job is not None and not done and rank < len(job.parts):
        try:
            stats = compute(
                job,
                model,
                predictor,
                opts,
                batch,
                piece=rank,
                tag=f".rank{rank}",
                on_flush=progress_fault("predict:flushed"),
            )
            tiles, skipped = stats.tiles, stats.skipped
        except GeocissError as err:
            error = str(err)
    outcomes: list[Any] = [None] * world
    sync(dist.all_gather_object, outcomes, (error, tiles, skipped))
    if job is not None and not done and any(e for e, _, _ in outcomes):
        job.outs.discard_partials(f".rank{rank}")  # the input itself is bad: nothing to resume
    result = None
    if rank == 0:
        errors = [e for e, _, _ in outcomes if e]
        if done:
            result = FileResult(str(path), "skipped", outputs=[str(p) for p in job.outs.files()])
        elif errors:
            result = FileResult(str(path), "failed", errors[0])
        else:
            assert job is not None
            try:
                _merge(job, model)
                files = publish(job, model, opts)
                result = FileResult(
                    str(path),
                    "written",
                    tiles=sum(o[1] for o in outcomes),
                    skipped_tiles=sum(o[2] for o in outcomes),
                    outputs=[str(p) for p in files],
                )
            except GeocissError as err:
                result = FileResult(str(path), "failed", str(err))
        result.seconds = time.perf_counter() - start
    sync(dist.barrier)
    return result


def _merge(job: Job, model: LoadedModel) -> None:
    """Copy each rank's row ranges into the raster's partial files; remove the rank files."""
    profiles = job.profiles(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for kind, target in job.outs.partials().items():
            with rasterio.open(target, "w", **profiles[kind], SPARSE_OK="TRUE") as dst:
                for piece, parts in enumerate(job.parts):
                    source = job.outs.partials(f".rank{piece}")[kind]
                    with rasterio.open(source) as src:
                        for part in parts:
                            for y in range(part.y0, part.y1, BLOCK_SIZE):
                                win = RioWindow(
                                    part.x0, y, part.x1 - part.x0, min(BLOCK_SIZE, part.y1 - y)
                                )
                                dst.write(src.read(window=win), window=win)
    # every rank's files, also those of an interrupted run with more ranks (other row ranges)
    sidecar = job.outs.sidecar
    leftovers = [f"{glob.escape(p.name)}.partial.rank*" for p in job.outs.rasters().values()]
    for pattern in [*leftovers, f"{glob.escape(sidecar.stem)}.rank*.json"]:
        for path in sidecar.parent.glob(pattern):
            path.unlink(missing_ok=True)
