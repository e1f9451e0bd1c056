"""Training engine: step bundles (and, next to them, the Lightning task and the step loop).

Exports are lazy (PEP 562) so that importing the package does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geociss.engine.bundle import StepBundle, StepRecord

_EXPORTS = {
    "StepBundle": "geociss.engine.bundle",
    "StepRecord": "geociss.engine.bundle",
}

__all__ = ["StepBundle", "StepRecord"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'geociss.engine' has no attribute {name!r}")
