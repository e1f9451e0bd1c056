"""Run a step's student and teacher over held-out tiles and count where they agree.

The counts feed :class:`geociss.evaluation.retention.Retention` (the definitions, and what the
measure can and cannot tell, are in that module). Pixels are scored once each, with the owned
sliding windows of full-tile evaluation (:mod:`geociss.engine.evaluate`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from geociss.data.classes import IGNORE_INDEX, ClassSchema
from geociss.data.records import TileRecord
from geociss.data.scaling import Clip
from geociss.engine.evaluate import owned_batches
from geociss.evaluation.retention import DEFAULT_THRESHOLD, Retention

if TYPE_CHECKING:
    from geociss.config.experiment import DataConfig
    from geociss.data.scenarios import Scenario
    from geociss.engine.bundle import StepBundle
    from geociss.engine.data import ExperimentData

NEW = 1
"""Value of the scoring look-up table for pixels labelled with a new class (left out)."""


def agreement_over_tiles(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    predict_student: Callable[[Tensor], Tensor],
    predict_teacher: Callable[[Tensor], Tensor],
    tiles: Sequence[TileRecord],
    schema: ClassSchema,
    lut: np.ndarray,
    shape: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    size: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    bands: Sequence[int] | None = None,
    clip: Clip | None = None,
) -> np.ndarray:
    """Pixel counts ``A[teacher channel, student channel]`` over the tiles.

    Args:
        student: the extended model.
        teacher: the model it was extended from (its channels are the first of the student's).
        predict_student: student logits → channel per pixel.
        predict_teacher: teacher logits → channel per pixel.
        tiles: the tiles (with labels).
        schema: class schema of the labels.
        lut: class id → 0 (scored), :data:`NEW` (labelled with a new class: left out) or 255
            (ignored: left out).
        shape: ``(teacher channels, student channels)``.
        mean: per-band normalisation mean.
        std: per-band normalisation std.
        size: window size.
        overlap: overlap of neighbouring windows.
        batch_size: windows per forward pass.
        device: where both models run.
        bands: 1-based image bands to read.
        clip: per-band ``(low, high)`` clip bounds before normalising, or None.
    """
    device = torch.device(device)
    n_t, n_s = shape
    counts = torch.zeros(n_t * n_s, dtype=torch.int64, device=device)
    modes = (student.training, teacher.training)
    student.eval()
    teacher.eval()
    batches = owned_batches(
        tiles, schema, lut, mean, std, size=size, overlap=overlap, batch_size=batch_size,
        device=device, bands=bands, clip=clip,
    )  # fmt: skip
    try:
        with torch.inference_mode():
            for _, x, target in batches:
                t = predict_teacher(teacher(x).logits.float())
                st = predict_student(student(x).logits.float())
                keep = target == 0
                idx = t[keep].long() * n_s + st[keep].long()
                counts += torch.bincount(idx, minlength=n_t * n_s)
    finally:
        student.train(modes[0])
        teacher.train(modes[1])
    return counts.view(n_t, n_s).cpu().numpy()


def scoring_lut(new_ids: Sequence[int], ignored_ids: Sequence[int] = ()) -> np.ndarray:
    """Look-up table for :func:`agreement_over_tiles`: every class scored except those given.

    Args:
        new_ids: label values of the new classes (left out: :data:`NEW`).
        ignored_ids: label values to ignore (255) besides 255 itself.
    """
    lut = np.zeros(256, dtype=np.uint8)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    for v in ignored_ids:
        lut[int(v)] = IGNORE_INDEX
    for v in new_ids:
        lut[int(v)] = NEW
    return lut


def measure_retention(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    predict_student: Callable[[Tensor], Tensor],
    predict_teacher: Callable[[Tensor], Tensor],
    old_names: Sequence[str],
    num_channels: int,
    tiles: Sequence[TileRecord],
    schema: ClassSchema,
    lut: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    scope: str = "",
    background: str | None = None,
    **kwargs: object,
) -> Retention:
    """:class:`Retention` of the old channels ``old_names`` of ``student`` against ``teacher``.

    ``background``: the real class that plays background (None: implicit background channel).
    ``kwargs``: ``size``, ``overlap``, ``batch_size``, ``device``, ``bands``, ``clip`` of
    :func:`agreement_over_tiles`. Both models are moved to the device and back to the CPU.
    """
    device = kwargs.get("device", "cpu")
    student.to(device)  # type: ignore[arg-type]
    teacher.to(device)  # type: ignore[arg-type]
    try:
        a = agreement_over_tiles(
            student,
            teacher,
            predict_student,
            predict_teacher,
            tiles,
            schema,
            lut,
            (len(old_names), num_channels),
            mean,
            std,
            **kwargs,  # type: ignore[arg-type]
        )
    finally:
        student.to("cpu")
        teacher.to("cpu")
    return Retention.from_agreement(a, old_names, threshold, scope, background)


def step_lut(eval_lut: np.ndarray, new_channels: Sequence[int]) -> np.ndarray:
    """Scoring table of a scenario step from its evaluation table (class id → channel).

    Classes evaluated in a new channel are left out (:data:`NEW`), classes the evaluation
    ignores stay ignored, every other class is scored.
    """
    ev = np.asarray(eval_lut)
    lut = np.where(ev == IGNORE_INDEX, IGNORE_INDEX, 0).astype(np.uint8)
    lut[np.isin(ev, list(new_channels))] = NEW
    return lut


def scenario_retention(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    predict_student: Callable[[Tensor], Tensor],
    prev: StepBundle,
    scenario: Scenario,
    step: int,
    data: ExperimentData,
    cfg: DataConfig,
    device: str,
    log: Callable[[str], None],
) -> Retention:
    """Retention of a scenario step on the run's validation tiles, logged as a table.

    Args:
        student: the model after ``step``.
        teacher: the model before it.
        predict_student: the step's method's inference rule.
        prev: the bundle of the previous step (its inference rule predicts for the teacher).
        scenario: the run's (training) scenario.
        step: the incremental step (>= 1).
        data: the run's data (validation tiles, normalisation).
        cfg: the run's data settings (evaluation window, bands).
        device: where both models run.
        log: where the table and any warning go.
    """
    from geociss.engine.assess import predict_rule

    retention = measure_retention(
        student,
        teacher,
        predict_student,
        predict_rule(prev),
        scenario.channel_names[: scenario.seen_channels(step - 1)],
        scenario.seen_channels(step),
        data.val_tiles,
        scenario.schema,
        step_lut(scenario.eval_lut(step), scenario.new_channels(step)),
        data.mean,
        data.std,
        scope=f"validation tiles ({len(data.val_tiles)})",
        background=scenario.schema.background_name,
        clip=data.scaling.clip,
        size=cfg.eval_tile,
        overlap=cfg.eval_overlap,
        batch_size=max(1, cfg.batch_size // 2),
        device=device,
        bands=cfg.bands,
    )
    log(f"step {step}: old classes kept from the previous model's map")
    for line in retention.lines():
        log(f"  {line}")
    for line in retention.warnings():
        log(f"warning: {line}")
    return retention


__all__ = [
    "NEW",
    "agreement_over_tiles",
    "measure_retention",
    "scenario_retention",
    "scoring_lut",
    "step_lut",
]
