"""Seeds shared among processes that run side by side (``geociss bench --jobs N``).

A benchmark cell of the cpu preset trains with batches of 8 windows of 128 px: torch gains
little from more than one or two threads on such small convolutions, while the seeds are
independent. Running the seeds in N processes of ``cores // N`` threads each uses the cores
better (on 2 cores, three one-thread processes finished an incremental step about every 76 s
of wall time, one two-thread process about every 100 s: read from the cpu table's step logs,
not an interleaved measurement).

Each child runs its seeds of every task and method into the same output folder (run folders
and the step-0 cache are per seed, so children never write the same file); the parent waits
for all of them and then tabulates. Given labels, the parent relays each child's output line
by line with the child's label in front (``[s1] step 1: learning car ...``), so that lines of
children running side by side neither mix nor lose whose they are. Signals:

* Ctrl-C in a terminal reaches the whole process group: the children stop cleanly on their
  own and the parent waits for them before it stops.
* SIGTERM sent to the parent alone (``kill PID``) is passed on to every child still running;
  the parent waits for them, then stops. Nothing runs on after the parent has ended.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import IO

_WRITE = threading.Lock()


def seed_groups(seeds: Sequence[int], jobs: int) -> list[list[int]]:
    """The seeds of each of ``jobs`` processes, round-robin; no empty group.

    Raises:
        ValueError: ``jobs`` < 1.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    return [list(seeds[i::jobs]) for i in range(min(jobs, len(seeds)))]


def thread_env(cores: int, jobs: int) -> dict[str, str]:
    """Environment giving each of ``jobs`` processes ``cores // jobs`` threads (at least one)."""
    threads = str(max(1, cores // max(1, jobs)))
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def run_jobs(
    commands: Sequence[Sequence[str]],
    env: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
    labels: Sequence[str] | None = None,
) -> int:
    """Run ``commands`` side by side and wait for all; the worst (highest) exit status.

    ``env`` is added to this process's environment for every child. ``labels`` (one per
    command): each child's stdout and stderr are relayed to this process's stdout a whole line
    at a time, as ``[label] line`` (:func:`label_of` makes the seed groups' labels); without,
    the children write to this process's terminal themselves. A KeyboardInterrupt or any other
    exception while waiting (a SIGTERM under :mod:`geociss.interrupts`) sends SIGTERM to the
    children still running (not for Ctrl-C, which reached them already), waits for them, and
    is raised again.
    """
    full_env = {**os.environ, **(env or {})}
    if labels is not None:
        if len(labels) != len(commands):
            raise ValueError(f"{len(labels)} labels for {len(commands)} commands")
        width = max(shutil.get_terminal_size().columns - max(map(len, labels)) - 3, 80)
        full_env.setdefault("COLUMNS", str(width))  # the children's rich consoles wrap there
    children: list[subprocess.Popen[bytes]] = []
    relays: list[threading.Thread] = []
    try:
        for k, cmd in enumerate(commands):
            if labels is None:
                children.append(subprocess.Popen(list(cmd), env=full_env))
                continue
            child = subprocess.Popen(
                list(cmd), env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            children.append(child)
            assert child.stdout is not None
            relays.append(threading.Thread(
                target=_relay, args=(child.stdout, f"[{labels[k]}] "), daemon=True
            ))
            relays[-1].start()
        return max((child.wait() for child in children), default=0)
    except BaseException as err:
        alive = [c for c in children if c.poll() is None]
        if alive:
            if not isinstance(err, KeyboardInterrupt):
                for child in alive:
                    child.send_signal(signal.SIGTERM)
            log(f"bench: waiting for {len(alive)} job(s) to stop")
            for child in alive:
                _wait_through_signals(child)
        raise
    finally:
        for relay in relays:  # the children's last lines, after they ended
            relay.join(timeout=10)


def label_of(seeds: Sequence[int]) -> str:
    """The label of a seed group's output lines: ``s1``, ``s0,3``."""
    return "s" + ",".join(map(str, seeds))


def _relay(stream: IO[bytes], prefix: str) -> None:
    """Copy ``stream`` to this process's stdout, one whole line at a time, ``prefix`` first.

    When this process's stdout is gone (``geociss bench --jobs 3 | head``), the rest is read
    and dropped: a child whose pipe filled up would otherwise wait forever to write.
    """
    writable = True
    for raw in iter(stream.readline, b""):
        if not writable:
            continue
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        try:
            with _WRITE:
                sys.stdout.write(prefix + line + "\n")
                sys.stdout.flush()
        except (OSError, ValueError):  # a closed pipe or file
            writable = False
    stream.close()


def _wait_through_signals(child: subprocess.Popen[bytes]) -> None:
    """Wait for ``child`` even when further signals interrupt the wait."""
    while True:
        try:
            child.wait()
            return
        except BaseException:  # a second Ctrl-C / SIGTERM: keep waiting, the child is stopping
            child.send_signal(signal.SIGTERM)
