"""Writers of fake ISPRS distributions: tiny rasters with the official archive and file names."""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from geociss.data.classes import ClassSchema
from geociss.data.isprs import get_dataset

from fakes import write_tif

PALETTE = np.array(ClassSchema.preset("isprs-rgb").colors, dtype=np.uint8)  # (6, 3)
POTSDAM_BANDS = {"rgb": 3, "irrg": 3, "rgbir": 4}


def colour_label(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(class ids (H, W), colour label (3, H, W)) with every class in 8-px blocks."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 6, (size // 8 + 1, size // 8 + 1))
    blocks.flat[:6] = np.arange(6)
    ids = np.kron(blocks, np.ones((8, 8), np.int64))[:size, :size]
    return ids.astype(np.uint8), PALETTE[ids].transpose(2, 0, 1).copy()


def all_tiles(name: str) -> tuple[str, ...]:
    ds = get_dataset(name)
    return ds.train + ds.test


def others(name: str, keep: Iterable[str]) -> list[str]:
    """Every tile id of the dataset except ``keep`` (for data.exclude_tiles)."""
    keep = set(keep)
    return [t for t in all_tiles(name) if t not in keep]


def _write(files: dict[str, dict[str, np.ndarray]], root: Path, zipped: bool, crs: str | None,
           folder_prefix: dict[str, str]) -> None:
    """Write ``{archive: {inner path: array}}`` as zip archives or extracted folders."""
    staging = root / "_staging"
    for archive, members in files.items():
        prefix = folder_prefix.get(archive, "")
        for inner, array in members.items():
            target = (staging / archive if zipped else root / archive.removesuffix(".zip"))
            write_tif(target / prefix / inner, array, crs=crs, gsd=0.05)
        if zipped:
            with zipfile.ZipFile(root / archive, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in sorted((staging / archive).rglob("*.tif")):
                    zf.write(path, path.relative_to(staging / archive).as_posix())
    if zipped:
        import shutil

        shutil.rmtree(staging)


def write_potsdam(root: Path, tiles: Iterable[str] = ("2_10", "2_11", "2_13"), *,
                  zipped: bool = True, modalities: Iterable[str] = ("rgb", "irrg", "rgbir"),
                  size: int = 64, crs: str | None = "EPSG:32633", eroded: bool = False,
                  labels: bool = True) -> Path:
    """Write a fake Potsdam distribution into ``root`` (zips, or extracted folders); return root.

    Image archives hold their files in a folder of the archive's name, label archives do not.
    Tile k gets image seed k and the labels of ``colour_label(k, size)``.
    """
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, np.ndarray]] = {}
    archives = {"rgb": "2_Ortho_RGB.zip", "irrg": "3_Ortho_IRRG.zip",
                "rgbir": "4_Ortho_RGBIR.zip"}
    for i, tile in enumerate(tiles):
        rng = np.random.default_rng(i)
        for m in modalities:
            image = rng.integers(0, 256, (POTSDAM_BANDS[m], size, size), dtype=np.uint8)
            name = f"top_potsdam_{tile}_{m.upper()}.tif"
            files.setdefault(archives[m], {})[name] = image
        _, colours = colour_label(i, size)
        if labels:
            files.setdefault("5_Labels_all.zip", {})[f"top_potsdam_{tile}_label.tif"] = colours
        if eroded:
            colours = colours.copy()
            colours[:, ::8, :] = 0  # black boundaries = ignore
            files.setdefault("5_Labels_all_noBoundary.zip", {})[
                f"top_potsdam_{tile}_label_noBoundary.tif"] = colours
    # image archives nest their files in a folder of the archive's name, labels do not
    prefix = {a: a.removesuffix(".zip") for a in archives.values()}
    _write(files, root, zipped, crs, prefix)
    return root


def write_vaihingen(root: Path, areas: Iterable[str] = ("1", "3", "2"), *, zipped: bool = True,
                    crs: str | None = None, eroded: bool = False) -> Path:
    """Write a fake Vaihingen distribution (area k is (48 + 8k) x (64 - 8k) px); return root."""
    root.mkdir(parents=True, exist_ok=True)
    main = "ISPRS_semantic_labeling_Vaihingen.zip"
    gt = "ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE.zip"
    files: dict[str, dict[str, np.ndarray]] = {main: {}, gt: {}}
    for i, area in enumerate(areas):
        h, w = 48 + 8 * i, 64 - 8 * i
        rng = np.random.default_rng(i)
        name = f"top_mosaic_09cm_area{area}.tif"
        files[main][f"top/{name}"] = rng.integers(0, 256, (3, h, w), dtype=np.uint8)
        _, colours = colour_label(i, 64)
        colours = colours[:, :h, :w].copy()
        files[gt][name] = colours
        # the image archive also ships training labels under the same name: never images
        files[main][f"gts_for_participants/{name}"] = colours
        if eroded:
            ero = gt.replace("ground_truth", "ground_truth_eroded")
            files.setdefault(ero, {})[name.replace(".tif", "_noBoundary.tif")] = colours
    _write(files, root, zipped, crs, {})
    return root
