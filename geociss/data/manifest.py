"""The catalogue's cached manifest: scanned tile records kept between runs.

A manifest is a JSON file in ``$GEOCISS_CACHE/manifests/`` (default ``~/.cache/geociss``), named
by the SHA-256 of everything that decides what a scan computes (absolute folders, globs, band
selection, class schema, chip size, vector-label options, geociss version). It stores every
:class:`TileRecord` with the size and ``mtime_ns`` of its image and label files. A later scan
stats the files and re-reads only the pairs whose files changed or are new; removed files drop
out. A manifest that cannot be parsed is ignored (the folder is rescanned); a cache folder that
cannot be written is reported once with a warning and the scan goes on uncached.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from geociss import __version__
from geociss.data.archives import fingerprint
from geociss.data.records import BandStats, Region, TileRecord, Window
from geociss.errors import DataError
from geociss.io import atomic_write_text

FORMAT = "geociss-manifest"
VERSION = 1

_warned: set[str] = set()


def cache_dir() -> Path:
    """The cache folder: ``$GEOCISS_CACHE`` or ``~/.cache/geociss``."""
    return Path(os.environ.get("GEOCISS_CACHE") or "~/.cache/geociss").expanduser()


def file_fingerprint(path: Path) -> list[int]:
    """``[size, mtime_ns]`` of a file (of its archive for a ``/vsizip/`` path, see archives)."""
    return fingerprint(path)


def manifest_key(parts: dict[str, Any]) -> str:
    """SHA-256 of the scan parameters (plus the geociss version), as hex."""
    blob = json.dumps({**parts, "geociss": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def record_to_dict(rec: TileRecord) -> dict[str, Any]:
    """A JSON-ready mapping of a tile record (numpy arrays as lists)."""
    s = rec.stats
    return {
        "stem": rec.stem, "image": str(rec.image),
        "label": None if rec.label is None else str(rec.label),
        "label_encoded": rec.label_encoded, "width": rec.width, "height": rec.height,
        "bands": rec.bands, "dtype": rec.dtype, "crs": rec.crs, "transform": list(rec.transform),
        "nodata": rec.nodata, "has_mask": rec.has_mask, "hist": rec.hist.tolist(),
        "ignored": rec.ignored,
        "stats": {"count": s.count, "sum": s.sum, "sumsq": s.sumsq, "min": s.min, "max": s.max},
        "fingerprint": rec.fingerprint, "band_indexes": list(rec.band_indexes),
        "regions": [
            [w.row, w.col, w.height, w.width, r.ignored, r.hist.tolist()]
            for r in rec.regions
            for w in [r.window]
        ],
    }


def record_from_dict(d: dict[str, Any]) -> TileRecord:
    """Rebuild a tile record written by :func:`record_to_dict` (regions carry tile index 0)."""
    s = d["stats"]
    return TileRecord(
        stem=str(d["stem"]), image=Path(d["image"]),
        label=None if d["label"] is None else Path(d["label"]),
        label_encoded=bool(d["label_encoded"]), width=int(d["width"]), height=int(d["height"]),
        bands=int(d["bands"]), dtype=str(d["dtype"]), crs=d["crs"],
        transform=tuple(float(v) for v in d["transform"]),  # type: ignore[arg-type]
        nodata=None if d["nodata"] is None else float(d["nodata"]), has_mask=bool(d["has_mask"]),
        hist=np.asarray(d["hist"], dtype=np.int64), ignored=int(d["ignored"]),
        stats=BandStats(
            int(s["count"]), tuple(s["sum"]), tuple(s["sumsq"]), tuple(s["min"]), tuple(s["max"])
        ),
        fingerprint={k: list(v) for k, v in d["fingerprint"].items()},
        regions=[
            Region(Window(0, int(r), int(c), int(h), int(w)), np.asarray(hist, np.int64), int(ign))
            for r, c, h, w, ign, hist in d["regions"]
        ],
        band_indexes=tuple(int(b) for b in d["band_indexes"]),
    )


class Manifest:
    """The cached records of one scan configuration.

    Args:
        path: the manifest file, or None when caching is off.
        records: cached records by absolute image path.
    """

    def __init__(self, path: Path | None, records: dict[str, TileRecord] | None = None) -> None:
        self.path = path
        self.records = records or {}

    @classmethod
    def load(cls, key: str) -> Manifest:
        """Read the manifest of ``key``; a missing or unreadable one gives an empty manifest."""
        path = cache_dir() / "manifests" / f"{key}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT or data.get("version") != VERSION:
                return cls(path)
            records = [record_from_dict(t) for t in data["tiles"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return cls(path)
        return cls(path, {str(r.image): r for r in records})

    def reusable(
        self, image: Path, label: Path | None, fingerprint: dict[str, list[int]]
    ) -> TileRecord | None:
        """The cached record of ``image`` when its files are unchanged, else None.

        Args:
            image: absolute image path.
            label: the label raster the record must point to, or None to accept any existing
                label file (rasterised vector labels, whose name the cache decides).
            fingerprint: current ``{"image": [size, mtime_ns], "label": [...]}``.
        """
        rec = self.records.get(str(image))
        if rec is None or rec.fingerprint != fingerprint:
            return None
        if label is not None and rec.label != label:
            return None
        if label is None and rec.label is not None and not rec.label.is_file():
            return None
        return rec

    def save(self, records: Iterable[TileRecord]) -> None:
        """Write the records atomically; an unwritable cache warns once and is skipped."""
        if self.path is None:
            return
        data = {
            "format": FORMAT, "version": VERSION, "geociss": __version__,
            "tiles": [record_to_dict(r) for r in records],
        }
        try:
            atomic_write_text(self.path, json.dumps(data, separators=(",", ":")))
        except (OSError, DataError) as err:  # DataError: an ancestor of the cache is a file
            folder = str(self.path.parent)
            if folder not in _warned:
                _warned.add(folder)
                reason = getattr(err, "strerror", None) or err
                warnings.warn(
                    f"geociss: cannot write the scan cache in {folder} ({reason}); "
                    "scans will not be cached (set GEOCISS_CACHE to a writable folder)",
                    stacklevel=3,
                )
