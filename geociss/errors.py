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


class DivergedError(GeocissError):
    """Training stopped because the loss became non-finite.

    A result of the settings (learning rate, loss weights), which a benchmark reports as
    ``diverged`` rather than a crash.
    """


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


def error_detail(err: BaseException) -> str:
    """One line from an exception and its causes, without the placeholders some libraries raise.

    rasterio raises ``RasterioIOError("Read failed. See previous exception for details.")`` with
    GDAL's own messages as its ``__cause__`` chain (for a truncated TIFF: ``band 1: IReadBlock
    failed ...: TIFFReadEncodedTile() failed`` caused by ``TIFFFillTile:Read error at row 0 ...;
    got 196420 bytes, expected 196634``). This joins the distinct messages of the chain with
    ``": "``, leaving out placeholders and messages already contained in an earlier one.
    """
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = " ".join(str(current).split())
        if text and "see previous exception" not in text.lower():
            text = text.rstrip(".")
            if not any(text in earlier for earlier in parts):
                parts.append(text)
        current = current.__cause__
    return ": ".join(parts) or type(err).__name__


def state_dict_mismatch(err: BaseException, shown: int = 3) -> str:
    """One line describing a failed ``load_state_dict``: missing, unexpected, mis-shaped weights.

    torch's message spans several tab-indented lines, one per kind of problem, each listing
    every key; this names how many weights are affected and the first ``shown`` of each kind.
    """
    import re

    def names(keys: list[str], sep: str = ", ") -> str:
        more = f"{sep}and {len(keys) - shown} more" if len(keys) > shown else ""
        return sep.join(keys[:shown]) + more

    missing: list[str] = []
    unexpected: list[str] = []
    shapes: list[str] = []
    other: list[str] = []
    for line in str(err).splitlines()[1:] or str(err).splitlines():
        text = " ".join(line.split())
        if not text:
            continue
        keys = re.findall(r'"([^"]+)"', text)
        size = re.match(
            r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[.*?\])\) "
            r"from checkpoint, the shape in current model is torch\.Size\((\[.*?\])\)",
            text,
        )
        if text.startswith("Missing key(s)"):
            missing += keys
        elif text.startswith("Unexpected key(s)"):
            unexpected += keys
        elif size:
            shapes.append(f"{size[1]}: {size[2]} in the file, {size[3]} in the model")
        else:
            other.append(text.rstrip("."))
    found = []
    if missing:
        found.append(f"{len(missing)} missing ({names(missing)})")
    if unexpected:
        found.append(f"{len(unexpected)} unexpected ({names(unexpected)})")
    if shapes:
        found.append(f"{len(shapes)} of another shape ({names(shapes, '; ')})")
    return "; ".join(found + other) or type(err).__name__
