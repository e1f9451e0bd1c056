"""The inputs of a ``predict`` run (files, folders, glob patterns) and the outcome of each.

:func:`expand_inputs` turns the command line's inputs into the rasters to predict, leaving out
an earlier run's outputs in the output folder and GIS sidecars a pattern matches; every input
gets a :class:`FileResult`.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

RASTER_SUFFIXES = (".tif", ".tiff")
OUTPUT_SUFFIXES = ("_classes", "_confidence", "_probabilities")
SIDECAR_SUFFIXES = (
    ".xml",
    ".qml",
    ".json",
    ".gpkg",
    ".ovr",
    ".msk",
    ".tfw",
    ".wld",
    ".prj",
    ".lock",
    ".break",
)
"""Files a glob pattern may match that are never rasters to predict (GIS sidecars, our own)."""


@dataclass
class FileResult:
    """The outcome for one input.

    Attributes:
        input: the input as given or found.
        status: ``written``, ``skipped`` (finished before, same settings) or ``failed``.
        message: the one-line reason of a failure, else "".
        tiles: tiles predicted.
        skipped_tiles: all-nodata tiles skipped.
        seconds: wall time.
        outputs: files written.
    """

    input: str
    status: str
    message: str = ""
    tiles: int = 0
    skipped_tiles: int = 0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)


def expand_inputs(
    items: Sequence[str | Path], out_dir: Path
) -> tuple[list[Path], list[FileResult]]:
    """Turn files, folders (their ``.tif``/``.tiff`` files) and glob patterns into files.

    Outputs of an earlier run lying in ``out_dir`` are never taken as inputs. Two inputs with
    the same file name (their outputs would collide) fail, all but the first.

    Returns:
        ``(files, failures)``: the inputs to predict, and a failed result per input that is
        missing, an empty folder, a pattern matching nothing, or a colliding name.
    """
    files: list[Path] = []
    failures: list[FileResult] = []
    for item in items:
        found, problem = _expand_one(str(item), out_dir)
        if problem:
            failures.append(FileResult(str(item), "failed", f"{item}: {problem}"))
        files.extend(found)
    seen: set[Path] = set()
    stems: dict[str, Path] = {}
    for f in files:
        if f.resolve() in seen:
            continue
        seen.add(f.resolve())
        if f.stem in stems:
            problem = f"output name {f.stem!r} collides with input {stems[f.stem]}; rename one"
            failures.append(FileResult(str(f), "failed", f"{f}: {problem}"))
            continue
        stems[f.stem] = f
    return list(stems.values()), failures


def _expand_one(item: str, out_dir: Path) -> tuple[list[Path], str | None]:
    """The files of one input argument, or the reason there are none."""
    path = Path(item)
    if path.is_file():
        return [path], None
    if path.is_dir():
        found = sorted(f for f in path.iterdir() if f.suffix.lower() in RASTER_SUFFIXES)
        found = [f for f in found if f.is_file() and not _is_output(f, out_dir)]
        return found, None if found else "folder holds no .tif/.tiff rasters"
    if glob.has_magic(item):
        found = sorted(Path(f) for f in glob.glob(item, recursive=True))
        found = [
            f
            for f in found
            if f.is_file()
            and f.suffix.lower() not in SIDECAR_SUFFIXES
            and ".partial" not in f.name
            and not _is_output(f, out_dir)
        ]
        return found, None if found else "no file matches this pattern"
    return [], "input not found"


def _is_output(path: Path, out_dir: Path) -> bool:
    return path.parent.resolve() == out_dir.resolve() and path.stem.endswith(OUTPUT_SUFFIXES)


__all__ = ["FileResult", "expand_inputs"]
