"""The incremental classifier: one 1×1 convolution per step, outputs concatenated."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class IncrementalClassifier(nn.Module):
    """Dropout, then one 1×1 conv per step; the logits are their concatenation along channels.

    Channel ``c`` of the output is the ``c``-th entry of ``[step 0 channels] + [step 1 channels]
    + ...``; step 0 includes the background channel. New steps start with PyTorch's default
    ``Conv2d`` initialisation; methods that need another rule (MiB's background copy, DKD's
    auxiliary copy) overwrite :meth:`head` ``(-1)`` after :meth:`add_step`.

    Args:
        in_channels: feature channels (the ASPP width).
        classes_per_step: output channels of each step's convolution.
        dropout: dropout probability applied to the features before every convolution.
    """

    def __init__(
        self, in_channels: int, classes_per_step: Sequence[int], dropout: float = 0.1
    ) -> None:
        super().__init__()
        if not classes_per_step:
            raise ValueError("classes_per_step must name at least one step")
        self.in_channels = in_channels
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleList()
        for n in classes_per_step:
            self.add_step(n)

    def add_step(self, n_new: int) -> nn.Conv2d:
        """Append a 1×1 conv with ``n_new`` outputs (default init) and return it."""
        if n_new < 1:
            raise ValueError(f"a step must add at least one channel, got {n_new}")
        conv = nn.Conv2d(self.in_channels, n_new, kernel_size=1)
        if len(self.heads):
            ref = self.head(0).weight
            conv = conv.to(device=ref.device, dtype=ref.dtype)
        self.heads.append(conv)
        return conv

    def head(self, step: int) -> nn.Conv2d:
        """The convolution of ``step`` (negative indices count from the last step)."""
        conv = self.heads[step]
        assert isinstance(conv, nn.Conv2d)
        return conv

    @property
    def classes_per_step(self) -> tuple[int, ...]:
        """Output channels of each step."""
        return tuple(self.head(i).out_channels for i in range(len(self.heads)))

    @property
    def num_classes(self) -> int:
        """Total output channels."""
        return sum(self.classes_per_step)

    @property
    def weight(self) -> torch.Tensor:
        """All class weights as one (num_classes, in_channels) matrix (a differentiable view)."""
        return torch.cat([self.head(i).weight.flatten(1) for i in range(len(self.heads))])

    @property
    def bias(self) -> torch.Tensor:
        """All class biases as one (num_classes,) vector."""
        return torch.cat([self.head(i).bias for i in range(len(self.heads))])  # type: ignore[misc]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes, H, W) of features (B, in_channels, H, W)."""
        x = self.dropout(x)
        return torch.cat([head(x) for head in self.heads], dim=1)
