"""Resolve an official ISPRS distribution into the image/label pairs of one split.

:func:`official_pairs` finds the image archive of the chosen modality and the label archive
under the dataset root (:mod:`geociss.data.isprs.locate`), and pairs them by tile id for every
tile of the official split, less the excluded tiles. Every tile of the split must be there: a
missing raster is a one-line error naming the file and where it was looked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from geociss.data.isprs.locate import locate
from geociss.data.isprs.spec import Component, OfficialDataset, get_dataset
from geociss.data.pairing import Pair
from geociss.errors import ConfigError, DataError

Split = Literal["train", "test", "all"]


@dataclass(frozen=True)
class OfficialPairs:
    """The pairs of one split of an official distribution, and where they came from.

    Attributes:
        dataset: the dataset description.
        split: ``train``, ``test`` or ``all``.
        modality: the image modality.
        images: the image component read.
        pairs: one pair per tile, in official order; stems like ``top_potsdam_2_10``.
        images_from: the archive or folder the images were found in.
        labels_from: the archive or folder the labels were found in, or None (no labels).
        notes: tiles of the split that were left out, and why.
    """

    dataset: OfficialDataset
    split: str
    modality: str
    images: Component
    pairs: list[Pair]
    images_from: Path
    labels_from: Path | None
    notes: list[str] = field(default_factory=list)


def excluded_tiles(dataset: OfficialDataset, exclude: Iterable[str | int] | None) -> set[str]:
    """Tile ids to leave out: ``exclude``, or the dataset's known bad tiles when None.

    Raises:
        ConfigError: an id that is not a tile of the dataset.
    """
    if exclude is None:
        return set(dataset.bad_tiles)
    exclude = list(exclude)
    out = {str(t) for t in exclude}
    unknown = sorted(out - set(dataset.train) - set(dataset.test))
    if unknown:
        raise ConfigError(
            f"data.exclude_tiles: {', '.join(unknown)} is not a tile of {dataset.title} "
            f"(ids look like {dataset.train[0]}){_number_hint(exclude, dataset)}"
        )
    return out


def _number_hint(exclude: list[str | int], dataset: OfficialDataset) -> str:
    """Why unknown integer tile ids may be tile ids that YAML read as numbers, or "".

    YAML 1.1 (PyYAML) reads the unquoted ``4_12`` as the integer 412: underscores are digit
    separators there. An integer that is no tile id, while exactly one tile id of the dataset
    gives it without its underscores, is named with that tile id.
    """
    tiles = [t for t in (*dataset.train, *dataset.test) if "_" in t]
    known = {*dataset.train, *dataset.test}
    found: dict[int, str] = {}
    for value in exclude:
        if isinstance(value, bool) or not isinstance(value, int) or str(value) in known:
            continue
        matches = [t for t in tiles if t.replace("_", "") == str(value)]
        if len(matches) == 1:
            found[value] = matches[0]
    if not found:
        return ""
    found = dict(sorted(found.items(), key=lambda item: str(item[0])))
    if len(found) == 1:
        ((value, tile),) = found.items()
        return f"; {value} looks like {tile} read by YAML as a number; quote it: '{tile}'"
    numbers, ids = ", ".join(map(str, found)), ", ".join(found.values())
    quoted = ", ".join(f"'{t}'" for t in found.values())
    return f"; {numbers} look like {ids} read by YAML as numbers; quote them: [{quoted}]"


def tile_notes(
    dataset: OfficialDataset, split: Split, exclude: Iterable[str | int] | None
) -> list[str]:
    """What happens to the split's known bad tiles and excluded tiles, one line each.

    A tile left out says why; a known bad tile that an explicit ``exclude`` list brings back
    says so too (the list replaces the default one, it does not add to it).
    """
    skip = excluded_tiles(dataset, exclude)
    wanted = dataset.split(split)
    notes = [
        f"{dataset.title} tile {t} left out: {dataset.bad_tiles.get(t, 'in data.exclude_tiles')}"
        + ("; set data.exclude_tiles: [] to use it" if t in dataset.bad_tiles else "")
        for t in wanted if t in skip
    ]
    if exclude is not None:
        notes += [
            f"{dataset.title} tile {t} is included although {reason}: an explicit tile list "
            f"(data.exclude_tiles, --exclude-tiles) replaces the default one, so list {t} "
            "too to leave it out"
            for t, reason in dataset.bad_tiles.items() if t in wanted and t not in skip
        ]
    return notes


def official_pairs(
    name: str, root: Path, split: Split = "train", modality: str | None = None, *,
    labels: bool = True, eroded: bool = False, exclude: Iterable[str | int] | None = None,
) -> OfficialPairs:
    """Image/label pairs of one split of an official ISPRS distribution under ``root``.

    Args:
        name: registered dataset (``potsdam``, ``vaihingen``).
        root: folder holding the official zip archives or their extracted folders.
        split: ``train``, ``test`` or ``all`` (the official tile lists).
        modality: image product (Potsdam ``rgb``, ``irrg``, ``rgbir``; Vaihingen ``irrg``);
            None for the dataset's default (the first listed).
        labels: pair with label rasters (False: images only).
        eroded: use the labels with eroded class boundaries (``noBoundary``).
        exclude: tile ids to leave out; None leaves out the dataset's known bad tiles.

    Raises:
        ConfigError: unknown dataset, modality, split or tile id.
        DataError: a missing archive or raster (the message says where it looked).
    """
    ds = get_dataset(name)
    images = ds.images(modality)
    modality = (modality or ds.default_modality).lower()
    wanted = ds.split(split)
    exclude = None if exclude is None else list(exclude)
    skip = excluded_tiles(ds, exclude)
    tiles = [t for t in wanted if t not in skip]
    if not tiles:
        raise ConfigError(f"every tile of the {split} split of {ds.title} is excluded")
    found = locate(root, images, f"{ds.title} {modality} images")
    label_part = ds.eroded if eroded else ds.labels
    kind = "eroded labels" if eroded else "labels"
    found_labels = locate(root, label_part, f"{ds.title} {kind}") if labels else None
    pairs = []
    for tile in tiles:
        image = _need(found.files, found.where, images, ds, tile, split)
        label = None
        if found_labels is not None:
            label = _need(found_labels.files, found_labels.where, label_part, ds, tile, split)
        pairs.append(Pair(ds.tile_stem(tile), image, label))
    return OfficialPairs(
        ds, split, modality, images, pairs, found.where,
        None if found_labels is None else found_labels.where, tile_notes(ds, split, exclude),
    )


def _need(
    files: dict[str, Path], where: Path, part: Component, ds: OfficialDataset, tile: str,
    split: str,
) -> Path:
    """The raster of ``tile``, or a one-line error naming the file and where it was looked for."""
    path = files.get(tile)
    if path is None:
        raise DataError(
            where, f"no {part.file_name(tile)} ({ds.title} tile {tile}, official {split} split)"
        )
    return path
