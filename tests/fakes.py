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
