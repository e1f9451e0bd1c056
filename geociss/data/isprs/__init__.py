"""ISPRS Potsdam and Vaihingen read from their official distributions, with no conversion step.

Point a config at the folder holding the downloaded archives (or what they extract to)::

    data:
      dataset: potsdam        # or vaihingen
      root: data/potsdam      # 2_Ortho_RGB.zip (or 3_/4_Ortho_*.zip), 5_Labels_all.zip
      modality: rgb           # rgb | irrg | rgbir (Vaihingen: irrg)
      split: official         # train on the official training tiles, validate on the test tiles
      schema: isprs-rgb       # label colours -> IDEC class order; an unknown colour is an error

or check it with ``geociss scan data/potsdam --dataset potsdam --modality irrg --split test``.

Modules: :mod:`~geociss.data.isprs.spec` (the declarative dataset description and the
:data:`DATASETS` registry), :mod:`~geociss.data.isprs.potsdam` and
:mod:`~geociss.data.isprs.vaihingen` (file names, official splits, known bad tiles),
:mod:`~geociss.data.isprs.locate` (zip or extracted folder), :mod:`~geociss.data.isprs.resolve`
(pairs of a split) and :mod:`~geociss.data.isprs.source` (catalogues). The exact archive and file
names are listed in ``data/README.md``.
"""

from __future__ import annotations

from geociss.data.isprs import potsdam, vaihingen
from geociss.data.isprs.resolve import OfficialPairs, official_pairs, tile_notes
from geociss.data.isprs.source import check_source, experiment_catalogs, official_catalog
from geociss.data.isprs.spec import DATASETS, Component, OfficialDataset, get_dataset

__all__ = [
    "DATASETS",
    "Component",
    "OfficialDataset",
    "OfficialPairs",
    "check_source",
    "experiment_catalogs",
    "get_dataset",
    "official_catalog",
    "official_pairs",
    "potsdam",
    "tile_notes",
    "vaihingen",
]
