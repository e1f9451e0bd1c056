"""Training progress: a bar on a terminal, plain lines in a log file.

On a terminal, :class:`EpochBar` is Lightning's rich progress bar with a 1-based epoch counter
("Epoch 3/3" in the last of 3 epochs; Lightning's own shows "Epoch 2/2"). When standard output
is not a terminal (redirected to a file, a pipe, a batch system's log), a bar prints nothing
until it ends; :class:`ProgressLines` prints one line per epoch instead, and one every
``every_n_steps`` training steps within long epochs::

    step 0: epoch 2/3, batch 4/4, training step 8/12, loss 1.2046, elapsed 0:00:03, ETA 0:00:02

The loss is the mean over the training steps since the previous line; elapsed time counts from
the start of this fit (this process), and the ETA extrapolates its pace over the steps left.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, RichProgressBar


class EpochBar(RichProgressBar):
    """Lightning's rich progress bar, with "Epoch k/K" counted from 1."""

    def _get_train_description(self, current_epoch: int) -> str:
        text = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs is not None:
            text += f"/{self.trainer.max_epochs}"
        width = len(self.validation_description)
        return f"{text:{width}}" if width > len(text) else text


def clock(seconds: float) -> str:
    """``H:MM:SS`` of a duration (negative durations count as 0)."""
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _stdout_line(text: str) -> None:
    print(text, file=sys.stdout, flush=True)


class ProgressLines(Callback):
    """Print a progress line at every epoch end and every ``every_n_steps`` training steps.

    Only the global-zero process prints.

    Args:
        every_n_steps: training steps between two lines within an epoch (0: epoch ends only).
        write: where a line goes (default: standard output, flushed).
    """

    def __init__(self, every_n_steps: int, write: Callable[[str], None] = _stdout_line) -> None:
        super().__init__()
        self.every_n_steps = int(every_n_steps)
        self.write = write
        self.start = time.monotonic()
        self.first_step = 0
        self._loss: torch.Tensor | None = None
        self._count = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the clock (a resumed fit counts its own steps for the pace)."""
        self.start = time.monotonic()
        self.first_step = int(trainer.global_step)
        self._loss, self._count = None, 0

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Accumulate the loss; a line every ``every_n_steps`` steps within the epoch."""
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            value = loss.detach().float()
            self._loss = value if self._loss is None else self._loss + value
            self._count += 1
        last = batch_idx + 1 >= trainer.num_training_batches
        if self.every_n_steps > 0 and not last and trainer.global_step % self.every_n_steps == 0:
            self._line(trainer, pl_module, batch_idx + 1)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A line at every epoch end."""
        self._line(trainer, pl_module, int(trainer.num_training_batches))

    def _line(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: int) -> None:
        if not trainer.is_global_zero:
            return
        step = int(trainer.global_step)
        total = int(trainer.max_epochs or 0) * int(trainer.num_training_batches)
        elapsed = time.monotonic() - self.start
        done = step - self.first_step
        eta = elapsed / done * max(0, total - step) if done > 0 else float("nan")
        loss = (
            f"{float(self._loss) / self._count:.4f}"
            if self._loss is not None and self._count
            else "n/a"
        )
        self._loss, self._count = None, 0
        index = getattr(pl_module, "step_index", None)
        prefix = f"step {index}: " if index is not None else ""
        self.write(
            f"{prefix}epoch {trainer.current_epoch + 1}/{trainer.max_epochs}, "
            f"batch {batch}/{trainer.num_training_batches}, training step {step}/{total}, "
            f"loss {loss}, elapsed {clock(elapsed)}, "
            f"ETA {clock(eta) if eta == eta else 'n/a'}"
        )
