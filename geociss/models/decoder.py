"""The DeepLab-v3+ decoder: ASPP output joined with the stride-4 encoder features.

Chen et al. (ECCV 2018): the low-level feature (the first encoder stage, stride 4) is projected
by a 1×1 conv + norm + ReLU to a few channels (48 in the paper), the ASPP output is bilinearly
upsampled to its size, the two are concatenated and refined by 3×3 conv + norm + ReLU blocks (two
of 256 channels in the paper). The classifier then reads this stride-4 feature instead of the
stride-16 ASPP output, which is what lets small objects (cars at 5-10 cm) keep their shape.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from geociss.models.aspp import make_norm


class DeepLabV3PlusDecoder(nn.Module):
    """Low-level projection, upsampling, concatenation and 3×3 refinement.

    Args:
        low_channels: channels of the low-level (stride-4) encoder feature.
        aspp_channels: channels of the ASPP output (also the decoder's output width).
        project_channels: width of the low-level projection (48 in the paper).
        convs: number of 3×3 refinement blocks (2 in the paper).
        norm: ``batch`` or ``group``.
        groups: GroupNorm groups.
    """

    def __init__(
        self, low_channels: int, aspp_channels: int, project_channels: int = 48, convs: int = 2,
        norm: str = "batch", groups: int = 32,
    ) -> None:
        super().__init__()
        if convs < 1:
            raise ValueError(f"the decoder needs at least one 3×3 block, got {convs}")
        self.project = nn.Sequential(
            nn.Conv2d(low_channels, project_channels, 1, bias=False),
            make_norm(norm, project_channels, math.gcd(groups, project_channels)),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        width = aspp_channels + project_channels
        for _ in range(convs):
            blocks += [
                nn.Conv2d(width, aspp_channels, 3, padding=1, bias=False),
                make_norm(norm, aspp_channels, groups),
                nn.ReLU(inplace=True),
            ]
            width = aspp_channels
        self.refine = nn.Sequential(*blocks)
        self.out_channels = aspp_channels

    def forward(self, aspp: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """The stride-4 head feature from the ASPP output and the low-level feature."""
        up = F.interpolate(aspp, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.refine(torch.cat([up, self.project(low)], dim=1))


__all__ = ["DeepLabV3PlusDecoder"]
