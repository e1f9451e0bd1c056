"""Segmentation network: timm encoders, DeepLab-v3 ASPP head, incremental classifier.

Exports are lazy (PEP 562): ``from geociss.models import ModelConfig`` does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geociss.models.aspp import ASPP
    from geociss.models.classifier import IncrementalClassifier
    from geociss.models.config import ModelConfig
    from geociss.models.encoders import ENCODERS, Encoder
    from geociss.models.segmenter import FEATURES, ModelOutput, SegmentationModel

_EXPORTS = {
    "ASPP": "geociss.models.aspp",
    "ENCODERS": "geociss.models.encoders",
    "Encoder": "geociss.models.encoders",
    "FEATURES": "geociss.models.segmenter",
    "IncrementalClassifier": "geociss.models.classifier",
    "ModelConfig": "geociss.models.config",
    "ModelOutput": "geociss.models.segmenter",
    "SegmentationModel": "geociss.models.segmenter",
}

__all__ = [
    "ASPP",
    "ENCODERS",
    "FEATURES",
    "Encoder",
    "IncrementalClassifier",
    "ModelConfig",
    "ModelOutput",
    "SegmentationModel",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'geociss.models' has no attribute {name!r}")
