"""The method plug: one interface that every class-incremental method implements.

A method says what it needs from the student and the frozen teacher (named intermediate
tensors), computes its per-step losses as a dict of named terms (each is logged by the engine
and their sum is optimised), initialises the classifier of new classes, may run a pre-pass of
the teacher over the step's data (PLOP's pseudo-label thresholds), and sets the step's freezing
and BatchNorm policy. The engine, the CLI and the other methods never branch on a method's name:
adding a method is one module with ``@METHODS.register("name")``, its config, its tests and a
README row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from geociss.config.validation import validate_model
from geociss.data.classes import IGNORE_INDEX
from geociss.registry import Registry

if TYPE_CHECKING:
    from geociss.models.segmenter import ModelOutput, SegmentationModel


@dataclass(frozen=True)
class StepContext:
    """Where a step stands in its scenario.

    Attributes:
        step: index of the step (0 = base step).
        classes_per_step: channels added at each step of the scenario, up to and including
            this one (step 0 includes the background channel).
        ignore_index: label of ignored pixels.
    """

    step: int
    classes_per_step: tuple[int, ...]
    ignore_index: int = IGNORE_INDEX

    @property
    def num_channels(self) -> int:
        """Channels of the model at this step (|Y^t|)."""
        return sum(self.classes_per_step[: self.step + 1])

    @property
    def old_channels(self) -> int:
        """Channels the teacher has (C_old = |Y^(t-1)|); 0 at step 0."""
        return sum(self.classes_per_step[: self.step])

    @property
    def new_channels(self) -> range:
        """Channels added at this step."""
        return range(self.old_channels, self.num_channels)

    @property
    def incremental(self) -> bool:
        """True at steps ≥ 1 (a teacher exists)."""
        return self.step > 0


class MethodParams(BaseModel):
    """Hyper-parameters common to every method (subclasses add their own)."""

    model_config = ConfigDict(extra="forbid")

    ce_reduction: str = Field(
        default="all",
        pattern="^(valid|all)$",
        description="Segmentation-loss reduction: 'valid' (mean over labelled pixels) or 'all' "
        "(mean over all pixels, ignored ones in the denominator, as MiB/PLOP/UCD).",
    )


class IncrementalMethod(nn.Module):
    """Base class of class-incremental methods.

    Subclasses set :attr:`Params` (a :class:`MethodParams` subclass) and implement
    :meth:`losses`. A method is an ``nn.Module`` so that loss modules with buffers, and any
    trainable part that is not in the segmentation model, move with the engine's device.

    Class attributes:
        Params: pydantic model of the method's hyper-parameters.
        single_step: train all classes of the scenario at once (joint training, the ceiling).
        keep_old_labels: old classes keep their labels in a step's data (ILT's original protocol).
        needs_prepass: :meth:`prepass` must see the step's data before training.
    """

    Params: ClassVar[type[MethodParams]] = MethodParams
    single_step: ClassVar[bool] = False
    keep_old_labels: ClassVar[bool] = False
    needs_prepass: ClassVar[bool] = False

    def __init__(self, params: MethodParams, context: StepContext) -> None:
        super().__init__()
        self.params = params
        self.context = context

    @classmethod
    def from_config(
        cls, params: Mapping[str, Any] | None, context: StepContext
    ) -> IncrementalMethod:
        """Validate ``params`` (the YAML ``method.params`` mapping) and build the method."""
        name = getattr(cls, "registry_name", cls.__name__.lower())
        return cls(
            validate_model(cls.Params, dict(params or {}), f"method {name}: params"), context
        )

    # ---------------------------------------------------------------- what the method needs

    def student_features(self) -> set[str]:
        """Named intermediate tensors the student's forward must return besides ``logits``."""
        return set()

    def teacher_features(self) -> set[str]:
        """Named tensors the teacher's forward must return besides ``logits``."""
        return set()

    def uses_teacher(self) -> bool:
        """Whether the frozen teacher runs on each batch (default: at every step ≥ 1)."""
        return self.context.incremental

    def step0_key(self) -> dict[str, Any]:
        """What determines this method's step 0; runs with equal keys share one step-0 model.

        Default: plain cross-entropy with the configured reduction. A method that trains step 0
        differently (another loss, another head) must return a different key.
        """
        return {"loss": "ce", "ce_reduction": self.params.ce_reduction}

    def extra_tensors(self) -> dict[str, Tensor]:
        """Tensors the method keeps in the step bundle besides the model (default: none)."""
        return {}

    def restore(self, extra: Mapping[str, Tensor]) -> None:
        """Receive the previous step's :meth:`extra_tensors` (called before classifier init)."""

    # ---------------------------------------------------------------- model preparation

    def init_new_classifier(
        self, model: SegmentationModel, teacher: SegmentationModel | None
    ) -> None:
        """Initialise the classifier of the classes added at this step (default: as built)."""

    def configure_model(self, model: SegmentationModel) -> None:
        """Apply the step's freezing / BatchNorm policy to the student (default: train all)."""

    def train_mode(self, model: SegmentationModel) -> None:
        """Put the student in training mode, honouring frozen BatchNorm (called every epoch)."""
        model.train()

    def param_groups(
        self, model: SegmentationModel, lr: float, head_lr_mult: float, weight_decay: float
    ) -> list[dict[str, Any]]:
        """Optimiser parameter groups (default: encoder at ``lr``, head at ``lr × head_lr_mult``).

        Frozen parameters are left out. Trainable parameters owned by the method itself (not
        by the model) join the head group's learning rate.
        """
        groups: list[dict[str, Any]] = []
        parts = (
            ("backbone", model.backbone_parameters(), lr),
            ("head", model.head_parameters(), lr * head_lr_mult),
            ("method", self.parameters(), lr * head_lr_mult),
        )
        for name, params, group_lr in parts:
            trainable = [p for p in params if p.requires_grad]
            if trainable:
                groups.append({"params": trainable, "lr": group_lr, "name": name})
        if not groups:
            raise RuntimeError("every parameter is frozen: nothing to train")
        return groups

    def prepass(self, teacher: SegmentationModel, batches: Iterable[Mapping[str, Tensor]]) -> None:
        """Look at the step's data with the teacher before training (``needs_prepass``).

        Args:
            teacher: the frozen previous-step model (eval mode), on the training device.
            batches: the step's training batches without augmentation: ``image`` normalised
                (B, C, H, W) on the teacher's device, ``mask`` (B, H, W) in the step's channels.
        """

    # ---------------------------------------------------------------- training and inference

    def losses(
        self,
        batch: Mapping[str, Tensor],
        out: ModelOutput,
        old: ModelOutput | None,
    ) -> dict[str, Tensor]:
        """Named, already-weighted loss terms for one batch; the engine sums and logs them.

        Args:
            batch: ``image`` (B, C, H, W) normalised and augmented, ``mask`` (B, H, W) in the
                step's channels (255 ignored).
            out: the student's output (``logits`` plus :meth:`student_features`).
            old: the teacher's output, or None when :meth:`uses_teacher` is False.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement losses()")

    def predict(self, logits: Tensor) -> Tensor:
        """Channel index per pixel from the model's logits (default: argmax)."""
        return logits.argmax(1)

    def probabilities(self, logits: Tensor) -> Tensor:
        """Per-channel scores in [0, 1] for blending and confidence (default: softmax)."""
        return torch.softmax(logits.float(), 1)


METHODS: Registry[type[IncrementalMethod]] = Registry("method")
"""Registry of methods: ``METHODS.get("mib")`` returns the class."""


def register_method(name: str) -> Any:
    """Class decorator: register a method under ``name`` and remember the name on the class."""

    def decorator(cls: type[IncrementalMethod]) -> type[IncrementalMethod]:
        cls.registry_name = name  # type: ignore[attr-defined]
        return METHODS.register(name)(cls)

    return decorator
