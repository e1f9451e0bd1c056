"""One class-incremental step as a LightningModule.

The module owns the student, the frozen teacher (the previous step's model: eval mode, no
gradient, forward under ``no_grad`` on the same augmented batch), the method (which computes the
losses) and the device-side batch pipeline: normalisation → augmentation → ``channels_last``.
Batches arrive as the loader's workers made them (raw band values in the raster's dtype, uint8
masks, :mod:`geociss.data.dataset`) and are converted here, on the training device.
It never calls ``torch.distributed``: multi-GPU and multi-node training run through Lightning's
DDP (``devices``, ``num_nodes``), and the window sampler splits the stream by rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor

from geociss.config.experiment import TrainConfig
from geociss.data.normalise import band_column, normalise
from geociss.data.scaling import Clip
from geociss.engine.augment import AugmentConfig, BatchAugment
from geociss.methods.base import IncrementalMethod
from geociss.models.segmenter import SegmentationModel


def freeze_teacher(teacher: SegmentationModel) -> SegmentationModel:
    """Freeze the teacher: eval mode (running BatchNorm statistics, no dropout), no gradients."""
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


NONFINITE_CHECK_EVERY = 8
"""Training steps between two checks that the loss is finite."""


class IncrementalStep(L.LightningModule):
    """Train one step: student + frozen teacher + method losses.

    Args:
        model: the student (classifier already grown for this step and initialised).
        teacher: the previous step's model, or None at step 0.
        method: the method of this step.
        train: optimisation settings.
        mean: per-band mean of the raw image values (normalisation).
        std: per-band standard deviation.
        step: index of the step (for logs).
        clip: per-band ``(low, high)`` bounds clipped before normalising, or None.
    """

    def __init__(
        self,
        model: SegmentationModel,
        teacher: SegmentationModel | None,
        method: IncrementalMethod,
        train: TrainConfig,
        mean: Sequence[float],
        std: Sequence[float],
        step: int = 0,
        clip: Clip | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.teacher = freeze_teacher(teacher) if teacher is not None else None
        self.method = method
        self.train_cfg = train
        self.step_index = step
        self.augment = BatchAugment(AugmentConfig(**_augment_kwargs(train.augment)))
        self.register_buffer(
            "mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))
        low, high = (None, None) if clip is None else (band_column(clip[0]), band_column(clip[1]))
        self.register_buffer("clip_low", low)
        self.register_buffer("clip_high", high)
        if train.channels_last:
            self.model.to(memory_format=torch.channels_last)
            if self.teacher is not None:
                self.teacher.to(memory_format=torch.channels_last)

    # ---------------------------------------------------------------- batch pipeline

    def normalise(self, image: Tensor, nodata: Tensor | None = None) -> Tensor:
        """Raw band values → normalised float32 input; invalid pixels (NaN) → 0, the band mean.

        :func:`geociss.data.normalise.normalise`, the rule of evaluation and ``predict`` too.
        The loader's batches hold the raster's own dtype and their invalid pixels in
        ``nodata`` (:mod:`geociss.data.dataset`): the conversion runs here, on the device.
        """
        x = normalise(
            image,
            self.mean,
            self.std.reciprocal(),
            low=self.clip_low,
            high=self.clip_high,
            nodata=nodata,
        )
        return (
            x.contiguous(memory_format=torch.channels_last) if self.train_cfg.channels_last else x
        )

    def train(self, mode: bool = True) -> IncrementalStep:
        """Set the mode of the student; the teacher always stays in eval mode."""
        super().train(mode)
        if mode:
            self.method.train_mode(self.model)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Augment on the device, run student and teacher, sum and log the method's losses."""
        x = self.normalise(batch["image"], batch.get("nodata"))
        x, y = self.augment(x, batch["mask"])  # uint8 mask in, int64 out
        if self.train_cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.model(x, features=self.method.student_features())
        old = None
        if self.teacher is not None and self.method.uses_teacher():
            with torch.no_grad():
                old = self.teacher(x, features=self.method.teacher_features())
        terms = self.method.losses({"image": x, "mask": y}, out, old)
        if not terms:
            raise RuntimeError(f"method {type(self.method).__name__} returned no loss term")
        loss = torch.stack([v.float() for v in terms.values()]).sum()
        # checked every few steps, not every step: the check waits for the device, and a model
        # that diverged stays non-finite, so the run still stops within a few steps
        if self.global_step % NONFINITE_CHECK_EVERY == 0 and not torch.isfinite(loss):
            from geociss.errors import DivergedError

            bad = ", ".join(k for k, v in terms.items() if not torch.isfinite(v)) or "the sum"
            raise DivergedError(
                f"step {self.step_index}: the loss became non-finite ({bad}) by training step "
                f"{self.global_step}; lower train.lr_incremental or the method's loss weights, "
                "or set train.freeze_norm_incremental: true"
            )
        bs = x.shape[0]
        for name, value in terms.items():
            self.log(
                f"train/{name}", value.detach().float(), on_step=True, on_epoch=True, batch_size=bs
            )
        self.log(
            "train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True, batch_size=bs
        )
        return loss

    # ---------------------------------------------------------------- optimisation

    def configure_optimizers(self) -> Any:
        """SGD (Nesterov) or AdamW (``train.optimizer[_incremental]``); parameter groups; poly."""
        cfg = self.train_cfg
        lr = cfg.lr_for(self.step_index)
        groups = self.method.param_groups(self.model, lr, cfg.head_lr_mult, cfg.weight_decay)
        optimizer: torch.optim.Optimizer
        if cfg.optimizer_for(self.step_index) == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=cfg.weight_decay)
        else:
            optimizer = torch.optim.SGD(
                groups,
                lr=lr,
                momentum=cfg.momentum,
                nesterov=cfg.momentum > 0,
                weight_decay=cfg.weight_decay,
            )
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        power = cfg.poly_power

        def poly(it: int) -> float:
            return max(1.0 - min(it, total) / total, 0.0) ** power

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def _augment_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    allowed = set(AugmentConfig.__dataclass_fields__)
    unknown = set(options) - allowed
    if unknown:
        from geociss.errors import ConfigError

        raise ConfigError(
            f"train.augment: unknown option(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    out = dict(options)
    if "scale" in out:
        out["scale"] = tuple(out["scale"])
    return out
