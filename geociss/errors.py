"""User-facing errors.

Every error a user can cause with bad input derives from :class:`GeocissError`. The CLI turns
them into one line on stderr and a non-zero exit, without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class GeocissError(Exception):
    """Base class of errors caused by user input (files, configs, options)."""


class ConfigError(GeocissError):
    """A configuration file or option is invalid."""


class DataError(GeocissError):
    """An input raster, label file or folder is invalid.

    Args:
        path: the offending file or folder (shown first in the message), or None.
        problem: what is wrong, in a few words.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class UnknownLabelValueError(DataError):
    """A label raster holds values that the class schema does not map to any class."""

    def __init__(self, path: str | Path | None, values: list[str]) -> None:
        shown = ", ".join(values[:8]) + (" ..." if len(values) > 8 else "")
        self.values = values
        super().__init__(
            path,
            f"unknown label value(s) {shown}; add them to the class schema "
            "(classes[].values) or to ignore_values",
        )
