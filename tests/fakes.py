"""Writers of small fake rasters for tests (real CRSs, real GeoTIFFs, generated on the fly)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin

UTM32 = "EPSG:32632"


def write_tif(
    path: str | Path,
    array: np.ndarray,
    *,
    crs: str | None = UTM32,
    transform: Any = None,
    gsd: float = 0.09,
    origin: tuple[float, float] = (368000.0, 5806000.0),
    nodata: float | None = None,
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
    tiled: bool = True,
) -> Path:
    """Write ``array`` ((H, W) or (C, H, W)) as a GeoTIFF; ``crs=None`` writes pixel space."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = array[None] if array.ndim == 2 else array
    count, height, width = arr.shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": arr.dtype.name,
        "compress": "deflate",
    }
    if tiled and height >= 16 and width >= 16:
        block = 256 if min(height, width) >= 256 else 16
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    if crs is not None:
        profile["crs"] = crs
        profile["transform"] = transform or from_origin(origin[0], origin[1], gsd, gsd)
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)
        if colormap is not None:
            dst.write_colormap(1, colormap)
    return path


def random_pair(
    root: str | Path,
    stem: str,
    size: int = 64,
    bands: int = 3,
    classes: int = 6,
    seed: int = 0,
    **kwargs: Any,
) -> tuple[Path, Path]:
    """Write ``images/<stem>.tif`` (uint8) and ``labels/<stem>.tif`` (class ids in 8-px blocks)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    image = rng.integers(0, 256, (bands, size, size), dtype=np.uint8)
    blocks = rng.integers(0, classes, (size // 8 + 1, size // 8 + 1), dtype=np.uint8)
    label = np.kron(blocks, np.ones((8, 8), dtype=np.uint8))[:size, :size]
    img = write_tif(root / "images" / f"{stem}.tif", image, **kwargs)
    lbl = write_tif(root / "labels" / f"{stem}.tif", label, **kwargs)
    return img, lbl


def record_for(
    image: str | Path,
    label: str | Path | None,
    schema: Any,
    *,
    tile: int = 0,
    chip: int | None = None,
    label_encoded: bool = False,
) -> Any:
    """Build the TileRecord (with regions of ``chip`` px, or one whole-tile region) of a pair.

    A small stand-in for the catalogue in tests of code that only needs records.
    """
    from rasterio.enums import ColorInterp, MaskFlags

    from geociss.data.records import BandStats, Region, TileRecord, Window

    with rasterio.open(image) as src:
        indexes = [i + 1 for i, ci in enumerate(src.colorinterp) if ci != ColorInterp.alpha]
        data = src.read(indexes).astype(np.float64)
        flags = src.mask_flag_enums[0]
        has_mask = MaskFlags.per_dataset in flags or MaskFlags.alpha in flags
        height, width, nodata = src.height, src.width, src.nodata
        crs = src.crs.to_wkt() if src.crs else None
        transform = tuple(src.transform)[:6]
        dtype = src.dtypes[0]
    n = schema.num_classes
    ids = np.full((height, width), 255, np.uint8)
    if label is not None:
        with rasterio.open(label) as src:
            raw = src.read(1) if label_encoded or schema.label_bands == 1 else src.read([1, 2, 3])
            label_nodata = src.nodata
        nodata_px = np.zeros((height, width), bool)
        if label_nodata is not None:
            nodata_px = (raw.reshape(-1, height, width) == label_nodata).all(axis=0)
        if label_encoded:
            ids = raw.astype(np.uint8)
        else:
            keep = ~nodata_px
            part = raw[..., keep][..., None]
            ids[keep] = schema.encode(part, label)[:, 0]
        ids[nodata_px] = 255
    flat = data.reshape(data.shape[0], -1)
    stats = BandStats(
        count=flat.shape[1],
        sum=tuple(flat.sum(1).tolist()),
        sumsq=tuple((flat**2).sum(1).tolist()),
        min=tuple(flat.min(1).tolist()),
        max=tuple(flat.max(1).tolist()),
    )
    step = chip or max(height, width)
    regions = []
    for r in range(0, height, step):
        for c in range(0, width, step):
            part = ids[r : r + step, c : c + step]
            hist = np.bincount(part[part != 255].ravel(), minlength=n)[:n].astype(np.int64)
            win = Window(tile, r, c, part.shape[0], part.shape[1])
            regions.append(Region(win, hist, int((part == 255).sum())))
    hist = np.bincount(ids[ids != 255].ravel(), minlength=n)[:n].astype(np.int64)
    return TileRecord(
        stem=Path(image).stem, image=Path(image), label=None if label is None else Path(label),
        label_encoded=label_encoded, width=width, height=height, bands=len(indexes), dtype=dtype,
        crs=crs, transform=transform, nodata=nodata, has_mask=has_mask, hist=hist,
        ignored=int((ids == 255).sum()), stats=stats, regions=regions,
    )


def tiny_isprs_bundle() -> Any:
    """A step-0 bundle of the ``tiny`` network over the six ISPRS classes (random weights)."""
    import torch

    from geociss.data.classes import ClassSchema
    from geociss.engine.bundle import StepBundle, StepRecord
    from geociss.models import ModelConfig, SegmentationModel

    torch.manual_seed(0)
    model = SegmentationModel(ModelConfig(encoder="tiny", weights="none", aspp_channels=16), [6])
    return StepBundle.from_model(
        model.eval(), schema=ClassSchema.preset("isprs"), steps=[StepRecord(list(range(6)))],
        mean=[120.0] * 3, std=[60.0] * 3, bands=["red", "green", "blue"],
    )


LANDCOVER_4_SCHEMA = {
    "schema_version": 1,
    "name": "landcover-4",
    "encoding": "index",
    "background": "other",
    "ignore_values": [0, 255],
    "classes": [
        {"id": 0, "name": "other", "color": "#bdbdbd", "values": [1, 6]},
        {"id": 1, "name": "water", "color": "#2166ac", "values": [2]},
        {"id": 2, "name": "forest", "color": "#1b7837", "values": [3, 4]},
        {"id": 3, "name": "built-up", "color": "#d73027", "values": [5]},
    ],
}
"""A 4-class satellite land-cover schema whose labels hold a product's codes (0 = unlabelled)."""

THREE_CLASS_SCHEMA = {
    "name": "three",
    "background": "bare",
    "classes": [
        {"id": i, "name": n, "color": c}
        for i, (n, c) in enumerate([("bare", "#a0a0a0"), ("water", "#0000ff"), ("crop", "#ffff00")])
    ],
}
"""A 3-class schema (bare as background, water, crop) of the 4-band nodata/scaling tests."""
