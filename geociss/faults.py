"""Fault-injection points for the reliability tests: a process dies or pauses where a test says.

Code calls :func:`fault_point` with a name at the places where a real fault matters (a file
copied but not yet renamed, one output published and the next not yet). Outside the tests
nothing is set and a fault point costs one lookup in the environment. Two variables act on them:

* ``GEOCISS_TEST_KILL_AT=<point>``: the process kills itself with SIGKILL when it reaches
  ``<point>`` (as a power cut or the out-of-memory killer would: no cleanup runs). With
  ``GEOCISS_TEST_KILL_RANK=<r>`` as well, only the rank whose ``RANK`` is ``<r>`` dies (the
  other ranks of a ``torchrun`` launch go on).
* ``GEOCISS_TEST_PAUSE=<point>@<folder>``: the first time the process reaches ``<point>`` it
  writes ``<folder>/<point>.reached`` (holding its process id) and waits until
  ``<folder>/<point>.go`` exists, at most :data:`MAX_WAIT_S` seconds. Tests hold a real run at
  a chosen point this way while they start a second run on the same outputs or send it a signal.

Points:

* ``predict:flushed``: ``geociss predict`` (or a rank of ``predict --devices N``) has written a
  block row of an input's rasters (its partial files and their progress sidecar are on disk).
* ``predict:copied:<kind>``: the COG of output ``<kind>`` is copied, not yet renamed.
* ``predict:published:classes``: the class raster is published, the other outputs not yet.
* ``train:step:<n>``: ``geociss train`` / ``extend`` has finished optimiser step ``<n>`` of the
  current fit (counted from 1); a checkpoint due every N steps is written, the one of an
  epoch's end not yet.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

KILL_ENV = "GEOCISS_TEST_KILL_AT"
KILL_RANK_ENV = "GEOCISS_TEST_KILL_RANK"
PAUSE_ENV = "GEOCISS_TEST_PAUSE"
MAX_WAIT_S = 120.0

_paused: set[str] = set()


def _pause_folder(point: str) -> Path | None:
    """The folder of ``point``'s pause when the environment asks for one, else None."""
    name, sep, folder = os.environ.get(PAUSE_ENV, "").partition("@")
    return Path(folder) if sep and folder and name == point else None


def _pause(point: str, folder: Path) -> None:
    """Announce ``point`` in ``folder`` and wait for the go-ahead (once per process)."""
    if point in _paused:
        return
    _paused.add(point)
    name = point.replace(":", "-")
    folder.mkdir(parents=True, exist_ok=True)
    go = folder / f"{name}.go"
    (folder / f"{name}.reached").write_text(str(os.getpid()), encoding="utf-8")
    deadline = time.monotonic() + MAX_WAIT_S
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def fault_point(point: str) -> None:
    """Die or pause here when ``GEOCISS_TEST_KILL_AT`` / ``GEOCISS_TEST_PAUSE`` name ``point``.

    The files the pause writes are named after ``point`` with ``:`` replaced by ``-``.
    """
    if os.environ.get(KILL_ENV) == point and os.environ.get(KILL_RANK_ENV) in (
        None,
        os.environ.get("RANK"),
    ):
        os.kill(os.getpid(), signal.SIGKILL)
    folder = _pause_folder(point)
    if folder is not None:
        _pause(point, folder)


def progress_fault(point: str) -> Callable[[int], None] | None:
    """A progress callback (``on_flush``) that calls :func:`fault_point` ``(point)``.

    None when neither variable names ``point``, so that callers pass nothing in production.
    """
    if os.environ.get(KILL_ENV) != point and _pause_folder(point) is None:
        return None

    def hook(_: int) -> None:
        fault_point(point)

    return hook


__all__ = ["KILL_ENV", "KILL_RANK_ENV", "MAX_WAIT_S", "PAUSE_ENV", "fault_point", "progress_fault"]
