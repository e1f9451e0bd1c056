"""Partial outputs that survive an interruption, and the sidecar that says how far they got.

Each output of an input (class raster, optional confidence and probabilities) is streamed into
``<out>/<name>_<kind>.tif.partial``, a tiled sparse GTiff (:func:`geociss.inference.outputs.
class_profile` + ``SPARSE_OK``: blocks never written cost nothing and read as nodata). Next to
them, ``<out>/<name>.predict.json`` records the run's hash (model + settings + input) and, per
:class:`~geociss.inference.stream.Part`, the first row not yet on disk.

Rows are written in whole TIFF block rows (:class:`PartWriter` keeps the rows of the current
block row until it is complete), so every block is written once, with the file opened in ``r+``
and closed again each time: when the sidecar says a row is done, it is on disk. A run with the
same hash continues each part from its recorded row; any other hash starts afresh. When all
outputs are finalised the sidecar records ``"state": "done"`` and the output names, and a later
run with the same hash skips the input.

Before resuming, every block of the partials is read back: a partial that cannot be read (a full
disk or a crash during a write left it truncated or damaged) is discarded with a
:class:`DamagedPartialWarning`, and all of the input's tiles are computed again, instead of every
resume failing on the same GDAL read error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window as RioWindow

from geociss.errors import error_detail
from geociss.inference.stream import Part
from geociss.io import atomic_write_text

SIDECAR_FORMAT = 1


class DamagedPartialWarning(UserWarning):
    """A partial output could not be read back: it is discarded and its tiles computed again."""


def unreadable(path: Path) -> str | None:
    """Why the GTiff at ``path`` cannot be read back completely, or None when every block reads.

    Blocks never written (sparse) read as nodata without touching the disk, so this costs about
    one decompression of what was streamed so far.
    """
    try:
        with _quiet(), rasterio.open(path) as src:
            for _, window in src.block_windows(1):
                src.read(window=window)
    except Exception as err:  # GDAL raises many types for a damaged file
        return error_detail(err)
    return None


def run_hash(parts: dict[str, Any]) -> str:
    """SHA-256 (hex) of a JSON-able description of the model, settings and input."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar's content, or None when it is missing or unreadable (then: start afresh)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == SIDECAR_FORMAT else None


def finished(sidecar: Path, digest: str) -> bool:
    """True when ``sidecar`` records a finished run with hash ``digest`` whose outputs exist."""
    data = read_sidecar(sidecar)
    if data is None or data.get("state") != "done" or data.get("hash") != digest:
        return False
    names = data.get("outputs") or []
    return bool(names) and all((sidecar.parent / n).is_file() for n in names)


def mark_done(sidecar: Path, digest: str, outputs: list[Path], info: dict[str, Any]) -> None:
    """Record a finished run (the outputs are named relative to the sidecar's folder)."""
    payload = {
        "format": SIDECAR_FORMAT, "state": "done", "hash": digest,
        "outputs": [p.name for p in outputs], **info,
    }
    atomic_write_text(sidecar, json.dumps(payload, indent=1) + "\n")


@dataclass
class PartialSet:
    """The partial GTiffs of one input and their progress.

    Attributes:
        paths: output kind (``classes``, ``confidence``, ``probabilities``) -> partial file.
        sidecar: the JSON progress file.
        digest: the run hash.
        progress: part key -> first row not yet written.
        block: TIFF block height (rows are flushed in whole block rows).
        info: extra JSON written into the sidecar (input, settings) for provenance.
    """

    paths: dict[str, Path]
    sidecar: Path
    digest: str
    progress: dict[str, int]
    block: int
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(
        cls, paths: dict[str, Path], profiles: dict[str, dict[str, Any]], sidecar: Path,
        digest: str, parts: list[Part], info: dict[str, Any] | None = None,
    ) -> PartialSet:
        """Resume the partials when the sidecar matches ``digest``; else create them empty.

        Args:
            paths: output kind -> partial path.
            profiles: output kind -> rasterio creation profile (tiled).
            sidecar: the progress file.
            digest: the run hash.
            parts: the output rectangles of this run.
            info: extra JSON for the sidecar.
        """
        block = int(profiles["classes"]["blockysize"])
        data = read_sidecar(sidecar)
        saved = data.get("parts") if data and data.get("hash") == digest else None
        keys = [p.key for p in parts]
        resumable = (
            isinstance(saved, dict) and sorted(saved) == sorted(keys)
            and data is not None and data.get("state") == "running"
            and all(p.is_file() for p in paths.values())
        )
        if resumable:
            resumable = _intact(paths)
        if resumable and saved is not None:
            progress = {k: int(saved[k]) for k in keys}
        else:
            progress = {p.key: p.y0 for p in parts}
            for kind, path in paths.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.unlink(missing_ok=True)
                with _quiet(), rasterio.open(path, "w", **profiles[kind], SPARSE_OK="TRUE"):
                    pass
        state = cls(dict(paths), sidecar, digest, progress, block, dict(info or {}))
        state.save()
        return state

    def save(self) -> None:
        """Write the sidecar (atomically)."""
        payload = {
            "format": SIDECAR_FORMAT, "state": "running", "hash": self.digest,
            "parts": self.progress, **self.info,
        }
        atomic_write_text(self.sidecar, json.dumps(payload, indent=1) + "\n")

    def remaining(self, part: Part) -> Part | None:
        """The rows of ``part`` still to compute, or None when it is complete."""
        row = self.progress[part.key]
        return None if row >= part.y1 else Part(part.x0, part.x1, row, part.y1)

    def writer(self, part: Part, on_flush: Callable[[int], None] | None = None) -> PartWriter:
        """A :class:`~geociss.inference.stream.RowSink` for the remaining rows of ``part``."""
        return PartWriter(self, part, on_flush)

    def discard(self) -> None:
        """Delete the partial files and the sidecar."""
        for path in self.paths.values():
            path.unlink(missing_ok=True)
            Path(f"{path}.aux.xml").unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)


def _intact(paths: dict[str, Path]) -> bool:
    """True when every partial reads back; else warn (one line naming the file) and say False."""
    for path in paths.values():
        problem = unreadable(path)
        if problem is not None:
            warnings.warn(
                f"{path}: cannot be read ({problem}); discarded, its tiles are computed again",
                DamagedPartialWarning,
                stacklevel=3,
            )
            return False
    return True


class PartWriter:
    """Buffers finished rows of one part and writes them in whole TIFF block rows.

    Args:
        state: the partials and their progress.
        part: the rectangle written.
        on_flush: called with the new progress row after each flush (tests use it to interrupt).
    """

    def __init__(
        self, state: PartialSet, part: Part, on_flush: Callable[[int], None] | None = None
    ) -> None:
        self.state, self.part, self.on_flush = state, part, on_flush
        self.row = state.progress[part.key]  # first row not on disk
        self._pending: dict[str, list[np.ndarray]] = {}
        self._rows = 0

    def write(self, row: int, arrays: dict[str, np.ndarray]) -> None:
        """Take rows ``row .. row + n`` (they must follow the rows already given)."""
        if row != self.row + self._rows:
            raise ValueError(f"rows must arrive in order: expected {self.row + self._rows}, "
                             f"got {row}")
        n = next(iter(arrays.values())).shape[1]
        while n:
            boundary = min((self.row // self.state.block + 1) * self.state.block, self.part.y1)
            take = min(n, boundary - self.row - self._rows)
            for kind, arr in arrays.items():
                self._pending.setdefault(kind, []).append(arr[:, :take])
            arrays = {k: a[:, take:] for k, a in arrays.items()}
            self._rows += take
            n -= take
            if self.row + self._rows == boundary:
                self.flush()

    def flush(self) -> None:
        """Write the pending rows to every partial, then record the progress."""
        if not self._rows:
            return
        p = self.part
        window = RioWindow(p.x0, self.row, p.x1 - p.x0, self._rows)
        for kind, chunks in self._pending.items():
            data = np.concatenate(chunks, axis=1) if len(chunks) > 1 else chunks[0]
            path = self.state.paths[kind]
            with _quiet(), rasterio.open(path, "r+", NUM_THREADS="ALL_CPUS") as dst:
                dst.write(data, window=window)
        self.row += self._rows
        self._pending, self._rows = {}, 0
        self.state.progress[p.key] = self.row
        self.state.save()
        if self.on_flush is not None:
            self.on_flush(self.row)
