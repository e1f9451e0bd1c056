"""IDEC: DADA + ARCL (Zhao, Yuan, Shi, TPAMI 2023), working as the paper says.

Step 0 trains with plain cross-entropy (the same step-0 model as MiB/PLOP/UCD under the same
reduction). At every step t ≥ 1, with the frozen teacher run on the same batch:

* **Pseudo-labels** (``pseudo_labels``): background pixels (label < C_old) where the teacher is
  confident get its class (possibly background), with per-class thresholds set by a pre-pass
  over the step's data (:class:`~geociss.losses.dada.ConfidenceHistogram`: the median
  confidence of each class, floored at 0.5). The rest of the background stays "unresolved".
* **Segmentation loss** ``seg`` on ground truth ∪ pseudo-labels. ``seg_loss="unce"`` (default):
  cross-entropy on new-class and pseudo-labelled pixels, and MiB's unbiased term
  ``−log Σ_{c<C_old} p_c`` on unresolved background pixels: they are certainly not a new class,
  but may be any old class or background, so they neither push old classes into the background
  (plain CE's forgetting) nor are thrown away (PLOP ignores them). Without pseudo-labels this is
  exactly MiB's unbiased cross-entropy. ``seg_loss="ce"``: plain cross-entropy, unresolved
  pixels keep the step's label 0 (IDEC's code trains them as background/unknown).
* **DADA** (``dada``): ``dada`` = ``dada_weight · Σ_l w_l D(F_l, F̄_l)`` over encoder stages 1-3
  and the ASPP output, weights 0.5 / 1 / 2 / 1, ``D`` the channel-softmax KD with the teacher
  sharpened by α = 2 (:func:`~geociss.losses.dada.dense_distillation`). geociss's network has no
  IDEC per-stage ASPP projections (which map each stage to 256 channels), so the encoder stages
  (post-activation) are distilled directly. ``dada_logits`` = ``logit_kd_weight ·`` MiB's unbiased
  KD of the output logits (compatible with the background shift). Default weights: 1 for the
  features (IDEC's code: ``lamb = 1``, so its epoch schedule ``lamb^(e/E)`` is constant), 10 for
  the logits (MiB's λ for the same term with the same 1/C_old normalisation; the paper gives no
  value, and keeping MiB's makes the two methods comparable on one benchmark).
* **ARCL** (``arcl``): ``arcl`` = ``arcl_weight ·`` region InfoNCE on the ASPP output
  (:func:`~geociss.losses.arcl.region_contrastive_loss`): regions from ground truth ∪
  pseudo-labels, anchors from the teacher, positive/negatives from the student, background and
  unresolved pixels as negatives only, τ = 0.1. Weight 0.1: the InfoNCE is a few nats (≈ log of
  the number of regions) against a cross-entropy below 1, and 0.1 is the weight pixel-contrast
  segmentation methods commonly give their contrastive term.

Unlike IDEC's scripts (``--freeze``: only the new heads train, so DADA and ARCL send no
gradient), the encoder and ASPP TRAIN here; only the normalisation layers are frozen
(``freeze_norm``, IDEC's ``--bn_freeze``), which keeps the student's features comparable with
the teacher's (eval-mode statistics) and suits small aerial batches. New classes start from the
background (MiB's balanced init, the counterpart of SSUL's weight transfer from the unknown head).
Each switch (``dada``, ``arcl``, ``pseudo_labels``) removes its part alone, for the ablation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Literal, TypeVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from geociss.losses.arcl import DEFAULT_TEMPERATURE, region_contrastive_loss
from geociss.losses.ce import cross_entropy, reduce_pixels
from geociss.losses.dada import (
    DEFAULT_ALPHA,
    DEFAULT_CONFIDENCE_BINS,
    DEFAULT_LAYER_WEIGHTS,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_QUANTILE,
    ConfidenceHistogram,
    confidence_pseudo_labels,
    dense_distillation,
)
from geociss.losses.unbiased import unbiased_kd, unbiased_log_probs
from geociss.methods.base import IncrementalMethod, MethodParams, StepContext, register_method
from geociss.methods.init import INIT_DESCRIPTION, InitRule, apply_init

if TYPE_CHECKING:
    from geociss.models.segmenter import ModelOutput, SegmentationModel


class IDECParams(MethodParams):
    """Hyper-parameters of IDEC (defaults explained in the module docstring)."""

    ce_reduction: Literal["valid", "all"] = Field(
        default="all",
        description="Segmentation-loss reduction: 'all' (mean over every pixel, as MiB/PLOP/UCD, "
        "so step 0 is shared with them) or 'valid' (mean over labelled pixels).",
    )
    seg_loss: Literal["unce", "ce"] = Field(
        default="unce",
        description="'unce': CE on new and pseudo-labelled pixels, −log Σ_old p on unresolved "
        "background pixels; 'ce': plain CE, unresolved pixels stay background.",
    )
    dada: bool = Field(default=True, description="Distil features and logits (DADA).")
    dada_weight: float = Field(default=1.0, ge=0.0, description="Weight of the feature KD sum.")
    dada_layer_weights: list[float] = Field(
        default=list(DEFAULT_LAYER_WEIGHTS),
        min_length=4,
        max_length=4,
        description="Weights of encoder stages 1, 2, 3 and the ASPP output (IDEC: 0.5/1/2/1).",
    )
    dada_alpha: float = Field(
        default=DEFAULT_ALPHA, gt=0.0, description="Factor on the teacher's features (IDEC: 2)."
    )
    logit_kd_weight: float = Field(
        default=10.0,
        ge=0.0,
        description="Weight of MiB's unbiased KD of the output logits (0 drops the term).",
    )
    arcl: bool = Field(default=True, description="Region-wise contrastive learning (ARCL).")
    arcl_weight: float = Field(default=0.1, gt=0.0, description="Weight of the ARCL term.")
    temperature: float = Field(
        default=DEFAULT_TEMPERATURE, gt=0.0, description="Temperature τ of the region InfoNCE."
    )
    pseudo_labels: bool = Field(
        default=True, description="Pseudo-label confident background pixels with the teacher."
    )
    pseudo_quantile: float = Field(
        default=DEFAULT_QUANTILE,
        ge=0.0,
        le=1.0,
        description="Per-class threshold = this quantile of the teacher's confidence on the "
        "class's background pixels (pre-pass); 0.5 keeps each class's more confident half.",
    )
    pseudo_min_confidence: float = Field(
        default=DEFAULT_MIN_CONFIDENCE,
        ge=0.0,
        le=1.0,
        description="Lowest threshold of any class (also that of classes never predicted).",
    )
    pseudo_bins: int = Field(
        default=DEFAULT_CONFIDENCE_BINS, ge=1, description="Confidence histogram bins on [0, 1]."
    )
    freeze_norm: bool = Field(
        default=True,
        description="Freeze normalisation layers at steps ≥ 1 (IDEC's --bn_freeze); the encoder "
        "and ASPP still train.",
    )
    init_balanced: InitRule = Field(default=True, description=INIT_DESCRIPTION)


@register_method("idec")
class IDEC(IncrementalMethod):
    """Segmentation on GT ∪ pseudo-labels + DADA (features and logits) + ARCL."""

    Params = IDECParams
    params: IDECParams
    needs_prepass = True

    def __init__(self, params: IDECParams, context: StepContext) -> None:
        super().__init__(params, context)
        self.thresholds: Tensor | None
        self.register_buffer("thresholds", None, persistent=False)

    # ------------------------------------------------------------ what the method needs

    def _features(self) -> set[str]:
        if not self.context.incremental:
            return set()
        names = {"stages", "aspp"} if self.params.dada else set()
        return names | ({"aspp"} if self.params.arcl else set())

    def student_features(self) -> set[str]:
        """Encoder stages and ASPP output (DADA), ASPP output (ARCL), at steps ≥ 1."""
        return self._features()

    def teacher_features(self) -> set[str]:
        """The same tensors as the student's (its full-res logits give the pseudo-labels)."""
        return self._features()

    def uses_teacher(self) -> bool:
        """The teacher runs at steps ≥ 1 unless DADA, ARCL and pseudo-labels are all off."""
        p = self.params
        return self.context.incremental and (p.dada or p.arcl or p.pseudo_labels)

    # ------------------------------------------------------------ model preparation

    def init_new_classifier(
        self, model: SegmentationModel, teacher: SegmentationModel | None
    ) -> None:
        """MiB's balanced initialisation of the new classes at steps ≥ 1."""
        if self.context.incremental:
            apply_init(model, self.params.init_balanced)

    def configure_model(self, model: SegmentationModel) -> None:
        """Freeze the normalisation layers at steps ≥ 1 (``freeze_norm``); all else trains."""
        if self.context.incremental and self.params.freeze_norm:
            model.freeze("norm")

    def prepass(self, teacher: SegmentationModel, batches: Iterable[Mapping[str, Tensor]]) -> None:
        """Per-class confidence thresholds from one teacher pass (t ≥ 1, pseudo-labels on)."""
        ctx, p = self.context, self.params
        if not ctx.incremental or not p.pseudo_labels:
            return
        histogram = ConfidenceHistogram(ctx.old_channels, p.pseudo_bins)
        with torch.no_grad():
            for batch in batches:
                logits = teacher(batch["image"]).logits
                histogram.update(logits, batch["mask"].to(logits.device), ctx.ignore_index)
        self.thresholds = histogram.thresholds(p.pseudo_quantile, p.pseudo_min_confidence)

    # ------------------------------------------------------------ losses

    def losses(
        self, batch: Mapping[str, Tensor], out: ModelOutput, old: ModelOutput | None
    ) -> dict[str, Tensor]:
        """``{"ce"}`` at step 0; ``{"seg", "dada", "dada_logits", "arcl"}`` at steps ≥ 1.

        Every term is already weighted; a switched-off part (or a zero weight) is absent.
        """
        ctx, p = self.context, self.params
        mask = batch["mask"]
        if not ctx.incremental:
            return {"ce": cross_entropy(out.logits, mask, p.ce_reduction, ctx.ignore_index)}
        if old is None and self.uses_teacher():
            raise RuntimeError("IDEC needs the teacher's output at steps ≥ 1")
        target, unresolved = self.pseudo_target(mask, old)
        terms = {"seg": self.segmentation_loss(out.logits, target, unresolved)}
        if old is not None and p.dada:
            weights = [w * p.dada_weight for w in p.dada_layer_weights]
            if any(weights):
                terms["dada"] = dense_distillation(
                    _levels(out, "student"), _levels(old, "teacher"), weights, p.dada_alpha
                )
            if p.logit_kd_weight > 0:
                terms["dada_logits"] = p.logit_kd_weight * unbiased_kd(out.logits, old.logits)
        if old is not None and p.arcl:
            terms["arcl"] = p.arcl_weight * region_contrastive_loss(
                _need(out.aspp, "student", "aspp"),
                _need(old.aspp, "teacher", "aspp"),
                target,
                p.temperature,
                negative_only=(0,),
                ignore_index=ctx.ignore_index,
            )
        return terms

    def pseudo_target(self, mask: Tensor, old: ModelOutput | None) -> tuple[Tensor, Tensor]:
        """Labels ground truth ∪ pseudo-labels, and the unresolved background pixels.

        Without pseudo-labels every background pixel (label < C_old) is unresolved.
        """
        ctx = self.context
        background = (mask < ctx.old_channels) & (mask != ctx.ignore_index)
        if not self.params.pseudo_labels:
            return mask, background
        if self.thresholds is None:
            raise RuntimeError("IDEC's pre-pass must run before training a step ≥ 1")
        if old is None:
            raise RuntimeError("IDEC's pseudo-labels need the teacher's output")
        pseudo = confidence_pseudo_labels(mask, old.logits, self.thresholds, ctx.ignore_index)
        return pseudo.target, pseudo.unresolved

    def segmentation_loss(self, logits: Tensor, target: Tensor, unresolved: Tensor) -> Tensor:
        """``seg`` in float32: CE on resolved pixels, ``−log Σ_{c<C_old} p_c`` on unresolved ones.

        Args:
            logits: (B, C, H, W) student logits.
            target: (B, H, W) ground truth ∪ pseudo-labels (:meth:`pseudo_target`).
            unresolved: (B, H, W) background pixels without a pseudo-label; with
                ``seg_loss="ce"`` they are trained as their label (background) instead.
        """
        ctx, p = self.context, self.params
        if p.seg_loss == "ce":
            return cross_entropy(logits, target, p.ce_reduction, ctx.ignore_index)
        valid = target != ctx.ignore_index
        resolved = torch.where(unresolved, torch.full_like(target, ctx.ignore_index), target)
        loss = F.cross_entropy(
            logits.float(), resolved, ignore_index=ctx.ignore_index, reduction="none"
        )
        merged = -unbiased_log_probs(logits, ctx.old_channels)[:, 0]
        loss = torch.where(unresolved, merged, loss)
        return reduce_pixels(loss, valid, p.ce_reduction)


def _levels(output: ModelOutput, who: str) -> list[Tensor]:
    """Encoder stages 1-3 and the ASPP output, shallow to deep."""
    stages = _need(output.stages, who, "stages")
    return [*stages[:3], _need(output.aspp, who, "aspp")]


T = TypeVar("T")


def _need(value: T | None, who: str, name: str) -> T:
    """``value`` if the model returned it; a clear error when a requested tensor is missing."""
    if value is None:
        raise RuntimeError(f"IDEC: the {who}'s output lacks the requested {name}")
    return value


__all__ = ["IDEC", "IDECParams"]
