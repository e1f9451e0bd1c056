"""Checkpoints that resume a training step mid-epoch and end where an uninterrupted run ends.

A step's ``checkpoints/last.ckpt`` is written at every epoch end and every
``train.checkpoint_every_n_steps`` training steps (:class:`StepCheckpoint`), always to a
temporary name in the same folder, flushed to disk and renamed (:class:`AtomicCheckpointIO`),
so a kill at any moment leaves the previous checkpoint or the new one, never a torn file.
Lightning's own writer is not enough: it writes to the system temporary folder and moves the
file, which copies it when ``/tmp`` is another file system.

What a checkpoint holds, beyond Lightning's (weights, optimiser and scheduler states, loop
counters):

* **the position in the epoch's window stream**: the training loader is a
  :class:`ResumableLoader`, whose state (epoch and batches delivered) Lightning saves with the
  loops; on resume the sampler skips the windows of the batches already trained instead of
  drawing new ones, so batch ``k`` of epoch ``e`` is the same windows in both runs;
* **the random states** of torch (CPU and every CUDA device), NumPy and Python, taken when the
  checkpoint is written and put back just before the first resumed batch: augmentation and
  dropout continue the same random streams.

The data loader's own generator (which only seeds worker processes) is seeded apart from the
global one, so starting an epoch's iterator does not consume the random numbers augmentation
draws. See docs/reliability.md ("Resume and determinism") for what is guaranteed.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import DataLoader, Dataset, Sampler

from geociss.faults import fault_point
from geociss.io import atomic_path

LAST = "last.ckpt"
"""File name of a step's resume checkpoint (in ``<step>/checkpoints/``)."""


class ResumableSampler(Sampler[Any]):
    """Wrap a sampler so that the next pass can start ``skip`` items into its stream.

    ``set_epoch`` is forwarded; a pending skip applies to the next ``__iter__`` of the epoch it
    was set for only. The length stays the full length of the wrapped sampler (Lightning counts
    the skipped batches as done).

    Args:
        inner: the sampler to wrap (its stream must depend on the epoch only).
    """

    def __init__(self, inner: Sampler[Any]) -> None:
        super().__init__()
        self.inner = inner
        self.epoch = int(getattr(inner, "epoch", 0))
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the stream of ``epoch``; a pending skip for another epoch is dropped."""
        if int(epoch) != self.epoch:
            self.skip = 0
        self.epoch = int(epoch)
        set_epoch = getattr(self.inner, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.epoch)

    def resume(self, epoch: int, skip: int) -> None:
        """Start the next pass in ``epoch`` after its first ``skip`` items."""
        self.set_epoch(epoch)
        self.skip = max(0, int(skip))

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        skip, self.skip = self.skip, 0
        return itertools.islice(iter(self.inner), skip, None)


class ResumableLoader(DataLoader):
    """A ``DataLoader`` whose place in the epoch is saved in Lightning checkpoints.

    Its ``state_dict()`` is the epoch and the batches delivered in it; ``load_state_dict``
    makes the next pass continue from there. The underlying iterator (and with it the sampler's
    stream) starts on the first ``next``, not on ``iter()``: Lightning creates the iterator of
    the first epoch of a fit before it sets the sampler's epoch and before a resumed state is
    handed back, and worker processes would otherwise prefetch from the wrong stream. Build it
    with :func:`resumable_loader` (its sampler must be a :class:`ResumableSampler`).

    Lightning saves the state of such a loader with its loops, but gives it back only when the
    loader is created after the checkpoint is restored; :class:`StepCheckpoint` saves and
    restores it itself, because ``configure_optimizers`` (reading
    ``trainer.estimated_stepping_batches``) creates the loader before.
    """

    delivered = 0
    """Batches of the current pass handed to training (skipped batches included)."""

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        sampler = self.sampler
        assert isinstance(sampler, ResumableSampler)
        self.delivered = sampler.skip // max(1, self.batch_size or 1)
        for batch in super().__iter__():
            self.delivered += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """Epoch of the current pass and batches delivered in it."""
        sampler = self.sampler
        assert isinstance(sampler, ResumableSampler)
        return {"epoch": sampler.epoch, "batches": int(self.delivered)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue after ``state``: within its epoch, or at the next one when it was complete."""
        sampler = self.sampler
        assert isinstance(sampler, ResumableSampler)
        epoch, batches = int(state["epoch"]), int(state["batches"])
        if batches >= len(self):
            sampler.resume(epoch + 1, 0)
        else:
            sampler.resume(epoch, batches * int(self.batch_size or 1))


def resumable_loader(
    dataset: Dataset[Any], sampler: Sampler[Any], seed: int, **kwargs: Any
) -> ResumableLoader:
    """A :class:`ResumableLoader` over ``sampler``; ``kwargs`` go to ``DataLoader``.

    ``seed`` seeds the loader's own generator (worker seeds), so that iterating the loader never
    draws from the global torch generator that augmentation and dropout use.
    """
    generator = torch.Generator().manual_seed(int(seed))
    wrapped = ResumableSampler(sampler)
    return ResumableLoader(dataset, sampler=wrapped, generator=generator, **kwargs)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint writer: temporary name in the target folder, fsync, rename."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` atomically (``storage_options`` is not supported)."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not support storage_options")
        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())


def training_loaders(trainer: L.Trainer) -> list[ResumableLoader]:
    """The :class:`ResumableLoader` s among ``trainer``'s training loaders (once created)."""
    loaders = trainer.train_dataloader
    if loaders is None:
        return []
    if isinstance(loaders, dict):
        items = list(loaders.values())
    elif isinstance(loaders, list | tuple):
        items = list(loaders)
    else:
        items = [loaders]
    return [dl for dl in items if isinstance(dl, ResumableLoader)]


def random_states() -> dict[str, Any]:
    """The global random states of torch (CPU, CUDA), NumPy and Python, as plain tensors/lists.

    Plain types only, so that the checkpoint loads with ``torch.load(weights_only=True)``.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # type: ignore[misc]
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [str(kind), torch.from_numpy(np.asarray(keys, np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }


def set_random_states(states: dict[str, Any]) -> None:
    """Put back what :func:`random_states` returned."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


class StepCheckpoint(Checkpoint):
    """Write ``last.ckpt`` at every epoch end and every ``every_n_steps`` training steps.

    Its own state in the checkpoint is the random states (:func:`random_states`), put back at
    the start of the resumed fit. A fault point ``train:step:<n>`` (:mod:`geociss.faults`) after
    training step ``n`` lets the reliability tests kill the process there.

    Args:
        path: the checkpoint file (written atomically by the trainer's checkpoint IO).
        every_n_steps: training steps between two checkpoints within an epoch (0: epoch ends only).
        note: where the resume message goes (rank 0 only); None for silence.
    """

    def __init__(
        self, path: Path, every_n_steps: int, note: Callable[[str], None] | None = None
    ) -> None:
        super().__init__()
        self.path, self.every_n_steps, self.note = Path(path), int(every_n_steps), note
        self._restored: dict[str, Any] | None = None
        self._trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Remember the trainer (its training loaders are part of this callback's state)."""
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        """Random states and loader positions at the moment the checkpoint is written."""
        loaders = training_loaders(self._trainer) if self._trainer is not None else []
        return {"random": random_states(), "loaders": [dl.state_dict() for dl in loaders]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the state until the resumed fit starts."""
        self._restored = dict(state_dict)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After a resume: loader positions and random states back, say where it continues."""
        if self._restored is None:
            return
        loaders = training_loaders(trainer)
        states = list(self._restored.get("loaders", []))
        if len(states) != len(loaders):
            raise RuntimeError(
                f"{self.path} holds the positions of {len(states)} training loader(s), "
                f"this fit has {len(loaders)}"
            )
        for loader, state in zip(loaders, states, strict=True):
            loader.load_state_dict(state)
        set_random_states(self._restored["random"])
        self._restored = None
        if self.note is not None and trainer.is_global_zero:
            per_epoch = int(trainer.num_training_batches)
            done = int(trainer.global_step)
            epoch, batch = divmod(done, per_epoch) if per_epoch > 0 else (0, 0)
            total = int(trainer.max_epochs or 0) * per_epoch
            if done >= total:
                self.note(f"resuming from {self.path}: all {total} training steps were done")
                return
            self.note(
                f"resuming from {self.path} at epoch {epoch + 1}/{trainer.max_epochs}, "
                f"batch {batch + 1}/{per_epoch} (training step {done + 1}/{total})"
            )

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Every ``every_n_steps`` steps (not on an epoch's last batch: the epoch end saves)."""
        last = batch_idx + 1 >= trainer.num_training_batches
        if self.every_n_steps > 0 and not last and trainer.global_step % self.every_n_steps == 0:
            trainer.save_checkpoint(self.path, weights_only=False)
        fault_point(f"train:step:{trainer.global_step}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """At every epoch end."""
        trainer.save_checkpoint(self.path, weights_only=False)
