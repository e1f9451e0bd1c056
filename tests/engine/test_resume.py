"""Pieces of mid-epoch resume and progress output, without a training run."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from geociss.engine.progress import EpochBar, ProgressLines, clock
from geociss.engine.resume import (
    AtomicCheckpointIO,
    ResumableLoader,
    random_states,
    resumable_loader,
    set_random_states,
)


class EpochStream(torch.utils.data.Sampler):
    """Items ``100 * epoch + i``: the stream depends on the epoch, as the window sampler's."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(range(100 * self.epoch, 100 * self.epoch + self.n))


def loader(n: int = 10, batch: int = 3) -> ResumableLoader:
    return resumable_loader(list(range(1000)), EpochStream(n), seed=0, batch_size=batch)


def test_a_loader_continues_after_the_batches_it_had_delivered() -> None:
    first = loader()
    first.sampler.set_epoch(2)
    it = iter(first)
    seen = [next(it).tolist(), next(it).tolist()]
    assert seen == [[200, 201, 202], [203, 204, 205]]
    state = first.state_dict()
    assert state == {"epoch": 2, "batches": 2}

    again = loader()
    again.load_state_dict(state)
    again.sampler.set_epoch(2)  # Lightning sets the epoch again: the skip stays
    assert [b.tolist() for b in again] == [[206, 207, 208], [209]]
    assert again.state_dict() == {"epoch": 2, "batches": 4} and len(again) == 4
    again.sampler.set_epoch(3)
    assert next(iter(again)).tolist() == [300, 301, 302]  # the next epoch is whole


def test_a_complete_epoch_resumes_at_the_next_one() -> None:
    resumed = loader()
    resumed.load_state_dict({"epoch": 1, "batches": 4})
    assert resumed.sampler.epoch == 2
    assert next(iter(resumed)).tolist() == [200, 201, 202]


def test_iterating_the_loader_leaves_the_global_generator_alone() -> None:
    torch.manual_seed(0)
    before = torch.get_rng_state()
    list(loader())
    assert torch.equal(before, torch.get_rng_state())  # augmentation's stream is untouched


def test_random_states_round_trip_through_a_weights_only_checkpoint(tmp_path) -> None:
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    path = tmp_path / "state.ckpt"
    AtomicCheckpointIO().save_checkpoint({"random": random_states()}, path)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_random_states(torch.load(path, weights_only=True)["random"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])
    assert expected[2] == got[2]


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch) -> None:
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(1)}, path)

    def broken(obj, f) -> None:
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(2)}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_the_bar_counts_epochs_from_one() -> None:
    bar = EpochBar()
    bar._trainer = SimpleNamespace(max_epochs=3)
    assert bar._get_train_description(2).strip() == "Epoch 3/3"


def test_progress_lines_say_epoch_step_loss_elapsed_and_eta(monkeypatch) -> None:
    lines: list[str] = []
    cb = ProgressLines(every_n_steps=2, write=lines.append)
    trainer = SimpleNamespace(
        global_step=4, max_epochs=3, num_training_batches=4, current_epoch=0, is_global_zero=True
    )
    module = SimpleNamespace(step_index=1)
    times = iter([100.0, 110.0, 120.0])
    monkeypatch.setattr("geociss.engine.progress.time.monotonic", lambda: next(times))
    cb.on_train_start(trainer, module)  # resumed after 4 steps, at t = 100 s
    trainer.current_epoch = 1
    for step, loss in ((5, 1.0), (6, 2.0), (7, 3.0), (8, 4.0)):
        trainer.global_step = step
        cb.on_train_batch_end(trainer, module, {"loss": torch.tensor(loss)}, None, step - 5)
    cb.on_train_epoch_end(trainer, module)
    assert lines == [
        "step 1: epoch 2/3, batch 2/4, training step 6/12, loss 1.5000, elapsed 0:00:10, "
        "ETA 0:00:30",
        "step 1: epoch 2/3, batch 4/4, training step 8/12, loss 3.5000, elapsed 0:00:20, "
        "ETA 0:00:20",
    ]
    assert clock(3725.4) == "1:02:05"
