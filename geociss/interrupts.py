"""Termination signals: SIGINT (Ctrl-C) and SIGTERM end a command with 130 / 143, cleanly.

Every ``geociss`` command runs inside :func:`handling_signals` (the CLI group does it). A
termination signal then stops the command by raising an exception where it is, so that every
``finally`` and ``with`` block runs: temporary files are removed, locks released, and nothing
half-written is left under a final name (outputs are published by renaming). The CLI prints one
line (``interrupted (SIGTERM): ...``) and exits with ``128 + signal number``.

* SIGINT raises :class:`KeyboardInterrupt`, as Python does by default.
* SIGTERM raises :class:`Interrupted` (a :class:`BaseException`, so that ``except Exception``
  blocks do not swallow it). While Lightning fits a model it installs its own SIGTERM handler,
  which calls ours too: then the signal is only recorded and Lightning stops at the end of the
  current batch (it raises a ``SystemExit`` without a code, which the CLI maps to 143 because
  the signal was recorded). A second SIGTERM stops at once. After a fit has returned,
  :func:`raise_if_interrupted` turns a signal that arrived during its last batch into
  :class:`Interrupted` before anything is written.
* Processes forked from a command (data-loader workers) inherit the handlers; there they hand
  the signal to the handler that was installed before, so a worker behaves as without geociss.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""The signals a command handles (SIGKILL cannot be handled; a lock it leaves is stale)."""


class Interrupted(BaseException):
    """A termination signal stopped the command.

    Args:
        signum: the signal number.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal_name(signum)}")

    @property
    def exit_status(self) -> int:
        """The process exit status: ``128 + signum`` (130 for SIGINT, 143 for SIGTERM)."""
        return exit_status(self.signum)


class _State:
    """What the handlers know: the process that installed them, the first signal received."""

    owner: int | None = None
    received: int | None = None
    previous: dict[int, Any] = {}  # noqa: RUF012 (process-wide; replaced on install)


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15, ``SIGINT`` for 2 (the number for an unknown signal)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_status(signum: int) -> int:
    """The exit status of a command stopped by ``signum``: ``128 + signum`` (shell convention)."""
    return 128 + int(signum)


def received() -> int | None:
    """The first termination signal received by this command, or None."""
    return _State.received


def stopped_by(err: BaseException) -> int | None:
    """The signal behind ``err`` escaping a command, or None when no signal was involved.

    The first signal received wins; a KeyboardInterrupt with none recorded is SIGINT.
    """
    if _State.received is not None:
        return _State.received
    return signal.SIGINT if isinstance(err, KeyboardInterrupt) else None


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` when a signal arrived that nothing has acted on yet.

    Call it after a Lightning fit: a SIGTERM received during the last batch of a fit is only
    recorded (Lightning does not stop a fit that is about to end), and the command must stop
    before it writes its outputs.

    Raises:
        Interrupted: a termination signal was received.
    """
    if _State.received is not None and _State.owner == os.getpid():
        raise Interrupted(_State.received)


def _lightning_in_charge() -> bool:
    """True while a Lightning trainer's SIGTERM handler (which calls ours) is installed."""
    current = signal.getsignal(signal.SIGTERM)
    return type(current).__module__.startswith(("lightning", "pytorch_lightning"))


def _delegate(signum: int, frame: FrameType | None) -> None:
    """Hand the signal to the handler that was installed before ours (forked processes)."""
    before = _State.previous.get(signum, signal.SIG_DFL)
    if callable(before):
        before(signum, frame)
    elif before != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _handle(signum: int, frame: FrameType | None) -> None:
    """The handler of SIGINT and SIGTERM (see the module docstring)."""
    if os.getpid() != _State.owner:
        _delegate(signum, frame)
        return
    again = _State.received is not None
    if _State.received is None:
        _State.received = signum
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    if _lightning_in_charge() and not again:
        return  # Lightning raises at the end of the current batch
    raise Interrupted(signum)


@contextlib.contextmanager
def handling_signals() -> Iterator[None]:
    """Handle SIGINT and SIGTERM as described in the module docstring; restore on exit.

    Outside the main thread (where Python cannot install handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # Lightning logs "Received SIGTERM" at INFO level; the CLI prints its own line instead
    logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector").setLevel(
        logging.WARNING
    )
    saved = (_State.owner, _State.received, _State.previous)
    _State.owner, _State.received = os.getpid(), None
    _State.previous = {s: signal.getsignal(s) for s in SIGNALS}
    try:
        for s in SIGNALS:
            signal.signal(s, _handle)
        yield
    finally:
        for s, handler in _State.previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        _State.owner, _State.received, _State.previous = saved


__all__ = [
    "Interrupted",
    "exit_status",
    "handling_signals",
    "raise_if_interrupted",
    "received",
    "signal_name",
    "stopped_by",
]
