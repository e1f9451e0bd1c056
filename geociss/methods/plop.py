"""PLOP: Pseudo-label and LOcal POD (Douillard et al., CVPR 2021).

Step 0 trains with plain cross-entropy. Before every step t ≥ 1 the frozen teacher makes one
pass over the step's training data (:meth:`PLOP.prepass`) to set per-class entropy thresholds.
During the step the loss is

``L = mean_i [a_b · CE(z_i, ŷ_i)] + (1/L) Σ_l λ_l · sqrt(|Y^t|/|C^t|) · POD_l``

where ``ŷ`` replaces the background pixels by the teacher's confident predictions (others are
ignored), ``a_b`` is the share of image ``b``'s background pixels that got a pseudo-label, and
the local POD runs over the four encoder stages (before their final activation), the ASPP output
and the logits at feature resolution (new logits summed into the background logit). The new
classifier gets MiB's balanced initialisation; nothing is frozen; there is no distillation of
the output probabilities.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Literal, TypeVar

import torch
from pydantic import Field, PositiveInt
from torch import Tensor

from geociss.losses.ce import cross_entropy
from geociss.losses.pod import local_pod, pod_schedule
from geociss.losses.pseudo import (
    DEFAULT_BINS,
    DEFAULT_FLOOR,
    EntropyHistogram,
    Median,
    entropy_pseudo_labels,
)
from geociss.methods.base import IncrementalMethod, MethodParams, StepContext, register_method
from geociss.methods.init import INIT_DESCRIPTION, InitRule, apply_init

if TYPE_CHECKING:
    from geociss.models.segmenter import ModelOutput, SegmentationModel


class PLOPParams(MethodParams):
    """Hyper-parameters of PLOP (defaults = the authors' ``--method PLOP`` on Pascal VOC)."""

    ce_reduction: Literal["valid", "all"] = Field(
        default="all",
        description="Cross-entropy reduction: 'all' (PLOP's trainer: mean over every pixel, "
        "ignored and rejected pseudo-label pixels in the denominator) or 'valid'.",
    )
    pod_factor: float = Field(
        default=0.01, ge=0.0, description="POD weight of each feature map (stages and ASPP)."
    )
    pod_logits_factor: float = Field(
        default=0.0005, ge=0.0, description="POD weight of the logits at feature resolution."
    )
    pod_logits: bool = Field(
        default=True, description="Distil the logits too (6 layers instead of 5)."
    )
    pod_schedule: bool = Field(
        default=True,
        description="Multiply the POD weights by sqrt(|Y^t| / |C^t|) (seen over new channels).",
    )
    pod_scales: list[PositiveInt] = Field(
        default=[1, 2, 4], min_length=1, description="Grid sizes of the local POD embedding."
    )
    pod_stages: Literal["pre", "post"] = Field(
        default="pre",
        description="Encoder stage outputs to distil: 'pre' (before the final activation, as "
        "PLOP; ResNet encoders only) or 'post' (after it; any encoder).",
    )
    pseudo_median: Median = Field(
        default="repository",
        description="Per-class threshold read from the entropy histograms: 'repository' (exactly "
        "PLOP's code, which produced the published numbers: a running sum of bin INDICES "
        "against half the class's pixel count, interpolated inside the stopping bin; a class "
        "where no bin stops gets -inf (then the floor) with few pixels, +inf or above 0.99 "
        "(every pixel) with many, and NaN (no pixel) when the stop is at an empty bin), 'true' "
        "(geociss variant: lower border of the bin holding the median entropy) or "
        "'geociss-legacy' (geociss's earlier reading: lower border of PLOP's stopping bin, 0.99 "
        "when none).",
    )
    pseudo_threshold: float = Field(
        default=DEFAULT_FLOOR,
        ge=0.0,
        le=1.0,
        description="Lowest per-class entropy threshold (PLOP's 'threshold'; also that of "
        "classes the teacher never predicts on background). A pixel is pseudo-labelled when "
        "its normalised entropy is below its class's threshold.",
    )
    pseudo_bins: int = Field(
        default=DEFAULT_BINS, ge=1, description="Bins of the entropy histograms on [0, 1]."
    )
    adaptive_factor: bool = Field(
        default=True,
        description="Scale each image's cross-entropy by the share of its background pixels "
        "that received a pseudo-label.",
    )
    init_balanced: InitRule = Field(default=True, description=INIT_DESCRIPTION)


@register_method("plop")
class PLOP(IncrementalMethod):
    """Cross-entropy on entropy-filtered pseudo-labels × adaptive factor, plus local POD."""

    Params = PLOPParams
    params: PLOPParams
    needs_prepass = True

    def __init__(self, params: PLOPParams, context: StepContext) -> None:
        super().__init__(params, context)
        self.thresholds: Tensor | None
        self.register_buffer("thresholds", None, persistent=False)

    # ------------------------------------------------------------ what the method needs

    def _pod_features(self) -> set[str]:
        if not self.context.incremental:
            return set()
        names = {"stages_pre" if self.params.pod_stages == "pre" else "stages", "aspp"}
        if self.params.pod_logits:
            names.add("logits_low")
        return names

    def student_features(self) -> set[str]:
        """Stage outputs, ASPP output and low-resolution logits at steps ≥ 1."""
        return self._pod_features()

    def teacher_features(self) -> set[str]:
        """The same tensors as the student's (the teacher's full-res logits give pseudo-labels)."""
        return self._pod_features()

    def init_new_classifier(
        self, model: SegmentationModel, teacher: SegmentationModel | None
    ) -> None:
        """MiB's balanced initialisation of the new classes at steps ≥ 1."""
        if self.context.incremental:
            apply_init(model, self.params.init_balanced)

    # ------------------------------------------------------------ pre-pass

    def prepass(self, teacher: SegmentationModel, batches: Iterable[Mapping[str, Tensor]]) -> None:
        """Per-class entropy thresholds from one teacher pass over the step's data (t ≥ 1)."""
        ctx = self.context
        if not ctx.incremental:
            return
        histogram = EntropyHistogram(ctx.old_channels, ctx.num_channels, self.params.pseudo_bins)
        with torch.no_grad():
            for batch in batches:
                logits = teacher(batch["image"]).logits
                histogram.update(logits, batch["mask"].to(logits.device))
        self.thresholds = histogram.thresholds(
            self.params.pseudo_median, self.params.pseudo_threshold
        )

    # ------------------------------------------------------------ losses

    def losses(
        self, batch: Mapping[str, Tensor], out: ModelOutput, old: ModelOutput | None
    ) -> dict[str, Tensor]:
        """``{"ce"}`` at step 0; ``{"ce", "pod"}`` (already weighted) at steps ≥ 1."""
        ctx = self.context
        mask = batch["mask"]
        reduction = self.params.ce_reduction
        if not ctx.incremental:
            return {"ce": cross_entropy(out.logits, mask, reduction, ctx.ignore_index)}
        if old is None:
            raise RuntimeError("PLOP needs the teacher's output at steps ≥ 1")
        if self.thresholds is None:
            raise RuntimeError("PLOP's pre-pass must run before training a step ≥ 1")
        pseudo = entropy_pseudo_labels(
            mask, old.logits, self.thresholds, ctx.num_channels, ctx.ignore_index
        )
        weight = None
        if self.params.adaptive_factor:
            weight = pseudo.factor[:, None, None].expand(mask.shape)
        terms = {
            "ce": cross_entropy(out.logits, pseudo.target, reduction, ctx.ignore_index, weight)
        }
        pod = self._pod(out, old)
        if pod is not None:
            terms["pod"] = pod
        return terms

    def _pod(self, out: ModelOutput, old: ModelOutput) -> Tensor | None:
        """The weighted local POD term, or None when every POD weight is 0."""
        p = self.params
        student, teacher = self._pod_maps(out, "student"), self._pod_maps(old, "teacher")
        weights = [p.pod_factor] * (len(student) - int(p.pod_logits))
        if p.pod_logits:
            weights.append(p.pod_logits_factor)
        if not any(weights):
            return None
        if p.pod_schedule:
            factor = pod_schedule(self.context.num_channels, len(self.context.new_channels))
            weights = [w * factor for w in weights]
        return local_pod(student, teacher, weights, p.pod_scales)

    def _pod_maps(self, output: ModelOutput, who: str) -> list[Tensor]:
        """Stage outputs, ASPP output and (optionally) low-resolution logits, shallow to deep."""
        pre = self.params.pod_stages == "pre"
        stages = _require(output.stages_pre if pre else output.stages, who, "stage outputs")
        maps = [*stages, _require(output.aspp, who, "aspp")]
        if self.params.pod_logits:
            maps.append(_require(output.logits_low, who, "logits_low"))
        return maps


T = TypeVar("T")


def _require(value: T | None, who: str, name: str) -> T:
    """``value`` if the model returned it; a clear error when a requested tensor is missing."""
    if value is None:
        raise RuntimeError(f"PLOP: the {who}'s output lacks the requested {name}")
    return value


__all__ = ["PLOP", "PLOPParams"]
