"""ILT: Incremental Learning Techniques (Michieli & Zanuttigh, ICCVW 2019).

One registered method, ``ilt``, with a ``variant`` parameter:

* ``mib`` (default): the re-implementation used in every later comparison table (MiB, PLOP,
  UCD, IDEC): MiB protocol (old classes relabelled background), ``CE + 100·KD + 100·MSE`` where KD
  truncates the student's logits to the old channels before the softmax and averages over the
  C_old classes and all pixels, and MSE compares the encoder outputs; random new classifier.
* the original paper's variants, on ILT's protocol (old classes keep their labels):
  ``output`` (CE + 1·L'_D), ``feature`` (CE + 50·L''_D, the LD2 script's weight), ``ef`` (encoder
  frozen, CE only), ``ef+output`` (encoder frozen, CE + 1·L'_D), ``output+feature`` (paper
  Table 1: CE + 1·L'_D + 50·L''_D).

Adapting "C channels from the start": the original network has all C outputs at every step and
distils the old softmax over all C channels, whose future channels are untrained. Here the
teacher has only its C_old channels, so L'_D uses the teacher's softmax over those (the seen
classes, as in the paper's eq. 3) against the student's log-softmax over ALL its channels, new
ones included, summed over the C_old classes and averaged over the pixels that the ground truth
selects (``distill_pixels``). The new classifier keeps its default random initialisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator
from torch import Tensor

from geociss.losses.ce import Reduction, cross_entropy
from geociss.losses.distill import (
    feature_distillation,
    knowledge_distillation,
    output_distillation,
)
from geociss.methods.base import IncrementalMethod, MethodParams, StepContext, register_method

if TYPE_CHECKING:
    from geociss.models.segmenter import ModelOutput, SegmentationModel

Variant = Literal["mib", "output", "feature", "ef", "ef+output", "output+feature"]

_KD_WEIGHT: dict[str, float] = {
    "mib": 100.0,
    "output": 1.0,
    "ef+output": 1.0,
    "output+feature": 1.0,
}
_FEATURE_WEIGHT: dict[str, float] = {"mib": 100.0, "feature": 50.0, "output+feature": 50.0}


class ILTParams(MethodParams):
    """Hyper-parameters of ILT; options left unset (or null) take the chosen variant's default.

    After validation every option that applies to the variant holds its resolved value (only
    ``distill_pixels`` stays None, for variants without L'_D); weights of terms the variant
    lacks are 0.
    """

    variant: Variant = Field(
        default="mib",
        description="'mib' (the MiB/PLOP/UCD re-implementation) or an original variant: "
        "'output', 'feature', 'ef', 'ef+output', 'output+feature'.",
    )
    kd_weight: float | None = Field(
        default=None,
        ge=0.0,
        description="Weight of the output distillation; default 100 for 'mib' (KD with the "
        "1/C_old factor), 1 for the original L'_D variants. Only for variants with one.",
    )
    feature_weight: float | None = Field(
        default=None,
        ge=0.0,
        description="Weight of the encoder-output MSE; default 100 for 'mib', 50 for 'feature' "
        "and 'output+feature' (LD2 script). Only for variants with one.",
    )
    alpha: float = Field(
        default=1.0, gt=0.0, description="Scale of the teacher's logits before its softmax."
    )
    distill_pixels: Literal["old_bgr", "old", "all"] | None = Field(
        default=None,
        description="Pixels of the original L'_D, chosen by the labels: 'old_bgr' (default: "
        "background and old classes), 'old' (old classes only; needs keep_old_labels), 'all' "
        "(every labelled pixel). Only for the original variants with L'_D.",
    )
    ce_reduction: Literal["valid", "all"] | None = Field(  # type: ignore[assignment]
        default=None,
        description="Cross-entropy reduction; default 'all' for 'mib' (MiB trainer), 'valid' "
        "for the original variants (mean over labelled pixels).",
    )
    keep_old_labels: bool | None = Field(
        default=None,
        description="Old classes keep their labels in a step's data (ILT's protocol); default "
        "false for 'mib', true for the original variants.",
    )

    @model_validator(mode="after")
    def _resolve_variant_defaults(self) -> ILTParams:
        variant, original = self.variant, self.variant != "mib"
        output_ld = original and variant in _KD_WEIGHT
        for name, applies in (
            ("kd_weight", variant in _KD_WEIGHT),
            ("feature_weight", variant in _FEATURE_WEIGHT),
            ("distill_pixels", output_ld),
        ):
            if getattr(self, name) is not None and not applies:
                raise ValueError(f"{name} does not apply to variant {variant!r}")
        if self.kd_weight is None:
            self.kd_weight = _KD_WEIGHT.get(variant, 0.0)
        if self.feature_weight is None:
            self.feature_weight = _FEATURE_WEIGHT.get(variant, 0.0)
        if self.distill_pixels is None and output_ld:
            self.distill_pixels = "old_bgr"
        if self.ce_reduction is None:
            self.ce_reduction = "valid" if original else "all"
        if self.keep_old_labels is None:
            self.keep_old_labels = original
        if self.distill_pixels == "old" and not self.keep_old_labels:
            raise ValueError(
                "distill_pixels 'old' selects no pixel when old classes are relabelled "
                "background (keep_old_labels false)"
            )
        return self


@register_method("ilt")
class ILT(IncrementalMethod):
    """ILT's distillation variants (see the module docstring)."""

    Params = ILTParams
    params: ILTParams

    def __init__(self, params: MethodParams, context: StepContext) -> None:
        super().__init__(params, context)
        p = self.params
        self.kd_weight = p.kd_weight or 0.0
        self.feature_weight = p.feature_weight or 0.0
        self.reduction: Reduction = p.ce_reduction or "valid"
        self.encoder_frozen = p.variant.startswith("ef")
        # Per instance, from the params (the engine reads ``method.keep_old_labels``); the class
        # attribute keeps the base default False.
        self.keep_old_labels = bool(p.keep_old_labels)  # type: ignore[misc]

    def _feature_term(self) -> bool:
        return self.context.incremental and self.feature_weight > 0

    def student_features(self) -> set[str]:
        """The encoder output when the feature distillation is on."""
        return {"encoder"} if self._feature_term() else set()

    def teacher_features(self) -> set[str]:
        """The encoder output when the feature distillation is on."""
        return self.student_features()

    def uses_teacher(self) -> bool:
        """The teacher runs at steps ≥ 1 when a distillation term has a non-zero weight."""
        return self.context.incremental and (self.kd_weight > 0 or self.feature_weight > 0)

    def configure_model(self, model: SegmentationModel) -> None:
        """EF variants freeze the encoder at steps ≥ 1 (only the decoder trains)."""
        if self.encoder_frozen and self.context.incremental:
            model.freeze("encoder")

    def train_mode(self, model: SegmentationModel) -> None:
        """Training mode; a frozen encoder stays in eval mode, a fixed feature extractor."""
        model.train()
        if self.encoder_frozen and self.context.incremental:
            model.encoder.eval()

    def _distill_pixels(self, mask: Tensor) -> Tensor:
        old = self.context.old_channels
        valid = mask != self.context.ignore_index
        if self.params.distill_pixels == "old_bgr":
            return valid & (mask < old)
        if self.params.distill_pixels == "old":
            return valid & (mask >= 1) & (mask < old)
        return valid

    def losses(
        self, batch: Mapping[str, Tensor], out: ModelOutput, old: ModelOutput | None
    ) -> dict[str, Tensor]:
        """``{"ce"}``, plus ``"kd"`` and/or ``"feature"`` (already weighted) at steps ≥ 1."""
        ctx, p = self.context, self.params
        mask = batch["mask"]
        terms = {"ce": cross_entropy(out.logits, mask, self.reduction, ctx.ignore_index)}
        if not self.uses_teacher():
            return terms
        if old is None:
            raise RuntimeError("ILT needs the teacher's output at steps ≥ 1")
        if self.kd_weight > 0:
            if p.variant == "mib":
                kd = knowledge_distillation(out.logits, old.logits, p.alpha)
            else:
                pixels = self._distill_pixels(mask)
                kd = output_distillation(out.logits, old.logits, pixels, p.alpha)
            terms["kd"] = self.kd_weight * kd
        if self.feature_weight > 0:
            if out.encoder is None or old.encoder is None:
                raise RuntimeError("ILT's feature distillation needs the 'encoder' feature")
            terms["feature"] = self.feature_weight * feature_distillation(out.encoder, old.encoder)
        return terms
