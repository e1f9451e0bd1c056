"""A run folder that a failed first attempt created is removed again, unless it holds progress.

``geociss train`` creates ``<out>/<name>/`` when it starts. When the run then fails (bad data
found late, a config error raised by a step, an interrupt before the first checkpoint), a
folder holding only ``config.yaml``, a ``checkpoints/config_hash`` and empty logs would be
mistaken for a run. :func:`removed_unless_progress` deletes such a folder; a folder that existed
before, or that holds a step bundle or a checkpoint (something a rerun resumes from), is kept.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROGRESS = ("bundle.safetensors", "last.ckpt")
"""Files that make a run folder worth keeping after a failure."""


def holds_progress(run_dir: Path) -> bool:
    """True when ``run_dir`` holds a step bundle or a training checkpoint."""
    return any(next(run_dir.rglob(name), None) is not None for name in PROGRESS)


@contextmanager
def removed_unless_progress(run_dir: Path) -> Iterator[None]:
    """Remove ``run_dir`` if the block fails, the folder is new and it holds no progress."""
    existed = run_dir.exists()
    try:
        yield
    except BaseException:
        if not existed and run_dir.is_dir() and not holds_progress(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


__all__ = ["PROGRESS", "holds_progress", "removed_unless_progress"]
