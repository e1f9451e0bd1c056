"""Output locks: one live process at a time writes an output (a raster, a run folder, a bundle).

A lock is a small JSON file next to what it protects, ``<target>.lock``, created atomically
(``O_CREAT | O_EXCL``) and holding the process id, host name, start time and command of its
holder. A second process that finds it stops at once with :class:`LockedError` (one line naming
the holder; the CLI exits with status 2) and touches nothing. The holder removes its lock when
it ends, normally or through an exception (a SIGINT or SIGTERM included, see
:mod:`geociss.interrupts`).

**Stale locks.** A lock whose holder ran on this host and is gone (no such process, a zombie,
or a reused process id: another start time) is taken over: under a guard lock
(``<target>.lock.break``, held for microseconds) the process checks that the lock file still
holds the stale content, renames it away atomically and deletes it, then creates its own with
``O_EXCL``. Only a guard holder removes a lock that is not its own, so of several processes
taking over one stale lock exactly one wins, and none removes a fresh lock. A lock of another
host is never taken over (its process may be alive there).

**Distributed runs.** Only the first process of a distributed run takes the lock
(:func:`secondary_rank`); the processes it launches write under its lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from geociss.errors import DataError

LOCK_SUFFIX = ".lock"
GUARD_SUFFIX = ".break"
ATTEMPTS = 50  # tries to create a lock that keeps changing under us (20 ms apart)
GUARD_DEPTH = 2  # guards of guards: a guard left by a process killed in a takeover is stale too
CREATION_GRACE_S = 5.0  # an unreadable lock file younger than this is being written
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")  # distributed ranks, 0 first

_HELD: set[Path] = set()  # lock files held by this process


def lock_path(target: str | Path) -> Path:
    """The lock file of ``target``: ``<target>.lock``, next to it."""
    return Path(f"{Path(target)}{LOCK_SUFFIX}")


def secondary_rank() -> bool:
    """True in a process of a distributed run other than the first (it takes no locks).

    ``RANK`` (torchrun's global rank) decides alone when set: rank 0 of a torchrun started by
    srun may run on any node, whatever its ``SLURM_PROCID``.
    """
    for name in ("RANK",) if "RANK" in os.environ else RANK_VARIABLES:
        with contextlib.suppress(ValueError):
            if int(os.environ.get(name, "0") or 0) != 0:
                return True
    return False


def _process(pid: int) -> tuple[str, int] | None:
    """State letter (``Z``: zombie) and start time (clock ticks after boot) of ``pid``, or None."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2 :].split()
        return fields[0], int(fields[19])
    return None


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock.

    Attributes:
        pid: process id.
        host: host name.
        since: when the lock was taken (seconds since the epoch).
        command: what the holder runs, e.g. ``geociss predict``.
        start: the process's start time in clock ticks after boot (Linux; tells a reused
            process id from the holder), or None.
    """

    pid: int
    host: str
    since: float
    command: str
    start: int | None = None

    @classmethod
    def current(cls, command: str) -> LockHolder:
        """This process, now."""
        pid, proc = os.getpid(), _process(os.getpid())
        return cls(pid, socket.gethostname(), time.time(), command, proc[1] if proc else None)

    @classmethod
    def parse(cls, text: str) -> LockHolder | None:
        """The holder recorded in a lock file's text, or None when it is incomplete or foreign."""
        try:
            data = json.loads(text)
            start = data.get("start")
            return cls(
                int(data["pid"]),
                str(data["host"]),
                float(data["since"]),
                str(data.get("command", "another process")),
                None if start is None else int(start),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def to_json(self) -> str:
        """The lock file's text."""
        return json.dumps(asdict(self)) + "\n"

    def describe(self) -> str:
        """``pid 123 on host h, since 2025-06-01 10:00:00``."""
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"pid {self.pid} on host {self.host}, since {since}"

    def on_this_host(self) -> bool:
        """True when the holder ran on this machine."""
        return self.host == socket.gethostname()

    def is_gone(self, lock: Path) -> bool:
        """True when the holder ran on this host and no longer runs (the lock is stale)."""
        if not self.on_this_host():
            return False
        if self.pid == os.getpid():
            return lock.absolute() not in _HELD
        if self.pid <= 0:
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, another user's
        proc = _process(self.pid)
        if proc is None:
            return False
        return proc[0] in ("Z", "X") or (self.start is not None and proc[1] != self.start)


class LockedError(DataError):
    """Another live process holds the lock of an output.

    Args:
        target: the output.
        lock: its lock file.
        holder: who holds it (None: a lock being created right now).
    """

    def __init__(self, target: Path, lock: Path, holder: LockHolder | None) -> None:
        self.lock, self.holder = lock, holder
        if holder is None:
            problem = f"another process is taking its lock {lock} right now; try again"
        elif not holder.on_this_host():
            problem = (
                f"in use by {holder.command} ({holder.describe()}, another host); if that run "
                f"is gone, delete the lock file {lock}"
            )
        else:
            mine = " (this process)" if holder.pid == os.getpid() else ""
            problem = (
                f"in use by {holder.command} ({holder.describe()}){mine}; wait for it to end "
                f"or write elsewhere (lock file {lock})"
            )
        super().__init__(target, problem)


class _Busy(Exception):
    """The lock is held (internal; becomes :class:`LockedError` with the target's name)."""

    def __init__(self, holder: LockHolder | None) -> None:
        self.holder = holder
        super().__init__(holder)


def _create(path: Path, text: str) -> tuple[int, int] | None:
    """Create ``path`` holding ``text`` if it does not exist; its identity, or None."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return None
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return st.st_dev, st.st_ino


def _read(path: Path) -> str | None:
    """The text of ``path``, or None when it does not exist."""
    with contextlib.suppress(FileNotFoundError):
        return path.read_text(encoding="utf-8", errors="replace")
    return None


def _release(path: Path, ident: tuple[int, int]) -> None:
    """Delete ``path`` if it is still the file we created."""
    with contextlib.suppress(FileNotFoundError):
        st = os.stat(path)
        if (st.st_dev, st.st_ino) == ident:
            path.unlink()
    _HELD.discard(path.absolute())


def _acquire(
    path: Path, me: LockHolder, depth: int = 0
) -> tuple[tuple[int, int], LockHolder | None]:
    """Take the lock file ``path`` for ``me``, taking over a stale one.

    Returns:
        The identity of the lock file, and the holder of the stale lock taken over (None when
        there was none, or when its content could not be read).

    Raises:
        _Busy: a live process holds it.
    """
    holder: LockHolder | None = None
    gone: LockHolder | None = None
    for _ in range(ATTEMPTS):
        ident = _create(path, me.to_json())
        if ident is not None:
            _HELD.add(path.absolute())
            return ident, gone
        text = _read(path)
        if text is None:
            continue  # released meanwhile
        holder = LockHolder.parse(text)
        if holder is None:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - path.stat().st_mtime < CREATION_GRACE_S:
                    time.sleep(0.02)  # its creator is writing it
                    continue
        elif not holder.is_gone(path):
            raise _Busy(holder)
        if _take_away(path, text, me, depth):
            gone = holder
    raise _Busy(holder)


def _take_away(path: Path, stale: str, me: LockHolder, depth: int) -> bool:
    """Remove the stale lock file ``path`` (text ``stale``) under a guard lock.

    Returns:
        True when this call removed it (False: another process did, or is doing it).
    """
    if depth >= GUARD_DEPTH:
        raise _Busy(None)
    guard = path.with_name(path.name + GUARD_SUFFIX)
    try:
        ident, _ = _acquire(guard, me, depth + 1)
    except _Busy:
        time.sleep(0.02)  # another process is taking it over: look again
        return False
    try:
        if _read(path) != stale:
            return False  # taken over or released meanwhile
        grave = path.with_name(f"{path.name}.stale-{os.getpid()}-{secrets.token_hex(4)}")
        os.rename(path, grave)
        if _read(grave) != stale:  # cannot happen while we hold the guard; never lose a lock
            with contextlib.suppress(FileExistsError):
                os.link(grave, path)
            grave.unlink()
            return False
        grave.unlink()
        return True
    except FileNotFoundError:
        return False
    finally:
        _release(guard, ident)


class OutputLock:
    """The lock of one output, as a context manager (``with OutputLock(path, "..."):``).

    Args:
        target: the output (a file or a folder; it need not exist). The lock file is
            ``<target>.lock``; missing parent folders are created, and removed again on release
            when they are still empty.
        command: what this process runs, shown to a second process (``geociss train``).
        log: where the note about a taken-over stale lock goes (default: stderr).
        enabled: take the lock (default: unless this is a secondary process of a distributed
            run, see :func:`secondary_rank`).
    """

    def __init__(
        self,
        target: str | Path,
        command: str,
        log: Callable[[str], None] | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.target = Path(target)
        self.path = lock_path(self.target)
        self.command = command
        self.log = log
        self.enabled = not secondary_rank() if enabled is None else enabled
        self._ident: tuple[int, int] | None = None
        self._made: list[Path] = []

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._ident is not None

    def acquire(self) -> OutputLock:
        """Take the lock (a stale one is taken over, with a note).

        Raises:
            LockedError: a live process holds it.
            DataError: the lock file cannot be created (no permission, read-only file system).
        """
        if not self.enabled or self.held:
            return self
        self._make_parents()
        try:
            self._ident, gone = _acquire(self.path, LockHolder.current(self.command))
        except _Busy as busy:
            self._remove_parents()
            raise LockedError(self.target, self.path, busy.holder) from None
        except OSError as err:
            self._remove_parents()
            raise DataError(self.path, f"cannot create the lock file: {err.strerror}") from None
        if gone is not None:
            note = f"{self.target}: took over the lock of a run that is gone ({gone.command}, "
            log = self.log or partial(print, file=sys.stderr)
            log(f"note: {note}{gone.describe()})")
        return self

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and the parent folders made for it."""
        if self._ident is not None:
            _release(self.path, self._ident)
            self._ident = None
        self._remove_parents()

    def _make_parents(self) -> None:
        missing = [p for p in self.path.parents if not p.exists()]
        for folder in reversed(missing):
            with contextlib.suppress(FileExistsError):
                folder.mkdir()
                self._made.append(folder)

    def _remove_parents(self) -> None:
        for folder in reversed(self._made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
        self._made = []

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class OutputLocks:
    """The locks of several outputs, all taken or none (``with OutputLocks(paths, "..."):``).

    Args:
        targets: the outputs.
        command: what this process runs.
        log: where notes about taken-over stale locks go (default: stderr).
    """

    def __init__(
        self, targets: Iterable[str | Path], command: str, log: Callable[[str], None] | None = None
    ) -> None:
        self.locks = [OutputLock(t, command, log) for t in targets]

    def __enter__(self) -> OutputLocks:
        taken: list[OutputLock] = []
        try:
            for lock in self.locks:
                taken.append(lock.acquire())
        except BaseException:
            for lock in reversed(taken):
                lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for lock in reversed(self.locks):
            lock.release()


__all__ = ["LockHolder", "LockedError", "OutputLock", "OutputLocks", "lock_path", "secondary_rank"]
