"""Bundle files a run reuses: atomic copies, and damaged copies discarded instead of blocking.

``geociss train`` reuses a step's bundle when its config hash matches, and shares step-0 models
between runs through ``<out>/.step0/<hash>/bundle.safetensors``. Both copies are made under a
temporary name in the target's folder and renamed, so a kill during the copy never leaves a
truncated file under the final name. A bundle that is nevertheless damaged (truncated by an
older geociss, a full disk, bit rot: it fails to load or fails its checksum) is deleted with a
warning, and the step is trained again, instead of failing every later run.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from geociss.engine.bundle import DamagedBundleError, StepBundle
from geociss.io import atomic_path


def copy_atomic(source: Path, target: Path) -> Path:
    """Copy ``source`` to ``target`` through a temporary file in ``target``'s folder.

    The target appears complete or not at all (``os.replace`` of the finished copy); an
    interrupted copy leaves at most a hidden ``.<name>.*.part`` file, never a truncated
    ``target``.

    Returns:
        ``target``.
    """
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return Path(target)


def load_or_discard(
    path: Path, log: Callable[[str], None], what: str = "it is trained again"
) -> StepBundle | None:
    """Load the bundle at ``path``; a damaged one is deleted with a warning and None returned.

    Only damage discards a file (:class:`DamagedBundleError`: unreadable, truncated, corrupt
    metadata, weights that fail their checksum); any other problem (a bundle of a newer format)
    is raised as usual.

    Args:
        path: the bundle file.
        log: where the one-line warning goes.
        what: what happens instead, for the warning.
    """
    try:
        return StepBundle.load(path)
    except DamagedBundleError as err:
        path.unlink(missing_ok=True)
        log(f"warning: {err}; discarded, {what}")
        return None


__all__ = ["copy_atomic", "load_or_discard"]
