"""ISPRS Vaihingen (2D semantic labelling contest), as distributed by ISPRS.

33 true orthophoto tiles ("areas") of varying size (about 2000 x 2500 pixels) at 9 cm, in one
image product, false colour IR-R-G (the only ``data.modality``: ``irrg``):

* images: ``ISPRS_semantic_labeling_Vaihingen.zip``, inner ``top/top_mosaic_09cm_area<N>.tif``
  (the archive also holds ``gts_for_participants/`` and ``dsm/``, which are not read);
* labels: ``ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE.zip``
  (``top_mosaic_09cm_area<N>.tif``, colour-coded, all 33 areas);
* eroded labels (boundary-tolerant scoring):
  ``ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE.zip``
  (``top_mosaic_09cm_area<N>_noBoundary.tif``).

Images and labels have the same file names, so images are only taken from a ``top/`` folder and
labels never from ``top/`` or ``gts_for_participants/``.

Split: the official ISPRS split, as torchgeo's ``Vaihingen2D`` also lists it (16 training areas,
the other 17 for testing; ISPRS 2D Semantic Labeling Contest - Vaihingen,
https://www.isprs.org/education/benchmarks/UrbanSemLab/2d-sem-label-vaihingen.aspx).
Tile ids are the area numbers (``"11"`` for ``area11``).
"""

from __future__ import annotations

from geociss.data.isprs.spec import DATASETS, Component, OfficialDataset

_AREA = r"top_mosaic_09cm_area(?P<tile>\d+)"

TRAIN = ("1", "3", "5", "7", "11", "13", "15", "17", "21", "23", "26", "28", "30", "32", "34", "37")
"""The 16 official training areas."""

TEST = (
    "2", "4", "6", "8", "10", "12", "14", "16", "20", "22", "24", "27", "29", "31", "33", "35",
    "38",
)
"""The 17 official test areas."""

VAIHINGEN = DATASETS.register("vaihingen")(
    OfficialDataset(
        name="vaihingen",
        title="ISPRS Vaihingen",
        modalities={
            "irrg": Component(
                "ISPRS_semantic_labeling_Vaihingen.zip",
                r"(?:^|/)top/" + _AREA + r"\.tiff?$",
                "top/top_mosaic_09cm_area<tile>.tif",
                bands=3,
            ),
        },
        labels=Component(
            "ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE.zip",
            r"(?:^|/)" + _AREA + r"\.tiff?$",
            "top_mosaic_09cm_area<tile>.tif",
            exclude_dirs=("top", "gts_for_participants"),
        ),
        eroded=Component(
            "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE.zip",
            r"(?:^|/)" + _AREA + r"_noBoundary\.tiff?$",
            "top_mosaic_09cm_area<tile>_noBoundary.tif",
            exclude_dirs=("top", "gts_for_participants"),
        ),
        train=TRAIN,
        test=TEST,
        stem="top_mosaic_09cm_area{tile}",
        gsd=0.09,
        source="ISPRS 2D Semantic Labeling Contest - Vaihingen",
    )
)
"""ISPRS Vaihingen."""
