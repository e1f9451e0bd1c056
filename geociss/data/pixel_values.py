"""Pixel value tests of the window reader: nodata pixels, labels that are class ids already.

Split from :mod:`geociss.data.reader`, which calls them on every window it reads.
"""

from __future__ import annotations

import numpy as np

from geociss.data.classes import IGNORE_INDEX, ClassSchema
from geociss.errors import UnknownLabelValueError


def nodata_maps_to_ignore(schema: ClassSchema, nodata: float, bands: int, encoded: bool) -> bool:
    """True when label pixels equal to ``nodata`` become 255 anyway (no need to look for them)."""
    if np.isnan(nodata) or nodata != int(nodata) or not 0 <= nodata <= 65535:
        return False
    if encoded:
        return int(nodata) == IGNORE_INDEX
    if bands == 3 and nodata > 255:
        return False
    probe = np.full((bands, 1, 1), int(nodata), np.uint16 if bands == 1 else np.uint8)
    try:
        return bool((schema.encode(probe if bands > 1 else probe[0]) == IGNORE_INDEX).all())
    except UnknownLabelValueError:
        return False


def is_identity(schema: ClassSchema) -> bool:
    """True when raw index values 0..N-1 are class ids 0..N-1 and 255 is ignore."""
    if schema.encoding != "index" or schema.num_classes >= IGNORE_INDEX:
        return False
    probe = np.array([*range(schema.num_classes), IGNORE_INDEX], np.uint8)[None]
    try:
        return bool((schema.encode(probe) == probe).all())
    except UnknownLabelValueError:
        return False


def ids_only(labels: np.ndarray, classes: int) -> bool:
    """True when every value is a class id below ``classes`` or 255 (uint8 labels)."""
    top = int(labels.max())
    if top < classes:
        return True
    return top == IGNORE_INDEX and not ((labels >= classes) & (labels != IGNORE_INDEX)).any()


def is_nodata(raw: np.ndarray, nodata: float) -> np.ndarray | None:
    """Pixels whose every band equals ``nodata`` (None when the dtype cannot hold it)."""
    if np.isnan(nodata):
        return np.isnan(raw).all(axis=0) if raw.dtype.kind == "f" else None
    if raw.dtype.kind in "iu":
        info = np.iinfo(raw.dtype)
        if nodata != int(nodata) or not info.min <= nodata <= info.max:
            return None
    return (raw == raw.dtype.type(nodata)).all(axis=0)


__all__ = ["ids_only", "is_identity", "is_nodata", "nodata_maps_to_ignore"]
