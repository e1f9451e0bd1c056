"""Integrity checks: a checksum of a bundle's tensors, and usable normalisation statistics.

A step bundle stores the SHA-256 of its tensors (:func:`tensor_checksum`) in its metadata and
verifies it when loaded, so flipped or truncated weight bytes are refused instead of being used
silently. Normalisation statistics (per-band mean and standard deviation) are checked when they
are computed from training data and when a bundle is loaded (:func:`normalization_problem`):
a NaN mean or a zero standard deviation would otherwise turn every input into NaN and every
prediction into class 0.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from geociss.errors import DataError

CHECKSUM_ALGORITHM = "sha256"
"""Hash function of :func:`tensor_checksum`."""


def tensor_checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of named tensors: names, dtypes, shapes and bytes, in sorted name order.

    The order of the mapping does not matter, the tensors' memory layout does not either (each
    tensor is hashed as its contiguous CPU copy), so a bundle hashes the same before it is saved
    and after it is loaded.

    Args:
        tensors: name -> tensor.
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        header = f"{len(name)}:{name}|{str(tensor.dtype).removeprefix('torch.')}|"
        header += ",".join(str(d) for d in tensor.shape) + "|"
        digest.update(header.encode("utf-8"))
        if tensor.numel():
            digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def normalization_problem(
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    bands: int,
    names: Sequence[str] = (),
) -> str | None:
    """What makes per-band normalisation statistics unusable, or None when they are fine.

    Usable means one mean and one standard deviation per band, every value finite, every
    standard deviation above zero. Absent statistics (None) are not checked.

    Args:
        mean: per-band mean, or None.
        std: per-band standard deviation, or None.
        bands: the number of input bands.
        names: band names, shown next to the band number when given.
    """
    for what, values in (("mean", mean), ("std", std)):
        if values is None:
            continue
        if len(values) != bands:
            return f"normalisation has {len(values)} {what} value(s) for {bands} band(s)"
        for i, value in enumerate(values):
            name = f" ({names[i]})" if i < len(names) and names[i] != f"band {i + 1}" else ""
            if not math.isfinite(value):
                return f"normalisation {what} of band {i + 1}{name} is {value} (must be finite)"
            if what == "std" and value <= 0:
                return f"normalisation std of band {i + 1}{name} is {value} (must be above 0)"
    return None


def check_normalization(
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    bands: int,
    source: str | Path | None,
    context: str = "",
) -> None:
    """Raise a one-line :class:`DataError` naming ``source`` when the statistics are unusable.

    Args:
        mean: per-band mean, or None.
        std: per-band standard deviation, or None.
        bands: the number of input bands.
        source: the file or folder the statistics come from (named first in the message).
        context: appended to the message (e.g. which tiles the statistics were computed from).

    Raises:
        DataError: see :func:`normalization_problem`.
    """
    problem = normalization_problem(mean, std, bands)
    if problem is not None:
        raise DataError(source, problem + (f"; {context}" if context else ""))


__all__ = [
    "CHECKSUM_ALGORITHM",
    "check_normalization",
    "normalization_problem",
    "tensor_checksum",
]
