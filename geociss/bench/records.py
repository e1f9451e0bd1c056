"""Finished benchmark cells kept as small JSON records, so that a table outlives its run folders.

A bench's run folders hold the models (megabytes per step) and live on the machine that trained
them; a table over the four IDEC tasks takes longer to train than one sitting on a 2-core
machine lasts. A :class:`ResultStore` keeps, per finished cell (method × task × seed), what the
tables need (the :class:`~geociss.bench.BenchRow`: old / new / all mIoU, per-class IoU of the
final model, the retention pairs) in ``<store>/<run name>.json``, a few kilobytes that can be
committed beside the docs. A later bench on another machine takes a recorded cell instead of
training it again, and the table is written from the records.

A record holds the cell's fingerprint (:func:`cell_fingerprint`): the hash of everything in the
experiment configuration that decides the result (paths, run names and hardware left out) and
of the CONTENT of the data files (:func:`data_digest`: decoded pixels and georeferencing of
each GeoTIFF; the sample scenes are generated identically, so a fresh checkout that generates
them again matches, whatever GDAL compresses them with). A record whose
fingerprint differs from the cell's (another preset, other hyper-parameters, other data) is not
used: the cell is trained again and its record replaced. What the fingerprint does not see is
the code: after a change to geociss that changes results, delete the records (or the folder).
Each record names the geociss version, git commit, torch version, CPU model and torch thread
count that wrote it (the same seed gives bit-identical results only with the same torch, kind
of CPU and thread count; a change of any moves a seed's result, by up to a few points of a small
class's IoU).

Records are written whole or not at all (a temporary name, then a rename), one file per cell,
so several processes (``--jobs``) write side by side. An unreadable record is reported and the
cell trained again.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geociss.bench import BenchRow
    from geociss.config.experiment import ExperimentConfig

RECORD_VERSION = 1
"""Format of a record; records of another version are not used."""

COST_FIELDS = ("of_joint", "step_seconds", "step_vs_finetune", "peak_mib")
"""Row fields not recorded: step costs are measured apart and ratios recomputed."""


RASTER_SUFFIXES = (".tif", ".tiff")
"""Files the digest reads as rasters (decoded pixels and georeferencing, not bytes)."""


def data_digest(folder: Path) -> str:
    """Short hash of the names and contents of every file under ``folder``.

    A GeoTIFF enters by what a reader gets from it (data type, size, georeferencing, nodata and
    decoded pixels), not by its bytes, which another GDAL or compression library writes
    differently for the same pixels; any other file by its bytes. Unlike the run folders'
    fingerprints (sizes and modification times), it does not change when the same data are
    written again.
    """
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(folder).as_posix()}\n".encode())
        if path.suffix.lower() in RASTER_SUFFIXES:
            _raster_digest(path, h)
        else:
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def _raster_digest(path: Path, h: Any) -> None:
    """Feed ``h`` a raster's type, size, georeferencing, nodata and pixels."""
    import rasterio

    with rasterio.open(path) as src:
        crs = src.crs.to_string() if src.crs else ""
        head = (src.dtypes, src.count, src.height, src.width, tuple(src.transform)[:6], crs,
                src.nodata)
        h.update(repr(head).encode())
        for band in range(1, src.count + 1):
            h.update(src.read(band).tobytes())


def cell_fingerprint(config: ExperimentConfig, digest: str) -> str:
    """Hash of what decides a cell's result.

    That is its configuration without paths, run name, hardware and run-only keys, and the
    digest of its data (:func:`data_digest`).
    """
    from geociss.config.experiment import RUN_ONLY_TRAIN_KEYS
    from geociss.engine.freshness import DATA_PATH_KEYS, HARDWARE_KEYS, config_hash

    payload = config.model_dump(mode="json", exclude={"name": True, "out": True})
    for key in (*DATA_PATH_KEYS, "class_schema", "num_workers"):  # the digest holds the files
        payload["data"].pop(key, None)
    for key in (*HARDWARE_KEYS, *RUN_ONLY_TRAIN_KEYS):
        payload["train"].pop(key, None)
    return config_hash({"config": payload, "data": digest, "record": RECORD_VERSION})


def source_commit() -> str | None:
    """The git commit of the geociss source tree, or None (not a checkout, or no git)."""
    root = Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def _torch_version() -> str | None:
    """The version of torch (results of one seed are bit-identical only under the same torch)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return str(torch.__version__)


def _cpu_name() -> str:
    """The processor's model name (results are bit-identical only on the same kind of CPU)."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _threads() -> int | None:
    """The intra-op thread count of torch (another count changes a result's last digits)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return int(torch.get_num_threads())


class ResultStore:
    """A folder of cell records (``<run name>.json``); see the module docstring."""

    def __init__(self, folder: Path, log: Callable[[str], None] = print) -> None:
        self.folder = Path(folder)
        self.log = log
        self._commit: str | None = None

    def path(self, run: str) -> Path:
        """The record file of the run named ``run``."""
        return self.folder / f"{run}.json"

    def get(self, run: str, fingerprint: str) -> BenchRow | None:
        """The recorded row of ``run`` when its fingerprint is ``fingerprint``, else None.

        A record that cannot be read, or was written for another configuration or data, is
        reported in one line and not used.
        """
        from geociss.bench import BenchRow

        path = self.path(run)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            stored, row = record["fingerprint"], record["row"]
            names = {f.name for f in fields(BenchRow)}
            result = BenchRow(**{k: v for k, v in row.items() if k in names})
        except (OSError, ValueError, KeyError, TypeError) as err:
            self.log(f"bench: ignoring the unreadable record {path} ({type(err).__name__}: {err})")
            return None
        if stored != fingerprint:
            self.log(f"bench: the record {path} was written for another configuration or "
                     "data; the cell runs again")
            return None
        return result

    def put(self, run: str, fingerprint: str, row: BenchRow) -> Path:
        """Record ``row`` as the result of ``run`` (atomic; replaces an older record)."""
        from geociss import __version__
        from geociss.io import atomic_write_text

        if self._commit is None:
            self._commit = source_commit() or ""
        data = asdict(row)
        for key in COST_FIELDS:
            data.pop(key, None)
        record = {
            "record": RECORD_VERSION,
            "fingerprint": fingerprint,
            "geociss": __version__,
            "commit": self._commit or None,
            "torch": _torch_version(),
            "cpu": _cpu_name(),
            "threads": _threads(),
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "row": data,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(run)
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
        return path


def recorded(
    store: ResultStore,
    methods: Sequence[str],
    tasks: Sequence[str],
    preset: str,
    data: Path,
    seeds: Sequence[int],
) -> tuple[int, int]:
    """How many of a bench's cells ``store`` holds for this configuration and data, of how many.

    The cells are those :func:`geociss.bench.run_bench` runs (fine-tuning and joint added).
    """
    from geociss.bench import experiment

    specs = list(dict.fromkeys(["finetune", *methods, "joint"]))
    digest, quiet = data_digest(data), ResultStore(store.folder, log=lambda m: None)
    done = total = 0
    for task in tasks:
        for seed in seeds:
            for spec in specs:
                cfg = experiment(preset, task, spec, data, Path("runs"), seed=seed)
                total += 1
                done += quiet.get(cfg.name, cell_fingerprint(cfg, digest)) is not None
    return done, total


__all__ = ["ResultStore", "cell_fingerprint", "data_digest", "recorded", "source_commit"]
