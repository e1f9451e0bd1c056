"""MiB: Modeling the Background (Cermelli et al., CVPR 2020).

Step 0 trains with plain cross-entropy. At every step t ≥ 1 the loss is
``L = L_UNCE + λ · L_UNKD``: the unbiased cross-entropy lets the background absorb the old
classes (whose pixels the step's labels call background), and the unbiased distillation lets
the student's background absorb the new classes (which the teacher calls background). The new
classifier starts from the background's (balanced initialisation) and nothing is frozen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from torch import Tensor

from geociss.losses.ce import cross_entropy
from geociss.losses.unbiased import unbiased_cross_entropy, unbiased_kd
from geociss.methods.base import IncrementalMethod, MethodParams, register_method
from geociss.methods.init import INIT_DESCRIPTION, InitRule, apply_init

if TYPE_CHECKING:
    from geociss.models.segmenter import ModelOutput, SegmentationModel


class MiBParams(MethodParams):
    """Hyper-parameters of MiB (defaults = the authors' ``--method MiB``)."""

    ce_reduction: Literal["valid", "all"] = Field(
        default="all",
        description="Reduction of the (unbiased) cross-entropy: 'all' (MiB's trainer: mean over "
        "every pixel, ignored ones in the denominator) or 'valid' (mean over labelled pixels).",
    )
    kd_weight: float = Field(
        default=10.0,
        ge=0.0,
        description="λ of the unbiased distillation. The term already averages over the C_old "
        "teacher channels (background included), so each old class weighs λ/C_old: the same λ "
        "weighs more with few old classes (λ/2 on ISPRS 2-3, λ/16 on Pascal VOC 15-5). 0 "
        "disables the term and the teacher.",
    )
    alpha: float = Field(
        default=1.0,
        gt=0.0,
        description="Scale of the teacher's logits before its softmax in the distillation.",
    )
    init_balanced: InitRule = Field(default=True, description=INIT_DESCRIPTION)


@register_method("mib")
class MiB(IncrementalMethod):
    """Unbiased cross-entropy + λ · unbiased distillation, balanced classifier initialisation."""

    Params = MiBParams
    params: MiBParams

    def uses_teacher(self) -> bool:
        """The teacher runs at steps ≥ 1 unless the distillation weight is 0."""
        return self.context.incremental and self.params.kd_weight > 0

    def init_new_classifier(
        self, model: SegmentationModel, teacher: SegmentationModel | None
    ) -> None:
        """Balanced initialisation of the new classes at steps ≥ 1 (if ``init_balanced``)."""
        if self.context.incremental:
            apply_init(model, self.params.init_balanced)

    def losses(
        self, batch: Mapping[str, Tensor], out: ModelOutput, old: ModelOutput | None
    ) -> dict[str, Tensor]:
        """``{"ce"}`` at step 0; ``{"unce", "unkd"}`` (``unkd`` already × λ) at steps ≥ 1."""
        ctx = self.context
        mask = batch["mask"]
        reduction = self.params.ce_reduction
        if not ctx.incremental:
            return {"ce": cross_entropy(out.logits, mask, reduction, ctx.ignore_index)}
        terms = {
            "unce": unbiased_cross_entropy(
                out.logits, mask, ctx.old_channels, reduction, ctx.ignore_index
            )
        }
        if self.params.kd_weight > 0:
            if old is None:
                raise RuntimeError("MiB needs the teacher's output at steps ≥ 1")
            kd = unbiased_kd(out.logits, old.logits, self.params.alpha)
            terms["unkd"] = self.params.kd_weight * kd
        return terms
