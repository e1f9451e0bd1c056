"""Declarative description of an official ISPRS distribution: archives, file names, splits.

A dataset is data, not code: :class:`OfficialDataset` lists, for each image modality and for
the labels, which archive holds the rasters and the pattern of their paths inside it
(:class:`Component`), plus the official train/test tile ids and the tiles known to be bad. The
datasets register themselves in :data:`DATASETS` (``potsdam``, ``vaihingen``); adding one means
one more module with one more :class:`OfficialDataset`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from geociss.errors import ConfigError
from geociss.registry import Registry


@dataclass(frozen=True)
class Component:
    """One kind of raster of a distribution (e.g. the RGB images) and where it is found.

    Attributes:
        archive: file name of the official zip archive that holds the rasters.
        pattern: regular expression searched in a raster's posix path (inside the archive, or
            relative to the dataset root); its named group ``tile`` is the tile id. Matching is
            case-insensitive, and ``.tif`` also matches ``.tiff``.
        example: the file name of tile ``<tile>`` as shown in messages.
        exclude_dirs: folder names a match must not lie in (other rasters of the same name).
        bands: image bands (labels: None).
    """

    archive: str
    pattern: str
    example: str
    exclude_dirs: tuple[str, ...] = ()
    bands: int | None = None

    @cached_property
    def regex(self) -> re.Pattern[str]:
        """The compiled :attr:`pattern`."""
        return re.compile(self.pattern, re.IGNORECASE)

    @property
    def folder(self) -> str:
        """Name of the folder the archive extracts to (its name without ``.zip``)."""
        return self.archive.removesuffix(".zip")

    def tile_id(self, path: str) -> str | None:
        """Tile id of a raster's posix path, or None when the path is not one of ours."""
        m = self.regex.search(path)
        if m is None:
            return None
        parents = path.split("/")[:-1]
        if any(p.lower() in self.exclude_dirs for p in parents):
            return None
        return m["tile"]

    def file_name(self, tile: str) -> str:
        """The expected file name of a tile (for messages)."""
        return self.example.replace("<tile>", tile)


@dataclass(frozen=True)
class OfficialDataset:
    """An ISPRS 2D semantic labelling benchmark as distributed.

    Attributes:
        name: registry key (``potsdam``).
        title: display name (``ISPRS Potsdam``).
        modalities: image components by modality name; the first is the default.
        labels: the full reference labels.
        eroded: the labels with eroded class boundaries (official boundary-tolerant scoring).
        train: official training tile ids.
        test: official test tile ids.
        bad_tiles: tile id -> why it is left out by default.
        stem: catalogue name of a tile, ``{tile}`` replaced by the tile id.
        schema: class schema preset of the label colours.
        gsd: ground sampling distance in metres (documentation).
        source: where the split comes from (documentation).
    """

    name: str
    title: str
    modalities: dict[str, Component]
    labels: Component
    eroded: Component
    train: tuple[str, ...]
    test: tuple[str, ...]
    bad_tiles: dict[str, str] = field(default_factory=dict)
    stem: str = "{tile}"
    schema: str = "isprs-rgb"
    gsd: float = 0.0
    source: str = ""

    @property
    def default_modality(self) -> str:
        """The modality used when none is given."""
        return next(iter(self.modalities))

    def images(self, modality: str | None) -> Component:
        """The image component of a modality (None: the default).

        Raises:
            ConfigError: the dataset has no such modality.
        """
        key = (modality or self.default_modality).lower()
        if key not in self.modalities:
            raise ConfigError(
                f"{self.title} has no modality {modality!r}; choose one of: "
                f"{', '.join(self.modalities)}"
            )
        return self.modalities[key]

    def tile_stem(self, tile: str) -> str:
        """The catalogue stem of a tile (``top_potsdam_2_10``)."""
        return self.stem.format(tile=tile)

    def split(self, name: str) -> tuple[str, ...]:
        """Tile ids of ``train``, ``test`` or ``all`` (train then test).

        Raises:
            ConfigError: an unknown split name.
        """
        splits = {"train": self.train, "test": self.test, "all": self.train + self.test}
        if name not in splits:
            raise ConfigError(f"unknown split {name!r}; choose one of: {', '.join(splits)}")
        return splits[name]


DATASETS: Registry[OfficialDataset] = Registry("ISPRS dataset")
"""The official distributions geociss reads, by name (filled by the dataset modules)."""


def get_dataset(name: str) -> OfficialDataset:
    """The registered dataset ``name``.

    Raises:
        ConfigError: no such dataset (the message lists the registered ones).
    """
    try:
        return DATASETS.get(name)
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from None
