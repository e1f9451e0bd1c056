"""``predict`` launched by torchrun or srun: every launched process is one rank of one job.

``torchrun --nnodes N --nproc-per-node K -m geociss predict …`` starts N × K processes with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` set; under Slurm's ``srun`` without torchrun, the job script sets them from
``SLURM_PROCID``, ``SLURM_NTASKS`` and ``SLURM_LOCALID`` (docs/scaling.md). When ``RANK`` and
``WORLD_SIZE`` are set, :func:`geociss.inference.run.predict_many` runs :func:`predict_launched`:

1. every rank joins one gloo process group through ``env://`` (only barriers and small Python
   objects travel, so gloo serves GPU ranks too);
2. rank 0 expands the inputs (files, folders, globs) and takes the lock of every output, then
   sends the list of files, or why it could not lock them, to every rank: the other ranks wait
   for the locks. A lock failure ends every rank with status 2; rank 0 prints the one line, the
   others print nothing (:class:`PeerStopped`);
3. every rank predicts its share exactly as ``predict --devices N`` does
   (:func:`geociss.inference.distributed.run_rank`), on ``cuda:<LOCAL_RANK>`` when there are GPUs.
   The output folder must be one shared file system that every rank sees under the same path;
4. every rank gets every result, so all end with the same status; rank 0 reports them and
   releases the locks once every rank has finished writing.

Signals are each rank's own: torchrun (or srun) passes a SIGTERM or Ctrl-C on to its processes,
each stops with 143 or 130 (rank 0 releasing the locks), and when one rank dies torchrun stops
the others. A rerun resumes from the partials, also those of the row ranges of other ranks.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.distributed as dist

from geociss.errors import ConfigError, GeocissError
from geociss.inference.distributed import WAIT_LIMIT, RankPlace, run_rank, sync
from geociss.inference.inputs import FileResult, expand_inputs
from geociss.inference.model import LoadedModel, PredictOptions
from geociss.inference.paths import OutputPaths
from geociss.locks import OutputLocks

RENDEZVOUS = ("MASTER_ADDR", "MASTER_PORT")
"""What ``env://`` needs besides ``RANK`` and ``WORLD_SIZE``: rank 0's host and a free port."""


class PeerStopped(GeocissError):
    """Rank 0 stopped the job and said why; this rank ends with ``status`` and prints nothing.

    Args:
        message: rank 0's one line.
        status: the exit status rank 0 ends with (2: bad input or a lock; 1: an internal error).
    """

    def __init__(self, message: str, status: int = 2) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class Launch:
    """This process's place in a torchrun or srun launch.

    Attributes:
        rank: global rank (``RANK``), 0 first.
        world: number of ranks (``WORLD_SIZE``).
        local_rank: rank on this machine (``LOCAL_RANK``, default 0): picks the GPU.
        local_world: ranks on this machine (``LOCAL_WORLD_SIZE``, default 1).
    """

    rank: int
    world: int
    local_rank: int = 0
    local_world: int = 1

    @property
    def primary(self) -> bool:
        """True on rank 0 (it locks, merges shared rasters and reports)."""
        return self.rank == 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Launch | None:
        """The launch described by the environment, or None when this is no launched rank.

        A process is a launched rank when ``RANK`` and ``WORLD_SIZE`` are both set (torchrun
        sets them; Lightning's own DDP processes set neither).

        Raises:
            ConfigError: they are set but ``MASTER_ADDR``/``MASTER_PORT`` are missing, or a value
                is not a valid rank.
        """
        env = os.environ if environ is None else environ
        if "RANK" not in env or "WORLD_SIZE" not in env:
            return None
        missing = [name for name in RENDEZVOUS if not env.get(name)]
        if missing:
            raise ConfigError(
                f"RANK and WORLD_SIZE are set (a torchrun or srun launch) but not "
                f"{' and '.join(missing)}: set them to rank 0's host name and a free port "
                "(docs/scaling.md)"
            )
        values = {}
        for name, default in (("RANK", ""), ("WORLD_SIZE", ""), ("LOCAL_RANK", "0")):
            text = env.get(name, default)
            try:
                values[name] = int(text)
            except ValueError:
                raise ConfigError(f"{name}={text!r} is not a whole number") from None
        rank, world, local = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
        if world < 1 or not 0 <= rank < world or local < 0:
            raise ConfigError(
                f"RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}: a launch needs "
                "0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0"
            )
        try:
            local_world = max(int(env.get("LOCAL_WORLD_SIZE", "1")), local + 1)
        except ValueError:
            local_world = local + 1
        return cls(rank, world, local, local_world)


def predict_launched(
    inputs: Sequence[str | Path],
    model: LoadedModel,
    opts: PredictOptions,
    out_dir: Path,
    launch: Launch,
    on_result: Callable[[FileResult], None] | None = None,
) -> list[FileResult]:
    """Predict ``inputs`` as rank ``launch.rank`` of a launched job (see the module docstring).

    Args:
        inputs: files, folders and glob patterns (the same on every rank).
        model: the model.
        opts: the settings (``opts.devices`` must be 1).
        out_dir: the output folder, on a file system shared by every rank.
        launch: this process's place.
        on_result: called on rank 0 with each result.

    Returns:
        One result per input, failures of unmatched inputs first, on every rank.

    Raises:
        ConfigError: ``--devices`` above 1 (rank 0).
        LockedError: another live process writes one of the outputs (rank 0).
        PeerStopped: on the other ranks, when rank 0 stops for one of these reasons.
    """
    if opts.devices > 1:
        problem = (
            f"--devices {opts.devices} cannot be combined with a torchrun or srun launch "
            f"(WORLD_SIZE={launch.world}): every launched process is one rank already; drop "
            "--devices and choose the ranks with the launcher (torchrun --nproc-per-node)"
        )
        raise ConfigError(problem) if launch.primary else PeerStopped(problem)
    dist.init_process_group(
        "gloo",
        init_method="env://",
        rank=launch.rank,
        world_size=launch.world,
        timeout=WAIT_LIMIT,
    )
    try:
        with contextlib.ExitStack() as locks:
            files, failures = _agree(inputs, opts, out_dir, launch, locks)
            for failure in failures:
                if launch.primary and on_result:
                    on_result(failure)
            out_dir.mkdir(parents=True, exist_ok=True)  # refreshes a stale negative NFS lookup
            place = RankPlace(launch.rank, launch.world, launch.local_rank, launch.local_world)
            results = run_rank(place, model, files, opts, out_dir)
            sync(dist.barrier)  # every rank has every result before rank 0 releases the locks
        for result in results:
            if launch.primary and on_result:
                on_result(result)
        return failures + results
    finally:
        dist.destroy_process_group()


def _agree(
    inputs: Sequence[str | Path],
    opts: PredictOptions,
    out_dir: Path,
    launch: Launch,
    locks: contextlib.ExitStack,
) -> tuple[list[Path], list[FileResult]]:
    """Rank 0 expands the inputs and locks their outputs (held by ``locks``); all get the files.

    Returns:
        The files to predict and the failed results of unmatched inputs, the same on every rank.

    Raises:
        GeocissError: on rank 0, why the outputs cannot be locked (another run holds one).
        PeerStopped: on the other ranks, the same, with the status rank 0 ends with.
    """
    message: list[Any] = [None]
    error: Exception | None = None
    if launch.primary:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            files, failures = expand_inputs(inputs, out_dir)
            targets = [OutputPaths.for_input(out_dir, f.stem, opts).classes for f in files]
            locks.enter_context(OutputLocks(targets, "geociss predict"))
            message[0] = (files, failures, "", 0)
        except Exception as err:  # every rank must hear of it, or the others wait forever
            error = err
            status = 2 if isinstance(err, GeocissError) else 1
            message[0] = ([], [], str(err) or type(err).__name__, status)
    sync(dist.broadcast_object_list, message, src=0)
    files, failures, problem, status = message[0]
    if problem:
        sync(dist.barrier)  # every rank has the message before rank 0 leaves
        if error is not None:
            raise error
        raise PeerStopped(problem, status)
    return files, failures


__all__ = ["Launch", "PeerStopped", "predict_launched"]
