"""Find image rasters and pair them with label rasters by name.

A glob such as ``*.tif`` selects files in one folder (not its subfolders). Matching ignores case,
and a pattern ending in ``.tif`` also matches ``.tiff``. The text that the wildcards (``*``,
``?``) match is the pair's key: with the default ``*.tif`` it is the file stem, so
``images/x.tif`` pairs with ``labels/x.tif``. Different globs pair differently named files, e.g.
``top_potsdam_*_RGBIR.tif`` with ``top_potsdam_*_label.tif`` pairs on the ``2_10`` part; both
globs must then have the same number of wildcards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from geociss.errors import ConfigError, DataError


@dataclass(frozen=True)
class Pair:
    """An image and its label raster (None when there are no or vector labels)."""

    stem: str
    image: Path
    label: Path | None


def _compile(glob: str) -> re.Pattern[str]:
    """Regex of a file-name glob with one capturing group per wildcard (case-insensitive)."""
    if "/" in glob or "\\" in glob:
        raise ConfigError(f"glob {glob!r} must match file names only (no folders)")
    out, i = [], 0
    while i < len(glob):
        ch = glob[i]
        if ch == "*":
            out.append("(.*)")
        elif ch == "?":
            out.append("(.)")
        elif ch == "[" and "]" in glob[i + 2 :]:
            end = glob.index("]", i + 2)
            body = glob[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    pattern = "".join(out)
    if glob.lower().endswith(".tif"):
        pattern += "f?"
    return re.compile(pattern, re.IGNORECASE)


def _wildcards(glob: str) -> int:
    return glob.count("*") + glob.count("?")


def match_files(folder: Path, glob: str) -> dict[str, Path]:
    """Files of ``folder`` matching ``glob``, by pair key.

    Raises:
        DataError: the folder is missing, or no file matches, or two files share a key.
    """
    if not folder.is_dir():
        raise DataError(folder, "folder not found" if not folder.exists() else "not a folder")
    regex = _compile(glob)
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        m = regex.fullmatch(path.name)
        if m is None or not path.is_file():
            continue
        key = "_".join(m.groups()) if m.groups() else path.stem
        if key in found:
            raise DataError(path, f"has the same name as {found[key]} (pairing is by name)")
        found[key] = path
    if not found:
        raise DataError(folder, f"no files match {glob!r}")
    return found


def _expected(folder: Path, glob: str, image_glob: str, image: Path) -> Path:
    """The file name a partner of ``image`` should have under ``glob``."""
    if glob == image_glob:
        return folder / image.name
    m = _compile(image_glob).fullmatch(image.name)
    groups = iter(m.groups() if m else ())
    name = re.sub(r"[*?]", lambda _: next(groups, "*"), glob)
    return folder / name


def pair_files(
    images: Path, labels: Path | None, image_glob: str, label_glob: str | None
) -> list[Pair]:
    """Pair every image of ``images`` with the label raster of the same key in ``labels``.

    Args:
        images: image folder.
        labels: label raster folder, or None (no labels).
        image_glob: pattern of image file names.
        label_glob: pattern of label file names (default: ``image_glob``).

    Raises:
        DataError: an image without a label raster or a label raster without an image.
        ConfigError: the globs have different numbers of wildcards, or select the same files.
    """
    label_glob = label_glob or image_glob
    found = match_files(images, image_glob)
    if labels is None:
        return [Pair(k, p, None) for k, p in found.items()]
    if _wildcards(label_glob) != _wildcards(image_glob):
        raise ConfigError(
            f"label glob {label_glob!r} and image glob {image_glob!r} need the same number of "
            "wildcards to pair files"
        )
    if labels.resolve() == images.resolve() and label_glob == image_glob:
        raise ConfigError(
            f"images and labels are both {images}/{image_glob}; give labels another folder or glob"
        )
    label_files = match_files(labels, label_glob)
    for key, path in found.items():
        if key not in label_files:
            expected = _expected(labels, label_glob, image_glob, path)
            raise DataError(path, f"no label raster (expected {expected})")
    for key, path in label_files.items():
        if key not in found:
            expected = _expected(images, image_glob, label_glob, path)
            raise DataError(path, f"no image raster for this label (expected {expected})")
    return [Pair(k, p, label_files[k]) for k, p in found.items()]
