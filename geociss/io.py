"""Small file-system helpers: atomic writes, and checks of output paths.

Outputs are written to a temporary name and renamed, so nothing half-written is ever left
behind. The checks turn an output path that cannot work (a folder given for a file, a file given
for a folder) into a one-line error before any work is done.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from geociss.errors import DataError


def _umask() -> int:
    """The process's umask (read from ``/proc`` where possible: setting it is process-wide)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _check_ancestors(path: Path, what: str) -> None:
    """Raise when the nearest existing ancestor of ``path`` is not a folder."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DataError(parent, f"is a file, so {what} {path} cannot be created in it")
            return


def check_output_file(path: str | Path, what: str = "the output") -> Path:
    """Check that ``path`` can be written as a file (it is not a folder, nor under a file).

    Args:
        path: the file to be written.
        what: how the message names its option, e.g. ``--json``.

    Raises:
        DataError: one line naming the path and the problem.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(path, f"is a folder, not a file; give {what} a file name")
    _check_ancestors(path, what)
    return path


def check_output_dir(path: str | Path, what: str = "the output") -> Path:
    """Check that ``path`` is a folder or can be created as one (it is not an existing file).

    Args:
        path: the folder to be written into.
        what: how the message names its option, e.g. ``--out``.

    Raises:
        DataError: one line naming the path and the problem.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(path, f"is a file, not a folder; give {what} a folder")
    _check_ancestors(path, what)
    return path


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    On an exception the temporary file is removed and ``target`` is left as it was. The file
    gets the permissions a plain ``open(target, "w")`` would give a new file (``0o666`` less the
    umask), whatever mode the writer created the temporary file with (safetensors uses 0600).

    Args:
        target: final path.
        suffix: suffix of the temporary file (default: the target's own suffix, so that
            drivers that look at the extension, such as GDAL's, pick the right format).

    Raises:
        DataError: ``target`` is a folder, or lies under a file.
    """
    target = check_output_file(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.",
        suffix=(suffix if suffix is not None else target.suffix) + ".part",
        dir=target.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # let the writer create it (GDAL refuses to overwrite some files)
    try:
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
        aux = tmp.with_name(tmp.name + ".aux.xml")
        if aux.exists():
            aux.unlink()


def atomic_write_text(target: str | Path, text: str) -> None:
    """Write ``text`` to ``target`` atomically (UTF-8)."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
