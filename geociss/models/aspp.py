"""DeepLab-v3 atrous spatial pyramid pooling (ASPP) head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def make_norm(kind: str, channels: int, groups: int = 32) -> nn.Module:
    """A normalisation layer: ``batch`` (BatchNorm2d) or ``group`` (GroupNorm with ``groups``)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"unknown norm {kind!r}; choose batch or group")


def _conv_block(
    in_channels: int, out_channels: int, kernel: int, dilation: int, norm: str, groups: int
) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=pad, dilation=dilation, bias=False),
        make_norm(norm, out_channels, groups),
        nn.ReLU(inplace=True),
    )


class ImagePooling(nn.Module):
    """The image-level branch: global average, 1×1 conv + norm + ReLU, broadcast to H×W."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, groups: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = _conv_block(in_channels, out_channels, 1, 1, norm, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the pooled features repeated over the input's spatial size."""
        h, w = x.shape[-2:]
        return self.conv(self.pool(x)).expand(-1, -1, h, w)


class ASPP(nn.Module):
    """DeepLab-v3 ASPP: 1×1, three dilated 3×3 and an image-pooling branch, then a 1×1 projection.

    Each branch is conv + norm + ReLU with ``channels`` outputs; the concatenation is projected
    back to ``channels`` by 1×1 conv + norm + ReLU. Dropout belongs to the classifier, so the
    output of :meth:`forward` is the post-activation ASPP feature that distillation methods use.

    Args:
        in_channels: channels of the encoder output.
        channels: width of every branch and of the output (256 in DeepLab-v3).
        dilations: dilations of the three 3×3 branches (6, 12, 18 at output stride 16).
        norm: ``batch`` or ``group``.
        groups: GroupNorm groups (``norm="group"``).
    """

    def __init__(
        self, in_channels: int, channels: int = 256, dilations: Sequence[int] = (6, 12, 18),
        norm: str = "batch", groups: int = 32,
    ) -> None:
        super().__init__()
        convs = [_conv_block(in_channels, channels, 1, 1, norm, groups)]
        convs += [_conv_block(in_channels, channels, 3, d, norm, groups) for d in dilations]
        self.convs = nn.ModuleList(convs)
        self.pooling = ImagePooling(in_channels, channels, norm, groups)
        self.project = _conv_block(channels * (len(convs) + 1), channels, 1, 1, norm, groups)
        self.out_channels = channels

    def branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The branch outputs: 1×1, each dilated 3×3, image pooling (each ``channels`` wide)."""
        return [conv(x) for conv in self.convs] + [self.pooling(x)]

    def fuse(self, branches: list[torch.Tensor]) -> torch.Tensor:
        """Project the concatenated branch outputs to the ASPP output."""
        return self.project(torch.cat(branches, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The ASPP output (post-activation) of the encoder output ``x``."""
        return self.fuse(self.branches(x))
