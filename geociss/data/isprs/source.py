"""Catalogues of an official ISPRS distribution, for ``geociss scan`` and experiment configs.

:func:`official_catalog` resolves one split (:func:`~geociss.data.isprs.resolve.official_pairs`)
and hands the pairs to the ordinary catalogue (:meth:`Catalog.from_pairs`): validation, class
histograms, chips, the manifest cache, and later the window sampler, all work as for a folder.
Rasters inside archives are read in place through GDAL ``/vsizip/`` paths; georeferencing is used
when the files carry a CRS, pixel space otherwise, as for any catalogue tile.

:func:`experiment_catalogs` does this for a :class:`~geociss.config.experiment.DataConfig` with
``data.dataset`` set: the official training tiles (chipped) and, with ``split: official``, the
official test tiles for validation and evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from geociss.data.catalog import Catalog
from geociss.data.classes import ClassSchema
from geociss.data.isprs.resolve import OfficialPairs, Split, excluded_tiles, official_pairs
from geociss.data.isprs.spec import OfficialDataset, get_dataset
from geociss.errors import DataError, UnknownLabelValueError

if TYPE_CHECKING:
    from geociss.config.experiment import DataConfig


def check_source(name: str, modality: str | None, exclude: Iterable[str | int] | None) -> None:
    """Check a dataset name, modality and excluded tile ids without touching any file.

    Raises:
        ConfigError: one of them is unknown (the message lists the choices).
    """
    ds = get_dataset(name)
    ds.images(modality)
    excluded_tiles(ds, exclude)


def _bad_tile_hint(err: UnknownLabelValueError, ds: OfficialDataset) -> DataError:
    """The error of a label file with unknown colours, with the reason if it is a known bad tile."""
    name = "" if err.path is None else err.path.name.lower()
    for tile, reason in ds.bad_tiles.items():
        if name in (ds.labels.file_name(tile).lower(), ds.eroded.file_name(tile).lower()):
            shown = ", ".join(err.values[:4]) + (" ..." if len(err.values) > 4 else "")
            return DataError(
                err.path,
                f"unknown label colour(s) {shown}: {reason}; leave tile {tile} out "
                "(data.exclude_tiles, the default) or replace the file",
            )
    return err


def official_catalog(
    name: str, root: Path, schema: ClassSchema, split: Split = "train", modality: str | None = None,
    *, labels: bool = True, eroded: bool = False, exclude: Iterable[str | int] | None = None,
    bands: Sequence[int] | None = None, chip_size: int | None = None, cache: bool = True,
    progress: bool = False, nodata: float | None = None,
) -> tuple[Catalog, OfficialPairs]:
    """The catalogue of one split of an official distribution under ``root``.

    Args:
        name: registered dataset (``potsdam``, ``vaihingen``).
        root: folder of the official archives (or their extracted folders).
        schema: class schema of the label colours (``isprs-rgb``).
        split: ``train``, ``test`` or ``all``.
        modality: image product (None: the dataset's default).
        labels: read the labels (False: images only).
        eroded: labels with eroded class boundaries.
        exclude: tile ids to leave out (None: the known bad tiles).
        bands: 1-based image bands to use (default: all bands of the modality).
        chip_size: chip regions of this size (step data selection).
        cache: use the manifest cache.
        progress: show a progress bar while rasters are read.
        nodata: nodata value of images whose file declares none (``data.nodata``).

    Returns:
        The catalogue, and the resolved pairs (with notes on left-out tiles).

    Raises:
        ConfigError: unknown dataset, modality, split or tile id.
        DataError: missing archive or raster, unreadable raster, unknown label colour.
    """
    found = official_pairs(
        name, root, split, modality, labels=labels, eroded=eroded, exclude=exclude
    )
    try:
        catalog = Catalog.from_pairs(
            found.pairs, schema, found.images_from, labels_source=found.labels_from, bands=bands,
            expected_bands=None if bands else found.images.bands, chip_size=chip_size,
            cache=cache, progress=progress, nodata=nodata,
        )
    except UnknownLabelValueError as err:
        raise _bad_tile_hint(err, found.dataset) from None
    return catalog, found


def experiment_catalogs(
    cfg: DataConfig, schema: ClassSchema, progress: bool = False
) -> tuple[Catalog, Catalog | None]:
    """Training and validation catalogues of a data config with ``data.dataset`` set.

    Returns:
        The training catalogue (official training tiles, chipped with ``data.chip_size``) and,
        with ``data.split: official``, the test tiles (eroded labels with ``data.eroded``);
        None with ``train-holdout`` (the caller holds out ``data.val_fraction`` of the tiles).
    """
    assert cfg.dataset is not None and cfg.root is not None
    common = {"modality": cfg.modality, "exclude": cfg.exclude_tiles, "bands": cfg.bands,
              "progress": progress, "nodata": cfg.nodata}
    train, _ = official_catalog(
        cfg.dataset, cfg.root, schema, "train", chip_size=cfg.chip_size, **common  # type: ignore[arg-type]
    )
    if cfg.split != "official":
        return train, None
    val, _ = official_catalog(
        cfg.dataset, cfg.root, schema, "test", eroded=cfg.eroded, **common  # type: ignore[arg-type]
    )
    return train, val
