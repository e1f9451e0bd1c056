"""Batch augmentation on the device, identical for image and mask.

One random affine map per sample (D4 symmetry: flips and 90° rotations; isotropic scale; random
translation) is applied with a single ``grid_sample`` to the image (bilinear) and the mask
(nearest). Pixels that come from outside the tile are invalid: image 0 and mask 255 (ignore),
never background (kornia's geometric augmentations pad masks with 0,
which would teach "background" at tile borders, hence this module). Photometric jitter is a mild
per-sample, per-band gain and offset on the normalised image, valid for any band count (RGB
colour jitter assumes three bands).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from geociss.data.classes import IGNORE_INDEX


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings.

    Attributes:
        flip: random horizontal/vertical flips.
        rot90: random multiples of 90° rotation (aerial imagery has no "up").
        scale: range of the zoom factor (>1 zooms in); (1, 1) disables scaling.
        gain: maximum relative per-band gain change (0.1 = ±10 %).
        offset: maximum per-band offset in normalised units.
    """

    flip: bool = True
    rot90: bool = True
    scale: tuple[float, float] = (0.75, 1.5)
    gain: float = 0.1
    offset: float = 0.1


class BatchAugment(torch.nn.Module):
    """Random geometric + photometric augmentation of a batch (see module docstring)."""

    def __init__(self, config: AugmentConfig | None = None) -> None:
        super().__init__()
        self.config = config or AugmentConfig()

    def sample_affine(
        self, batch: int, device: torch.device, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw one (2, 3) affine matrix per sample, in normalised grid coordinates."""
        cfg = self.config

        def rand(*shape: int) -> Tensor:
            return torch.rand(*shape, generator=generator, device="cpu").to(device)

        theta = torch.zeros(batch, 2, 3, device=device)
        k = (rand(batch) * 4).floor() if cfg.rot90 else torch.zeros(batch, device=device)
        angle = k * (math.pi / 2)
        cos, sin = torch.cos(angle).round(), torch.sin(angle).round()
        lo, hi = cfg.scale
        log_s = math.log(lo) + rand(batch) * (math.log(hi) - math.log(lo))
        inv = torch.exp(-log_s)  # grid coordinates shrink when zooming in
        fx = (
            torch.where(rand(batch) < 0.5, -1.0, 1.0)
            if cfg.flip
            else torch.ones(batch, device=device)
        )
        fy = (
            torch.where(rand(batch) < 0.5, -1.0, 1.0)
            if cfg.flip
            else torch.ones(batch, device=device)
        )
        theta[:, 0, 0] = cos * inv * fx
        theta[:, 0, 1] = -sin * inv * fy
        theta[:, 1, 0] = sin * inv * fx
        theta[:, 1, 1] = cos * inv * fy
        # translate so the sampled square stays inside the tile when zooming in, and is centred
        # with random offset (revealing padding) when zooming out
        room = (1.0 - inv).abs()
        theta[:, 0, 2] = (rand(batch) * 2 - 1) * room
        theta[:, 1, 2] = (rand(batch) * 2 - 1) * room
        return theta

    def forward(
        self, image: Tensor, mask: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Augment ``image`` (B, C, H, W) float and ``mask`` (B, H, W) identically.

        ``mask`` may be any integer dtype (uint8 from the loader); the result is int64.
        """
        b = image.shape[0]
        theta = self.sample_affine(b, image.device, generator)
        grid = F.affine_grid(theta, list(image.shape), align_corners=False)
        out = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # labels shifted by one, so that zero padding decodes to -1 → ignore; a ones channel
        # marks the pixels that come from inside the tile
        stack = torch.stack(
            [mask.to(torch.float32) + 1.0, torch.ones_like(mask, dtype=torch.float32)], 1
        )
        sampled = F.grid_sample(
            stack, grid, mode="nearest", padding_mode="zeros", align_corners=False
        )
        m = sampled[:, 0].round().to(torch.int64) - 1
        m = torch.where(m < 0, torch.full_like(m, IGNORE_INDEX), m)
        inside = sampled[:, 1:2] > 0.5
        cfg = self.config
        if cfg.gain > 0 or cfg.offset > 0:
            c = image.shape[1]
            r = torch.rand(b, c, 1, 1, generator=generator).to(image.device, image.dtype)
            q = torch.rand(b, c, 1, 1, generator=generator).to(image.device, image.dtype)
            gain = 1.0 + (r * 2 - 1) * cfg.gain
            offset = (q * 2 - 1) * cfg.offset
            out = torch.where(inside, out * gain + offset, out)
        return out, m
