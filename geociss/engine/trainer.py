"""Build the Lightning ``Trainer`` of a step and run the method's pre-pass.

Hardware settings come from the config (``accelerator``, ``devices``, ``num_nodes``,
``precision``); DDP is Lightning's. Checkpoints (``last.ckpt``, written at every epoch end and
every ``train.checkpoint_every_n_steps`` steps) exist to resume an interrupted step only, within
the epoch where it stopped (:mod:`geociss.engine.resume`); the product of a step is its bundle.
Progress is a bar on a terminal and plain lines in a log file (:mod:`geociss.engine.progress`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from geociss.config.experiment import DataConfig, TrainConfig
from geociss.data.classes import ClassSchema
from geociss.data.dataset import Collate, WindowDataset
from geociss.data.normalise import input_columns, normalise
from geociss.data.records import Region, TileRecord
from geociss.data.samplers import GridWindowSampler
from geociss.data.scaling import Clip


def resolve_precision(train: TrainConfig) -> str:
    """``auto`` → bf16 mixed precision on a CUDA device, 32-bit otherwise."""
    if train.precision != "auto":
        return train.precision if train.precision != "32" else "32-true"
    gpu = train.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if gpu else "32-true"


def quiet_lightning() -> None:
    """Silence Lightning's start-up banners and warnings that do not apply to geociss.

    The teacher is deliberately in eval mode during training, and small CPU runs have fewer
    batches than a logging interval; the remaining messages (tips, device banners) are
    replaced by geociss's own one-line summary.
    """
    import logging
    import warnings

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    for pattern in (
        r".*module\(s\) in eval mode at the start of training.*",
        r".*smaller than the logging interval.*",
        r".*LeafSpec.*",
        r".*exists and is not empty.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)


def _progress_callbacks(train: TrainConfig, progress: bool) -> tuple[list[Any], bool]:
    """A bar on a terminal, lines otherwise (:mod:`geociss.engine.progress`); nothing if off."""
    from geociss.engine.progress import EpochBar, ProgressLines

    if not progress:
        return [], False
    if sys.stdout.isatty():
        return [EpochBar()], True
    return [ProgressLines(train.progress_every_n_steps)], False


def build_trainer(
    train: TrainConfig, step_dir: Path, epochs: int, progress: bool = True, batches: int = 10
) -> L.Trainer:
    """A Lightning trainer writing logs and ``checkpoints/last.ckpt`` under ``step_dir``.

    The checkpoint is written atomically at every epoch end and every
    ``train.checkpoint_every_n_steps`` steps (:mod:`geociss.engine.resume`). ``progress``: a
    progress bar when standard output is a terminal, progress lines when it is not.
    ``batches`` (per epoch) caps the logging interval so that short CPU runs log too.
    """
    quiet_lightning()
    from lightning.pytorch.loggers import CSVLogger

    from geociss.engine.resume import LAST, AtomicCheckpointIO, StepCheckpoint

    loggers: list[Any] = [CSVLogger(step_dir, name="logs", version="")]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(step_dir, name="tensorboard", version=""))
    except (ImportError, ModuleNotFoundError):  # tensorboard is optional at run time
        pass
    checkpoint = StepCheckpoint(
        step_dir / "checkpoints" / LAST,
        train.checkpoint_every_n_steps,
        note=_stdout_line,
    )
    shown, bar = _progress_callbacks(train, progress)
    devices: Any = train.devices
    strategy: Any = "auto"
    if (devices != "auto" and int(devices) > 1) or train.num_nodes > 1:
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy(find_unused_parameters=True)
    return L.Trainer(
        max_epochs=epochs,
        accelerator=train.accelerator,
        devices=devices,
        num_nodes=train.num_nodes,
        strategy=strategy,
        precision=resolve_precision(train),  # type: ignore[arg-type]
        gradient_clip_val=train.gradient_clip,
        gradient_clip_algorithm="norm",
        default_root_dir=step_dir,
        logger=loggers,
        callbacks=[*shown, checkpoint],
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,
        enable_model_summary=False,
        enable_progress_bar=bar,
        log_every_n_steps=max(1, min(10, batches)),
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )


def _stdout_line(text: str) -> None:
    print(text, file=sys.stdout, flush=True)


def fit_step(
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    train: TrainConfig,
    step_dir: Path,
    epochs: int,
    digest: str,
    progress: bool = True,
    also: Sequence[str] = (),
) -> L.Trainer:
    """Fit one step, resuming from ``step_dir/checkpoints/last.ckpt`` when its hash matches.

    ``also``: other markers that resume (an earlier version's hash of the same step).
    Checkpoints of another configuration (``checkpoints/config_hash`` differs) are discarded,
    and so are temporary files of a checkpoint write that a kill interrupted. The checkpoint is
    read with ``weights_only=True`` (tensors and plain values only, no pickled code).
    Returns the trainer (``trainer.is_global_zero`` tells which process writes outputs).
    """
    import shutil

    from geociss.engine.resume import LAST

    cfg = getattr(datamodule, "cfg", None)
    batches = max(1, cfg.samples_per_epoch // max(1, cfg.batch_size)) if cfg is not None else 10
    trainer = build_trainer(train, step_dir, epochs, progress, batches)
    ckpt_dir = step_dir / "checkpoints"
    ckpt, marker = ckpt_dir / LAST, ckpt_dir / "config_hash"
    resume = ckpt.is_file() and marker.is_file() and marker.read_text().strip() in {digest, *also}
    if trainer.is_global_zero:
        if not resume and ckpt_dir.exists():
            shutil.rmtree(ckpt_dir)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        for stale in ckpt_dir.glob(f".{LAST}.*.part"):
            stale.unlink(missing_ok=True)
        marker.write_text(digest)
    trainer.fit(
        module,
        datamodule=datamodule,
        ckpt_path=str(ckpt) if resume else None,
        weights_only=True,
    )
    return trainer


def prepass_batches(
    tiles: list[TileRecord],
    schema: ClassSchema,
    regions: list[Region],
    lut: np.ndarray,
    cfg: DataConfig,
    mean: list[float],
    std: list[float],
    device: torch.device,
    clip: Clip | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """The step's regions as unaugmented, normalised batches (for a method's pre-pass).

    The workers hand over raw band values and uint8 masks; the conversion to the normalised
    float32 image and the int64 mask runs here, on ``device``.
    """
    sampler = GridWindowSampler(regions, cfg.patch_size, cfg.patch_size)
    loader = DataLoader(
        WindowDataset(tiles, schema, bands=cfg.bands),
        batch_size=cfg.batch_size,
        sampler=sampler,  # type: ignore[arg-type]
        collate_fn=Collate(lut),
        num_workers=cfg.num_workers,
    )
    m, inv, low, high = input_columns(mean, std, clip, device)
    for batch in loader:
        image = batch["image"].to(device)
        yield {
            "image": normalise(
                image, m, inv, inplace=True, low=low, high=high, nodata=batch["nodata"]
            ),
            "mask": batch["mask"].to(device).long(),
        }
