"""Class-incremental methods, one module each, found by the :data:`METHODS` registry.

Every module of this package is imported on first use of :func:`get_method`, so a new method
needs no edit here: add ``geociss/methods/<name>.py`` with ``@register_method("<name>")``.
"""

from __future__ import annotations

import importlib
import pkgutil

from geociss.errors import ConfigError
from geociss.methods.base import (
    METHODS,
    IncrementalMethod,
    MethodParams,
    StepContext,
    register_method,
)

_loaded = False


def load_all() -> None:
    """Import every method module so that each registers itself."""
    global _loaded
    if _loaded:
        return
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    _loaded = True


def get_method(name: str) -> type[IncrementalMethod]:
    """The method class registered as ``name`` (the error lists the valid names)."""
    load_all()
    try:
        return METHODS.get(name)
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from None


def method_names() -> list[str]:
    """Names of every registered method."""
    load_all()
    return METHODS.names()


__all__ = [
    "METHODS",
    "IncrementalMethod",
    "MethodParams",
    "StepContext",
    "get_method",
    "load_all",
    "method_names",
    "register_method",
]
