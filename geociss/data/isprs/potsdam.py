"""ISPRS Potsdam (2D semantic labelling contest), as distributed by ISPRS.

38 true orthophoto tiles of 6000 x 6000 pixels at 5 cm, in three image products, each its own
archive (the user picks one with ``data.modality``):

============  =========================  ===================================  =====
modality      archive                    file of tile 2_10                    bands
============  =========================  ===================================  =====
``rgb``       ``2_Ortho_RGB.zip``        ``top_potsdam_2_10_RGB.tif``         R, G, B
``irrg``      ``3_Ortho_IRRG.zip``       ``top_potsdam_2_10_IRRG.tif``        IR, R, G
``rgbir``     ``4_Ortho_RGBIR.zip``      ``top_potsdam_2_10_RGBIR.tif``       R, G, B, IR
============  =========================  ===================================  =====

Labels: ``5_Labels_all.zip`` (``top_potsdam_2_10_label.tif``, colour-coded, all 38 tiles) and,
for the boundary-tolerant scoring, ``5_Labels_all_noBoundary.zip``
(``top_potsdam_2_10_label_noBoundary.tif``, class boundaries eroded to black = ignored).

Split: the official ISPRS split (ISPRS 2D Semantic Labeling Contest - Potsdam,
https://www.isprs.org/education/benchmarks/UrbanSemLab/2d-sem-label-potsdam.aspx: reference
data of 24 tiles released for training, 14 tiles withheld for testing), the same ids as
torchgeo's ``Potsdam2D`` and mmsegmentation's Potsdam converter.

Known bad tile: ``top_potsdam_4_12_label.tif`` in ``5_Labels_all.zip`` is an overlay of the
image rather than a label map (torchgeo issue #1727); read strictly, its colours
are unknown. Tile ``4_12`` is therefore left out by default (``data.exclude_tiles``), which also
gives the 23 training tiles of IDEC's Potsdam lists (2300 patches of 600², 100 per tile). Put a
correct label file
in its place (e.g. from ``5_Labels_for_participants.zip``) and set ``exclude_tiles: []`` to use it.
"""

from __future__ import annotations

from geociss.data.isprs.spec import DATASETS, Component, OfficialDataset

_TILE = r"(?:^|/)top_potsdam_(?P<tile>\d+_\d+)"

TRAIN = (
    "2_10", "2_11", "2_12", "3_10", "3_11", "3_12", "4_10", "4_11", "4_12", "5_10", "5_11", "5_12",
    "6_7", "6_8", "6_9", "6_10", "6_11", "6_12", "7_7", "7_8", "7_9", "7_10", "7_11", "7_12",
)
"""The 24 official training tiles."""

TEST = (
    "2_13", "2_14", "3_13", "3_14", "4_13", "4_14", "4_15", "5_13", "5_14", "5_15", "6_13",
    "6_14", "6_15", "7_13",
)
"""The 14 official test tiles."""

POTSDAM = DATASETS.register("potsdam")(
    OfficialDataset(
        name="potsdam",
        title="ISPRS Potsdam",
        modalities={
            "rgb": Component(
                "2_Ortho_RGB.zip", _TILE + r"_RGB\.tiff?$", "top_potsdam_<tile>_RGB.tif", bands=3
            ),
            "irrg": Component(
                "3_Ortho_IRRG.zip", _TILE + r"_IRRG\.tiff?$", "top_potsdam_<tile>_IRRG.tif",
                bands=3,
            ),
            "rgbir": Component(
                "4_Ortho_RGBIR.zip", _TILE + r"_RGBIR\.tiff?$", "top_potsdam_<tile>_RGBIR.tif",
                bands=4,
            ),
        },
        labels=Component(
            "5_Labels_all.zip", _TILE + r"_label\.tiff?$", "top_potsdam_<tile>_label.tif"
        ),
        eroded=Component(
            "5_Labels_all_noBoundary.zip",
            _TILE + r"_label_noBoundary\.tiff?$",
            "top_potsdam_<tile>_label_noBoundary.tif",
        ),
        train=TRAIN,
        test=TEST,
        bad_tiles={
            "4_12": "its label file in 5_Labels_all.zip is an overlay of the image, not a label "
            "map (torchgeo issue #1727)",
        },
        stem="top_potsdam_{tile}",
        gsd=0.05,
        source="ISPRS 2D Semantic Labeling Contest - Potsdam",
    )
)
"""ISPRS Potsdam."""
