"""The incremental DeepLab segmentation model: encoder, ASPP (+ v3+ decoder), classifiers."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from geociss.errors import ConfigError
from geociss.models.aspp import ASPP
from geociss.models.classifier import IncrementalClassifier
from geociss.models.config import ModelConfig
from geociss.models.decoder import DeepLabV3PlusDecoder
from geociss.models.encoders import ENCODERS, Encoder
from geociss.models.weights import load_encoder_weights

FEATURES = (
    "logits_low", "aspp", "context", "aspp_branches", "stages", "stages_pre", "encoder"
)
"""Names that :meth:`SegmentationModel.forward` accepts in ``features``."""

Part = Literal["encoder", "aspp", "classifier", "old_classifiers", "norm"]
_PARTS = ("encoder", "aspp", "classifier", "old_classifiers", "norm")


@dataclass
class ModelOutput:
    """What :meth:`SegmentationModel.forward` returns; unrequested features are None.

    Attributes:
        logits: (B, C, H, W) class logits, bilinearly upsampled to the input size.
        logits_low: (B, C, h, w) logits at the head feature's resolution (1/output_stride, or
            1/4 with the DeepLab-v3+ decoder).
        aspp: (B, D, h, w) the head feature the classifier reads, post-activation, before the
            classifier's dropout: the ASPP output (DeepLab-v3, 1/output_stride) or the
            decoder output (DeepLab-v3+, 1/4). Methods use it as the penultimate feature.
        context: (B, D, h, w) the ASPP output at 1/output_stride, before any decoder (the
            same tensor as ``aspp`` for DeepLab-v3): the feature the CISS papers' DeepLab-v3
            classifiers read.
        aspp_branches: the five ASPP branch outputs (1×1, three dilated 3×3, image pooling).
        stages: the four encoder stage outputs (post-activation), shallow to deep.
        stages_pre: the same before each stage's final activation (ResNet encoders).
        encoder: the last encoder stage output (the ASPP input).
    """

    logits: torch.Tensor
    logits_low: torch.Tensor | None = None
    aspp: torch.Tensor | None = None
    context: torch.Tensor | None = None
    aspp_branches: list[torch.Tensor] | None = None
    stages: list[torch.Tensor] | None = None
    stages_pre: list[torch.Tensor] | None = None
    encoder: torch.Tensor | None = None


class SegmentationModel(nn.Module):
    """DeepLab-v3 (encoder + ASPP), or v3+ (+ decoder), with an incremental classifier.

    Args:
        config: the architecture; its ``weights`` initialise the encoder. An unset
            ``in_channels`` builds an RGB network (3 bands); ``geociss train`` sets it from the
            data first (:meth:`ModelConfig.for_bands`).
        classes_per_step: output channels of each step so far; step 0 includes the background
            channel (e.g. ``[3, 3]`` for background + 2 classes, then 3 new classes).

    Raises:
        ConfigError: unknown encoder preset, or weights that cannot be loaded.
    """

    def __init__(self, config: ModelConfig, classes_per_step: Sequence[int]) -> None:
        super().__init__()
        bands = 3 if config.in_channels is None else config.in_channels
        self.config = config.model_copy(update={"in_channels": bands})
        try:
            builder = ENCODERS.get(config.encoder)
        except KeyError as err:
            raise ConfigError(str(err.args[0])) from None
        self.encoder: Encoder = builder(bands, config.output_stride)
        self.weights_origin: dict[str, object] = load_encoder_weights(self.encoder, config.weights)
        """Where the encoder's initial weights came from (stored in bundles)."""
        self.aspp = ASPP(
            self.encoder.out_channels, config.aspp_channels, config.effective_dilations,
            config.norm, config.norm_groups,
        )
        self.decoder: DeepLabV3PlusDecoder | None = None
        if config.decoder == "deeplabv3plus":
            self.decoder = DeepLabV3PlusDecoder(
                self.encoder.channels[0], config.aspp_channels, config.decoder_low_channels,
                config.decoder_convs, config.norm, config.norm_groups,
            )
        self.classifier = IncrementalClassifier(
            config.aspp_channels, classes_per_step, config.dropout
        )
        self._frozen_norm = False

    # ------------------------------------------------------------------ classes

    @property
    def classes_per_step(self) -> tuple[int, ...]:
        """Output channels of each step (step 0 includes background)."""
        return self.classifier.classes_per_step

    @property
    def num_classes(self) -> int:
        """Total output channels."""
        return self.classifier.num_classes

    @property
    def num_steps(self) -> int:
        """Number of steps (classifiers)."""
        return len(self.classes_per_step)

    @property
    def old_channels(self) -> int:
        """Channels learned before the latest step (C_old, background included); 0 at step 0."""
        return sum(self.classes_per_step[:-1])

    def add_step(self, n_new: int) -> None:
        """Append a classifier for ``n_new`` new classes (PyTorch default init).

        The outputs of the existing channels are unchanged; methods re-initialise
        ``self.classifier.head(-1)`` as they need.
        """
        self.classifier.add_step(n_new)

    # ------------------------------------------------------------------ forward

    @property
    def available_features(self) -> tuple[str, ...]:
        """The feature names this model can return (``stages_pre`` needs a ResNet encoder)."""
        if self.encoder.has_pre_activation:
            return FEATURES
        return tuple(f for f in FEATURES if f != "stages_pre")

    def forward(self, x: torch.Tensor, features: Collection[str] = ()) -> ModelOutput:
        """Segment ``x`` (B, in_channels, H, W); return logits plus the requested ``features``.

        Raises:
            ValueError: an unknown feature name.
            ConfigError: ``stages_pre`` with an encoder that has no pre-activations.
        """
        wanted = {features} if isinstance(features, str) else set(features)
        unknown = sorted(wanted.difference(FEATURES))
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; valid: {', '.join(FEATURES)}")
        pre = "stages_pre" in wanted
        if pre and not self.encoder.has_pre_activation:
            raise ConfigError(
                f"encoder {self.encoder.name!r} has no pre-activation stage outputs "
                "(stages_pre); use a ResNet encoder"
            )
        enc = self.encoder(x, pre_activation=pre)
        top = enc.stages[-1]
        branches = self.aspp.branches(top)
        context = self.aspp.fuse(branches)
        aspp = context
        if self.decoder is not None:
            aspp = self.decoder(context, enc.stages[0])
        low = self.classifier(aspp)
        logits = F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return ModelOutput(
            logits=logits,
            logits_low=low if "logits_low" in wanted else None,
            aspp=aspp if "aspp" in wanted else None,
            context=context if "context" in wanted else None,
            aspp_branches=branches if "aspp_branches" in wanted else None,
            stages=enc.stages if "stages" in wanted else None,
            stages_pre=enc.stages_pre,
            encoder=top if "encoder" in wanted else None,
        )

    # ------------------------------------------------------------------ parameters

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Encoder parameters (the lower learning-rate group)."""
        return self.encoder.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """ASPP, decoder and classifier parameters (the higher learning-rate group)."""
        yield from self.aspp.parameters()
        if self.decoder is not None:
            yield from self.decoder.parameters()
        yield from self.classifier.parameters()

    def freeze(self, *parts: Part) -> None:
        """Stop training ``parts``: ``requires_grad=False`` on their parameters.

        Parts: ``encoder``, ``aspp`` (with the DeepLab-v3+ decoder), ``classifier`` (every
        step), ``old_classifiers`` (every step but the last), ``norm`` (every BatchNorm and
        GroupNorm: affine parameters frozen and, for BatchNorm, running statistics kept in eval
        mode even after ``train()``, as DKD and SSUL do at steps ≥ 1).
        """
        for part in parts:
            if part not in _PARTS:
                raise ValueError(f"unknown part {part!r}; valid: {', '.join(_PARTS)}")
            for module in self._part_modules(part):
                module.requires_grad_(False)
            if part == "norm":
                self._frozen_norm = True
                self._set_norm_eval()

    def _part_modules(self, part: str) -> list[nn.Module]:
        if part == "encoder":
            return [self.encoder]
        if part == "aspp":
            return [self.aspp] + ([self.decoder] if self.decoder is not None else [])
        if part == "classifier":
            return [self.classifier]
        if part == "old_classifiers":
            return list(self.classifier.heads)[:-1]
        norms = (nn.modules.batchnorm._NormBase, nn.GroupNorm)
        return [m for m in self.modules() if isinstance(m, norms)]

    def _set_norm_eval(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()

    def train(self, mode: bool = True) -> SegmentationModel:
        """Set training mode; BatchNorm layers stay in eval mode after ``freeze("norm")``."""
        super().train(mode)
        if self._frozen_norm:
            self._set_norm_eval()
        return self
