"""Help texts of options that several commands share."""

from __future__ import annotations

NODATA_HELP = (
    "Nodata value of images whose files carry no nodata tag: pixels where every band equals "
    "it are invalid (left out of scores, written as nodata). A nodata tag in the file wins."
)
"""``--nodata`` of ``scan``, ``evaluate``, ``extend`` and ``predict`` (``data.nodata``)."""

MODEL_NODATA_HELP = (
    f"{NODATA_HELP} [default: the training nodata value the model records (geociss info), if any]"
)
"""``--nodata`` of the commands that read a model: ``evaluate``, ``extend`` and ``predict``."""
