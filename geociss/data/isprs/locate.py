"""Find the rasters of one :class:`Component` under a dataset root: in its zip, or extracted.

Where a component's rasters are looked for, first match wins:

1. the official archive, ``<root>/<archive>.zip`` (read in place through ``/vsizip/``);
2. the folder it extracts to, ``<root>/<archive>/``, searched recursively;
3. anywhere under ``<root>`` (archives that unpack without a top folder, such as the label
   archives, leave their files there), zip files left aside.

Inside an archive or folder, rasters are matched by the component's file-name pattern, never by
a fixed inner path, so extra nesting levels (``2_Ortho_RGB/2_Ortho_RGB/...``) are fine.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from geociss.data.archives import list_members, member_path
from geociss.data.isprs.spec import Component
from geociss.errors import DataError


@dataclass(frozen=True)
class Located:
    """The rasters of one component.

    Attributes:
        files: raster path by tile id (``/vsizip/`` paths for rasters inside an archive).
        where: the archive or folder they were found in (named in messages).
    """

    files: dict[str, Path]
    where: Path


def _index(items: Iterable[tuple[str, Path]], component: Component) -> dict[str, Path]:
    """Raster path by tile id of ``(posix path, raster path)`` items; duplicates are errors."""
    found: dict[str, Path] = {}
    for rel, path in items:
        tile = component.tile_id(rel)
        if tile is None:
            continue
        if tile in found:
            raise DataError(path, f"is a second raster of tile {tile} (first: {found[tile]})")
        found[tile] = path
    return found


def _walk(folder: Path, root: Path) -> Iterable[tuple[str, Path]]:
    """``(path relative to root, path)`` of the files under ``folder``, zips left aside."""
    for top, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(".zip"):
                continue
            path = Path(top) / name
            yield path.relative_to(root).as_posix(), path


def locate(root: Path, component: Component, what: str) -> Located:
    """The rasters of ``component`` under ``root`` (see the module docstring for the order).

    Args:
        root: the dataset root folder.
        component: what to look for.
        what: a few words naming the component in messages (``ISPRS Potsdam rgb images``).

    Raises:
        DataError: the root is missing, an archive is unreadable, two rasters claim one tile,
            or nothing was found (the message says where it looked).
    """
    root = Path(root).absolute()
    if not root.is_dir():
        raise DataError(root, "dataset root folder not found" if not root.exists() else
                        "dataset root is not a folder")
    archive = root / component.archive
    if archive.is_file():
        members = list_members(archive)
        files = _index(((m, member_path(archive, m)) for m in members), component)
        if not files:
            raise DataError(
                archive, f"holds no {what} (no file named like {component.file_name('<tile>')})"
            )
        return Located(files, archive)
    folder = root / component.folder
    if folder.is_dir():
        files = _index(_walk(folder, root), component)
        if files:
            return Located(files, folder)
    files = _index(_walk(root, root), component)
    if files:
        return Located(files, root)
    raise DataError(
        root,
        f"no {what}: looked for {component.archive}, its extracted folder {component.folder}/ "
        f"and files named like {component.file_name('<tile>')} under this folder",
    )
