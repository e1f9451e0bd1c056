"""Bundle files a run reuses: atomic copies, and damaged copies discarded instead of blocking.

``geociss train`` reuses a step's bundle when its config hash matches, and shares step-0 models
between runs through ``<out>/.step0/<hash>/bundle.safetensors``. Both copies are made under a
temporary name in the target's folder and renamed, so a kill during the copy never leaves a
truncated file under the final name. A bundle that is nevertheless damaged (truncated by an
older geociss, a full disk, bit rot: it fails to load or fails its checksum) is deleted with a
warning, and the step is trained again, instead of failing every later run.

The shared step-0 cache ``<out>/.step0/<hash>/`` holds one step-0 model per configuration
(data, model, scenario and the method's step-0 key) and spares a run with another incremental
method the step-0 training. Every run's ``step0/step0_cache.json`` records the entry it used;
``geociss train`` notes the cache's size. Deleting ``<out>/.step0/`` (or one entry) is safe: a
missing model is trained again on demand, and run folders keep their own copies.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from geociss.engine.bundle import DamagedBundleError, StepBundle
from geociss.io import atomic_path, atomic_write_text

STEP0_DIR = ".step0"
"""Folder of the shared step-0 cache inside a training ``out`` folder."""

STEP0_RECORD = "step0_cache.json"
"""File in a run's ``step0/`` folder naming the cache entry the run used."""


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


def record_step0_entry(step_dir: Path, cache: Path) -> None:
    """Write ``<step_dir>/step0_cache.json`` naming the cache entry (hash and file) used."""
    payload = {"entry": cache.parent.name, "path": str(cache)}
    atomic_write_text(Path(step_dir) / STEP0_RECORD, json.dumps(payload, indent=2) + "\n")


def step0_cache_note(out: Path) -> str | None:
    """One line on the shared step-0 cache of ``out``: where, how many models, how large.

    Returns:
        None when ``<out>/.step0/`` holds no model.
    """
    root = Path(out) / STEP0_DIR
    models = sorted(root.glob("*/bundle.safetensors")) if root.is_dir() else []
    if not models:
        return None
    size = sum(m.stat().st_size for m in models) / 2**20
    return (
        f"shared step-0 cache {root}: {len(models)} model(s), {size:.1f} MiB; deleting it is "
        "safe (a missing model is trained again when a run needs it)"
    )


__all__ = [
    "STEP0_DIR",
    "STEP0_RECORD",
    "copy_atomic",
    "load_or_discard",
    "record_step0_entry",
    "step0_cache_note",
]
