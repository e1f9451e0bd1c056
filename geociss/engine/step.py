"""Prepare one class-incremental step: the step engine shared by the runner and ``geociss extend``.

:func:`grow_student` and :func:`prepare_step` are how *every* step is prepared: teacher = the
previous bundle's model, student = its copy with one more classifier, the method initialises the
new classifier, sets the freezing policy and runs its pre-pass; then
:func:`~geociss.engine.trainer.fit_step` fits the :class:`~geociss.engine.task.IncrementalStep`
on its :class:`~geociss.engine.data.StepDataModule`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from geociss.config.experiment import DataConfig, TrainConfig
from geociss.data.classes import ClassSchema
from geociss.data.records import Region, TileRecord
from geociss.data.scaling import Clip
from geociss.engine.bundle import StepBundle
from geociss.methods.base import IncrementalMethod

if TYPE_CHECKING:
    from geociss.engine.data import StepDataModule
    from geociss.engine.task import IncrementalStep
    from geociss.models.segmenter import SegmentationModel


@dataclass(frozen=True, eq=False)
class StepData:
    """What one step trains on.

    Attributes:
        tiles: catalogue tiles (``Window.tile`` indexes them).
        schema: class schema the labels are read with.
        regions: the step's training regions.
        lut: class id → training channel (256 entries).
        cfg: sampling settings (patch size, batch size, windows per epoch, workers, bands, the
            class weights that apply: see :func:`~geociss.engine.data.step_sampling`).
        mean: per-band normalisation mean.
        std: per-band normalisation standard deviation.
        clip: per-band ``(low, high)`` clip bounds before normalising, or None.
    """

    tiles: Sequence[TileRecord]
    schema: ClassSchema
    regions: list[Region]
    lut: np.ndarray
    cfg: DataConfig
    mean: list[float]
    std: list[float]
    clip: Clip | None = None


def training_device(train: TrainConfig) -> torch.device:
    """Where pre-passes and evaluations run: CUDA when visible unless the config says cpu."""
    return torch.device(
        "cuda" if torch.cuda.is_available() and train.accelerator != "cpu" else "cpu"
    )


def grow_student(
    prev: StepBundle, n_new: int, seed: int
) -> tuple[SegmentationModel, SegmentationModel]:
    """Teacher = ``prev``'s model; student = its copy with a classifier for ``n_new`` classes."""
    teacher = prev.build_model()
    student = copy.deepcopy(teacher)
    torch.manual_seed(seed)
    student.add_step(n_new)
    return student, teacher


def prepare_step(
    student: SegmentationModel,
    teacher: SegmentationModel | None,
    method: IncrementalMethod,
    data: StepData,
    train: TrainConfig,
    *,
    step: int,
    restore: Mapping[str, torch.Tensor] | None = None,
) -> tuple[IncrementalStep, StepDataModule]:
    """Prepare the student with ``method``; return the step's LightningModule and DataModule.

    In order: ``restore`` hands the previous bundle's method tensors back to the method, the
    method initialises the new classifier and sets the freezing policy, runs its pre-pass with
    the teacher (when it needs one). Fit the pair with :func:`~geociss.engine.trainer.fit_step`.
    """
    from geociss.engine.data import StepDataModule
    from geociss.engine.task import IncrementalStep
    from geociss.engine.trainer import prepass_batches

    if restore is not None:
        method.restore(restore)
    method.init_new_classifier(student, teacher)
    method.configure_model(student)
    if step > 0 and train.freeze_norm_incremental:
        student.freeze("norm")
    if method.needs_prepass and teacher is not None:
        device = training_device(train)
        batches = prepass_batches(
            list(data.tiles),
            data.schema,
            data.regions,
            data.lut,
            data.cfg,
            data.mean,
            data.std,
            device,
            clip=data.clip,
        )
        method.prepass(teacher.to(device), batches)
        teacher.to("cpu")
    module = IncrementalStep(
        student, teacher, method, train, data.mean, data.std, step, clip=data.clip
    )
    dm = StepDataModule(
        data.tiles,
        data.schema,
        data.regions,
        data.lut,
        data.cfg,
        train.seed + 1000 * step,
    )
    return module, dm


# ---------------------------------------------------------------- the extend workflow
