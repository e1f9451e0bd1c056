"""UCD: uncertainty-aware contrastive distillation on top of MiB (Yang et al., TPAMI 2022).

"MiB+UCD": at every step t ≥ 1,
``L = L_UNCE + λ_KD · L_UNKD + λ_UCD · L_UCD`` with λ_KD = 10, λ_UCD = 0.01 (UCD's code divides
its loss by 100) and temperature 0.07; step 0, the classifier initialisation and the schedule
are MiB's. ``L_UCD`` contrasts the student's ASPP features of the batch's pixels with each other
and with the teacher's, weighted by the teacher's uncertainty
(:func:`~geociss.losses.contrastive.uncertainty_contrastive_loss`).

Which feature: UCD's network is DeepLab-v3, whose classifier reads the ASPP output at
1/output_stride, and that is the feature its loss contrasts. ``embedding: context`` (default)
contrasts that ASPP output with any head; with the DeepLab-v3+ decoder the teacher's logits,
which the decoder produces at 1/4, are area-averaged to the ASPP grid for the mixed labels and
uncertainty weights. ``embedding: head`` contrasts the classifier's input instead (the decoder's
1/4 output with DeepLab-v3+: 16× the pixels, so the anchors × contrast matrix is up to 256× larger
and ``max_pixels`` subsamples it). Without a decoder both are the same tensor.

UCD's code also freezes the first step's classifier at every step ("freeze cls0 for pascal");
``freeze_base_classifier`` reproduces it, off by default since the paper does not describe it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from geociss.losses.contrastive import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_TEMPERATURE,
    uncertainty_contrastive_loss,
)
from geociss.methods.base import register_method
from geociss.methods.mib import MiB, MiBParams

if TYPE_CHECKING:
    from geociss.models.segmenter import ModelOutput, SegmentationModel


class UCDParams(MiBParams):
    """MiB's hyper-parameters plus the contrastive term's (defaults = UCD's code)."""

    ucd_weight: float = Field(
        default=0.01,
        ge=0.0,
        description="Weight of the contrastive distillation (UCD's code: loss / 100); 0 "
        "disables it (plain MiB).",
    )
    temperature: float = Field(
        default=DEFAULT_TEMPERATURE, gt=0.0, description="Temperature τ of the similarities."
    )
    max_pixels: int | None = Field(
        default=DEFAULT_MAX_PIXELS,
        ge=1,
        description="Cap on the anchor pixels per batch (uniform random subset) to bound the "
        "anchors × contrast similarity matrix; null uses every pixel as UCD does.",
    )
    original_shift: bool = Field(
        default=False,
        description="Reproduce UCD's code, which max-shifts the positive similarity but not "
        "the negatives' sum (up-weights negatives by about e^(1/τ)); for matching numbers only.",
    )
    embedding: Literal["context", "head"] = Field(
        default="context",
        description="Feature contrasted: 'context' (the ASPP output at 1/output_stride, as in "
        "UCD's DeepLab-v3) or 'head' (the classifier's input: the decoder's 1/4 output with "
        "deeplabv3plus). The same tensor without a decoder.",
    )
    freeze_base_classifier: bool = Field(
        default=False,
        description="Freeze step 0's classifier at steps ≥ 1, as UCD's code does for Pascal VOC.",
    )


@register_method("ucd")
class UCD(MiB):
    """MiB's unbiased losses plus uncertainty-aware contrastive distillation of ASPP features."""

    Params = UCDParams
    params: UCDParams

    def _contrast(self) -> bool:
        return self.context.incremental and self.params.ucd_weight > 0

    def uses_teacher(self) -> bool:
        """The teacher runs at steps ≥ 1 when either distillation term is on."""
        return super().uses_teacher() or self._contrast()

    def _tap(self) -> str:
        """The model feature named by ``embedding``."""
        return "context" if self.params.embedding == "context" else "aspp"

    def student_features(self) -> set[str]:
        """MiB's tensors plus the contrasted feature at steps ≥ 1."""
        return super().student_features() | ({self._tap()} if self._contrast() else set())

    def teacher_features(self) -> set[str]:
        """MiB's tensors plus the contrasted feature and the low-resolution logits at steps ≥ 1."""
        extra = {self._tap(), "logits_low"} if self._contrast() else set()
        return super().teacher_features() | extra

    def configure_model(self, model: SegmentationModel) -> None:
        """MiB's policy; freezes step 0's classifier if ``freeze_base_classifier``."""
        super().configure_model(model)
        if self.context.incremental and self.params.freeze_base_classifier:
            model.classifier.head(0).requires_grad_(False)

    def losses(
        self, batch: Mapping[str, Tensor], out: ModelOutput, old: ModelOutput | None
    ) -> dict[str, Tensor]:
        """MiB's terms plus ``"ucd"`` (already × ``ucd_weight``) at steps ≥ 1."""
        terms = super().losses(batch, out, old)
        if not self.context.incremental:
            return terms
        if self.params.kd_weight == 0:
            terms.pop("unkd", None)
        if self._contrast():
            tap = self._tap()
            feats = getattr(out, tap)
            old_feats = getattr(old, tap) if old is not None else None
            if old is None or old_feats is None or old.logits_low is None or feats is None:
                raise RuntimeError(f"UCD needs the {tap} features and the teacher's low logits")
            loss = uncertainty_contrastive_loss(
                feats,
                old_feats,
                logits_at(old.logits_low, tuple(feats.shape[-2:])),
                batch["mask"],
                temperature=self.params.temperature,
                max_pixels=self.params.max_pixels,
                original_shift=self.params.original_shift,
                ignore_index=self.context.ignore_index,
            )
            terms["ucd"] = self.params.ucd_weight * loss
        return terms


def logits_at(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """``logits`` (B, C, h, w) on a ``size`` grid: unchanged if equal, else area-averaged.

    The DeepLab-v3+ decoder's 1/4 logits cover the ASPP's 1/16 cells exactly (4 × 4 each when
    the input is a multiple of 16); area averaging gives each cell the mean logit over it.
    """
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.adaptive_avg_pool2d(logits, size)


__all__ = ["UCD", "UCDParams", "logits_at"]
