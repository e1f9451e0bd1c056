"""DKD: Decomposed Knowledge Distillation (Baek et al., NeurIPS 2022).

Every class is a sigmoid (multi-label) score. Step 0: ``L = L_mbce + L_ac``; steps t ≥ 1:
``L = 1·L_mbce + 5·L_kd + 5·L_dkd_pos + 5·L_dkd_neg + 1·L_ac`` (the terms of
:mod:`geociss.losses.decomposed`). The positive weight of L_mbce differs between the two: DKD's
VOC scripts pass ``--pos_weight 2`` to the step-0 command only, and the incremental steps keep
the config file's ``"pos_weight": 1`` (``pos_weight`` and ``pos_weight_incremental`` here; on
ADE the config's 35 applies at every step). An auxiliary 1×1 classifier, owned by this method
and kept in the step bundle, learns on the DETACHED ASPP output to say "no" everywhere; every
new class starts as a copy of it (weight and bias). At t ≥ 1 every normalisation layer is
frozen (BatchNorm statistics and affine parameters) and the classifier's dropout is off.
Optimiser groups: the backbone at the base lr, ASPP + classifiers + auxiliary at lr ×
``head_lr_mult`` (DKD: 10); at t ≥ 1 only the new classifier has weight decay.

Channel 0 (geociss's background slot). DKD has no background channel, and the method cannot tell
a real class playing background from an implicit one (the step context does not say), so the
rule is a parameter; channel 0 is either:

* ``background: class`` (default): a sigmoid class like the others. Step 0 learns it from the
  pixels labelled 0 (a real class playing background, e.g. ISPRS impervious surfaces, or the
  implicit background); at t ≥ 1 it is distilled like an old class (its step-t label 0 also
  covers the old classes, so it gets no BCE then).
* ``background: fallback``: its row is zeroed at step 0 and no loss ever touches it.

In both cases channel 0 only decides inference as DKD's fallback: :meth:`predict`
returns the argmax of the foreground sigmoids (channels ≥ 1) where one exceeds 0.5, else 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from geociss.errors import DataError
from geociss.losses.decomposed import auxiliary_loss, decomposed_kd, multilabel_bce, sigmoid_kd
from geociss.methods.base import IncrementalMethod, MethodParams, StepContext, register_method

if TYPE_CHECKING:
    from geociss.models.classifier import IncrementalClassifier
    from geociss.models.segmenter import ModelOutput, SegmentationModel

AUX_KEYS = ("dkd_aux.weight", "dkd_aux.bias")
"""Names of the auxiliary classifier's tensors in the step bundle's extra tensors."""


class DKDParams(MethodParams):
    """Hyper-parameters of DKD (defaults = the authors' Pascal VOC config)."""

    ce_reduction: Literal["valid", "all"] = Field(
        default="valid",
        description="Reduction of the multi-label BCE when ignored pixels are dropped "
        "(ignored_pixels: ignore); with 'negative' every pixel counts.",
    )
    pos_weight: float = Field(
        default=2.0,
        gt=0.0,
        description="Positive weight of the multi-label BCE at step 0 (DKD's VOC scripts: 2; "
        "ADE: 35).",
    )
    pos_weight_incremental: float = Field(
        default=1.0,
        gt=0.0,
        description="Positive weight of the multi-label BCE at steps >= 1 (DKD's VOC config: 1, "
        "the step-0 value is not passed on; ADE: 35).",
    )
    mbce_weight: float = Field(default=1.0, ge=0.0, description="Weight of L_mbce.")
    kd_weight: float = Field(default=5.0, ge=0.0, description="Weight of L_kd.")
    dkd_pos_weight: float = Field(default=5.0, ge=0.0, description="Weight of L_dkd_pos.")
    dkd_neg_weight: float = Field(default=5.0, ge=0.0, description="Weight of L_dkd_neg.")
    ac_weight: float = Field(default=1.0, ge=0.0, description="Weight of L_ac.")
    ignored_pixels: Literal["negative", "ignore"] = Field(
        default="negative",
        description="Pixels labelled 255 in L_mbce: negatives for every class (DKD) or ignored.",
    )
    background: Literal["class", "fallback"] = Field(
        default="class",
        description="Channel 0: trained as a sigmoid class at step 0 and distilled after "
        "('class'), or never trained ('fallback'); inference uses it only as the fallback.",
    )
    head_lr_mult: float | None = Field(
        default=10.0,
        gt=0.0,
        description="ASPP and classifiers learn at lr × this (DKD: 10); null uses the "
        "config's train.head_lr_mult.",
    )


@register_method("dkd")
class DKD(IncrementalMethod):
    """Multi-label BCE + sigmoid KD + decomposed KD + auxiliary classifier."""

    Params = DKDParams
    params: DKDParams

    def __init__(self, params: DKDParams, context: StepContext) -> None:
        super().__init__(params, context)
        self.aux: nn.Conv2d | None = None
        self._student: tuple[IncrementalClassifier, ...] = ()
        self.old_weight: Tensor | None
        self.register_buffer("old_weight", None, persistent=False)

    # ------------------------------------------------------------ what the method needs

    def _first(self) -> int:
        return 0 if self.params.background == "class" else 1

    def _bind(self, model: SegmentationModel) -> None:
        # A plain reference (not a registered submodule): the student's classifier rows feed
        # the decomposed KD, but its parameters belong to the model, not to the method.
        self._student = (model.classifier,)

    def _classifier(self) -> IncrementalClassifier:
        if not self._student:
            raise RuntimeError("DKD needs init_new_classifier() or configure_model() first")
        return self._student[0]

    def _distils(self) -> bool:
        p = self.params
        return self.context.incremental and max(p.kd_weight, p.dkd_pos_weight, p.dkd_neg_weight) > 0

    def student_features(self) -> set[str]:
        """The ASPP output (auxiliary classifier; decomposed KD at steps ≥ 1)."""
        return {"aspp"}

    def teacher_features(self) -> set[str]:
        """The ASPP output at steps ≥ 1 (the teacher's own decomposed logits)."""
        return {"aspp"} if self._distils() else set()

    def uses_teacher(self) -> bool:
        """The teacher runs at steps ≥ 1 unless every distillation weight is 0."""
        return self._distils()

    def step0_key(self) -> dict[str, Any]:
        """Step 0 is DKD's own: multi-label BCE, auxiliary classifier, its learning rates."""
        keys = ("pos_weight", "mbce_weight", "ac_weight", "ignored_pixels", "background")
        key: dict[str, Any] = {"loss": "dkd", **{k: getattr(self.params, k) for k in keys}}
        key["head_lr_mult"] = self.params.head_lr_mult
        if self.params.ignored_pixels == "ignore":
            key["ce_reduction"] = self.params.ce_reduction
        return key

    # ------------------------------------------------------------ method-owned tensors

    def extra_tensors(self) -> dict[str, Tensor]:
        """The auxiliary classifier's weight (1, D, 1, 1) and bias (1,), if it exists."""
        if self.aux is None:
            return {}
        return {AUX_KEYS[0]: self.aux.weight.detach(), AUX_KEYS[1]: self.aux.bias.detach()}

    def restore(self, extra: Mapping[str, Tensor]) -> None:
        """Rebuild the auxiliary classifier of the previous step (no-op when absent)."""
        if not all(k in extra for k in AUX_KEYS):
            return
        weight, bias = extra[AUX_KEYS[0]], extra[AUX_KEYS[1]]
        if weight.ndim != 4 or weight.shape[0] != 1 or weight.shape[2:] != (1, 1):
            raise DataError(
                None, f"step bundle: DKD auxiliary weight of shape {tuple(weight.shape)}"
            )
        if tuple(bias.shape) != (1,):
            raise DataError(None, f"step bundle: DKD auxiliary bias of shape {tuple(bias.shape)}")
        self.aux = nn.Conv2d(weight.shape[1], 1, 1).to(weight.dtype)
        with torch.no_grad():
            self.aux.weight.copy_(weight)
            self.aux.bias.copy_(bias)  # type: ignore[union-attr]

    # ------------------------------------------------------------ model preparation

    def init_new_classifier(
        self, model: SegmentationModel, teacher: SegmentationModel | None
    ) -> None:
        """Create (step 0) or check the auxiliary classifier; new rows := its weight and bias.

        At step 0 with ``background: fallback`` channel 0's row and bias are zeroed. At t ≥ 1
        the teacher's classifier rows are kept for the decomposed KD. Without a restored
        auxiliary classifier at t ≥ 1 (a direct API call), a fresh one is created, and the new
        rows copy its default initialisation.
        """
        self._bind(model)
        ref = model.classifier.head(0).weight
        width = model.classifier.in_channels
        if self.aux is None:
            self.aux = nn.Conv2d(width, 1, 1)
        elif self.aux.in_channels != width:
            raise DataError(
                None,
                f"step bundle: DKD auxiliary classifier reads {self.aux.in_channels} channels, "
                f"the model's ASPP has {width}",
            )
        self.aux.to(device=ref.device, dtype=ref.dtype)
        if not self.context.incremental:
            if self.params.background == "fallback":
                with torch.no_grad():
                    model.classifier.head(0).weight[0].zero_()
                    model.classifier.head(0).bias[0] = 0.0  # type: ignore[index]
            return
        new = model.classifier.head(-1)
        with torch.no_grad():
            new.weight.copy_(self.aux.weight.expand_as(new.weight))
            new.bias.copy_(self.aux.bias.expand_as(new.bias))  # type: ignore[union-attr]
        source = teacher if teacher is not None else model
        rows = source.classifier.weight[: self.context.old_channels]
        self.old_weight = rows.detach().flatten(1).clone().to(ref.device)

    def configure_model(self, model: SegmentationModel) -> None:
        """Freeze every normalisation layer at steps ≥ 1 (statistics and affine parameters)."""
        self._bind(model)
        if self.context.incremental:
            model.freeze("norm")

    def train_mode(self, model: SegmentationModel) -> None:
        """Training mode; the classifier's dropout stays off at steps ≥ 1."""
        model.train()
        if self.context.incremental:
            model.classifier.dropout.eval()

    def param_groups(
        self, model: SegmentationModel, lr: float, head_lr_mult: float, weight_decay: float
    ) -> list[dict[str, Any]]:
        """Backbone at ``lr``; ASPP, classifiers and auxiliary at ``lr × head_lr_mult``.

        ``head_lr_mult`` is the ``head_lr_mult`` param unless it is null. At steps ≥ 1 only the
        new classifier has weight decay (DKD); at step 0 every group has it.
        """
        mult = head_lr_mult if self.params.head_lr_mult is None else self.params.head_lr_mult
        step = self.context.incremental
        new = list(model.classifier.head(-1).parameters()) if step else []
        new_ids = {id(p) for p in new}
        head = [p for p in model.head_parameters() if id(p) not in new_ids]
        parts = (
            ("backbone", list(model.backbone_parameters()), lr, not step),
            ("head", head, lr * mult, not step),
            ("new_classifier", new, lr * mult, True),
            ("method", list(self.parameters()), lr * mult, not step),
        )
        groups = []
        for name, params, group_lr, decay in parts:
            trainable = [p for p in params if p.requires_grad]
            if trainable:
                wd = weight_decay if decay else 0.0
                groups.append(
                    {"params": trainable, "lr": group_lr, "weight_decay": wd, "name": name}
                )
        if not groups:
            raise RuntimeError("every parameter is frozen: nothing to train")
        return groups

    # ------------------------------------------------------------ training and inference

    def losses(
        self, batch: Mapping[str, Tensor], out: ModelOutput, old: ModelOutput | None
    ) -> dict[str, Tensor]:
        """``{"mbce", "ac"}`` at step 0, plus ``{"kd", "dkd_pos", "dkd_neg"}`` at t ≥ 1.

        Every term is already weighted; terms of weight 0 (or without channels) are left out.
        """
        p, ctx = self.params, self.context
        if self.aux is None or out.aspp is None:
            raise RuntimeError("DKD needs the ASPP output and init_new_classifier() first")
        learned = ctx.new_channels if ctx.incremental else range(self._first(), ctx.num_channels)
        old_set = range(self._first(), ctx.old_channels)
        terms: dict[str, Tensor] = {}
        if p.mbce_weight > 0 and len(learned):
            bce = multilabel_bce(
                out.logits,
                batch["mask"],
                learned,
                p.pos_weight_incremental if ctx.incremental else p.pos_weight,
                p.ignored_pixels,
                p.ce_reduction,
                ctx.ignore_index,
            )
            terms["mbce"] = p.mbce_weight * bce
        if self._distils() and len(old_set):
            terms.update(self._distillation(out, old, old_set))
        if p.ac_weight > 0:
            aux = self.aux(out.aspp.detach())
            aux = F.interpolate(
                aux, size=out.logits.shape[-2:], mode="bilinear", align_corners=False
            )
            terms["ac"] = p.ac_weight * auxiliary_loss(aux)
        return terms

    def _distillation(
        self, out: ModelOutput, old: ModelOutput | None, channels: range
    ) -> dict[str, Tensor]:
        p = self.params
        if old is None or old.aspp is None or out.aspp is None or self.old_weight is None:
            raise RuntimeError("DKD needs the teacher's output and ASPP output at steps ≥ 1")
        terms: dict[str, Tensor] = {}
        if p.kd_weight > 0:
            terms["kd"] = p.kd_weight * sigmoid_kd(out.logits, old.logits, channels)
        if p.dkd_pos_weight > 0 or p.dkd_neg_weight > 0:
            rows = self._classifier().weight
            pos, neg = decomposed_kd(out.aspp, rows, old.aspp, self.old_weight, channels)
            if p.dkd_pos_weight > 0:
                terms["dkd_pos"] = p.dkd_pos_weight * pos
            if p.dkd_neg_weight > 0:
                terms["dkd_neg"] = p.dkd_neg_weight * neg
        return terms

    def predict(self, logits: Tensor) -> Tensor:
        """DKD's rule: the argmax of the foreground sigmoids where one exceeds 0.5, else 0.

        Foreground = channels ≥ 1. Compared on the logits (σ is monotonic and σ(z) > 0.5 ⟺
        z > 0), so saturated sigmoids cannot tie.
        """
        if logits.shape[1] < 2:
            return torch.zeros_like(logits[:, 0], dtype=torch.long)
        best, index = logits[:, 1:].max(dim=1)
        return torch.where(best > 0, index + 1, torch.zeros_like(index))

    def probabilities(self, logits: Tensor) -> Tensor:
        """Per-channel scores in [0, 1]: ``σ(z_k)`` for k ≥ 1, ``1 − max_k σ(z_k)`` for channel 0.

        Not a distribution (the channels need not sum to 1). Their argmax is :meth:`predict`
        (up to ties of saturated sigmoids), so averaging them over overlapping windows and
        taking the argmax blends DKD's rule; channel 0's own sigmoid is never used.
        """
        scores = torch.sigmoid(logits.float())
        fg = scores[:, 1:]
        if not fg.shape[1]:
            return torch.ones_like(scores)
        return torch.cat([1 - fg.amax(dim=1, keepdim=True), fg], dim=1)
