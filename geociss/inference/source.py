"""Input rasters of ``predict``: which bands feed the model, which pixels are valid, tile reads.

:class:`RasterInput` checks a raster once in the main process (band count against the model,
validity rules, georeferencing). :class:`TileDataset` reads its tiles, one ``rasterio`` handle
per process, opened lazily, so that DataLoader workers read windows in parallel while the main
process predicts and writes (the only writer: rasterio handles are not thread-safe).

Valid pixels follow the catalogue (:func:`geociss.data.tile_scan.valid_pixels`): the dataset
mask (alpha band or internal mask), all bands equal to nodata, or NaN. Invalid pixels are read
as NaN (a tile that has some is handed over as float32) and enter the model as the band mean, 0
after normalisation (:mod:`geociss.data.normalise`, the rule of training and evaluation); they
get weight 0, so every output there is nodata (255). A raster smaller than the tile is
reflect-padded after that, as the evaluation reader pads its windows.

Band selection follows the catalogue too: every band except alpha; when that is not the model's
band count but the file's whole band count is, an alpha-tagged band is image data (GDAL tags the
fourth band of every 4-band uint8 GeoTIFF as alpha, so an RGB+NIR orthophoto arrives that way).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window as RioWindow

from geociss.cli.main import GDAL_DEFAULTS
from geociss.data.tile_scan import raster_errors, valid_pixels
from geociss.errors import DataError, GeocissError, error_detail
from geociss.inference.georef import open_raster
from geociss.inference.grid import TileGrid

EXACT_DTYPES = frozenset({"uint8", "int8", "int16"})
"""Band types read and handed to the model process as they are: float32 holds them exactly, and
the predictor converts them while normalising. A uint8 tile crosses from the reader worker in a
quarter of the bytes of float32: on a loaded 2-core machine the reader worker used 4.8-5.8 ms
of CPU per float32 512² RGB tile, most of it moving the tile through shared memory, and 1.8-2.5
ms per uint8 tile."""

for _key, _value in GDAL_DEFAULTS.items():  # fast windowed reads, as the CLI sets
    os.environ.setdefault(_key, _value)


@dataclass(frozen=True)
class RasterInput:
    """An input raster checked against the model.

    Attributes:
        path: the file.
        width: columns.
        height: rows.
        indexes: 1-based bands fed to the model, in order.
        dtype: data type of the bands.
        nodata: nodata value, or None.
        has_mask: validity comes from GDAL's dataset mask (alpha band or internal mask).
        crs: the CRS, or None.
        transform: the geotransform, or None when the raster has none (pixel space; outputs
            then lie on :data:`~geociss.inference.georef.PIXEL_SPACE`).
    """

    path: Path
    width: int
    height: int
    indexes: tuple[int, ...]
    dtype: str
    nodata: float | None
    has_mask: bool
    crs: Any
    transform: Affine | None

    @classmethod
    def open(
        cls, path: str | Path, in_channels: int, bands: list[str] | None = None,
        indexes: list[int] | None = None, nodata: float | None = None,
    ) -> RasterInput:
        """Check ``path`` and decide which bands feed a model with ``in_channels`` inputs.

        Args:
            path: the raster.
            in_channels: the model's input bands.
            bands: the model's band names, for the error message.
            indexes: 1-based bands to read (default: every band but alpha, see above).
            nodata: nodata value when the file declares none (``--nodata``; a tag wins).

        Raises:
            DataError: unreadable file, or a band count that does not match the model.
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "input raster not found")
        with raster_errors(path, "cannot open raster"):
            src, has_transform = open_raster(path)
        with raster_errors(path, "cannot open raster"), src:
            alpha = [i + 1 for i, ci in enumerate(src.colorinterp) if ci == ColorInterp.alpha]
            if indexes is not None:
                if max(indexes) > src.count:
                    raise DataError(path, f"has {src.count} band(s); the model reads bands "
                                    f"{list(indexes)}")
                alpha = [a for a in alpha if a not in indexes]
            else:
                indexes = [i for i in range(1, src.count + 1) if i not in alpha]
            if len(indexes) != in_channels and src.count == in_channels:
                indexes = list(range(1, src.count + 1))
            if len(indexes) != in_channels:
                names = f" ({', '.join(bands)})" if bands else ""
                extra = f" plus {len(alpha)} alpha" if alpha else ""
                raise DataError(
                    path, f"has {len(indexes)} image band(s){extra}; the model expects "
                    f"{in_channels}{names}",
                )
            flags = src.mask_flag_enums[indexes[0] - 1]
            has_mask = MaskFlags.per_dataset in flags or (
                MaskFlags.alpha in flags and any(a not in indexes for a in alpha)
            )
            georef = src.crs is not None or has_transform  # an explicit identity is kept
            return cls(
                path=path, width=int(src.width), height=int(src.height), indexes=tuple(indexes),
                dtype=str(src.dtypes[indexes[0] - 1]),
                nodata=nodata if src.nodata is None else src.nodata, has_mask=has_mask,
                crs=src.crs, transform=src.transform if georef else None,
            )

    @property
    def pixels(self) -> int:
        """Pixels of one band."""
        return self.width * self.height


class Tile(NamedTuple):
    """One read tile: its grid index plus pixels, or why it has none.

    Attributes:
        index: row-major tile index in the grid.
        image: ``(C, tile, tile)`` band values, in the raster's type when it is one of
            :data:`EXACT_DTYPES` and every pixel is valid, else float32 with NaN at the invalid
            pixels; None when every pixel is invalid (skipped).
        valid: bool ``(tile, tile)`` (False on padding), or None when every pixel is valid.
        error: a read error message (the main process raises it), or None.
    """

    index: int
    image: np.ndarray | None
    valid: np.ndarray | None
    error: str | None = None


class TileBatch(NamedTuple):
    """Tiles collated for the model.

    Attributes:
        tiles: every tile of the batch in grid order, skipped ones included, without their
            pixels (those are in ``images`` and ``valid``: only tensors cross the worker pipe).
        kept: positions (in ``tiles``) of the tiles that have pixels, in order.
        images: ``(len(kept), C, tile, tile)`` band values (the type of :attr:`Tile.image`),
            or None when nothing was kept.
        valid: bool ``(len(kept), tile, tile)`` validity, or None when all pixels are valid.
        masked: positions (in ``kept``) of the tiles that have invalid pixels.
    """

    tiles: list[Tile]
    kept: list[int]
    images: torch.Tensor | None
    valid: torch.Tensor | None
    masked: frozenset[int] = frozenset()


def collate_tiles(tiles: list[Tile]) -> TileBatch:
    """Stack the tiles that have pixels (DataLoader ``collate_fn``)."""
    kept = [k for k, t in enumerate(tiles) if t.image is not None]
    bare = [Tile(t.index, None, None, t.error) for t in tiles]
    if not kept:
        return TileBatch(bare, kept, None, None)
    images = torch.from_numpy(np.stack([tiles[k].image for k in kept]))
    masked = frozenset(m for m, k in enumerate(kept) if tiles[k].valid is not None)
    valid = None
    if masked:
        shape = images.shape[-2:]
        valid = torch.from_numpy(np.stack([
            np.ones(shape, bool) if tiles[k].valid is None else tiles[k].valid for k in kept
        ]))
    return TileBatch(bare, kept, images, valid, masked)


class TileDataset(torch.utils.data.Dataset):
    """The tiles of a grid over one raster, read on demand (map-style, by grid index).

    Args:
        source: the checked input raster.
        grid: the tile grid over it.
    """

    def __init__(self, source: RasterInput, grid: TileGrid) -> None:
        self.source = source
        self.grid = grid
        self._src: Any = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.grid)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_src"], state["_pid"] = None, None
        return state

    def _handle(self) -> Any:
        if self._pid != os.getpid():  # never read through a handle inherited by fork
            self._src = rasterio.open(self.source.path)
            self._pid = os.getpid()
        return self._src

    def close(self) -> None:
        """Close this process's handle (it reopens on the next read)."""
        if self._src is not None and self._pid == os.getpid():
            self._src.close()
        self._src, self._pid = None, None

    def __getitem__(self, index: int) -> Tile:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                return self._read(index)
        except GeocissError as err:
            return Tile(index, None, None, str(getattr(err, "problem", err)))
        except (RasterioError, OSError) as err:
            detail = error_detail(err)
            return Tile(index, None, None, f"cannot read (corrupt or truncated file?): {detail}")

    def _read(self, index: int) -> Tile:
        g, s = self.grid, self.source
        _, _, y, x = g.origin(index)
        h, w = g.tile_h, g.tile_w
        src = self._handle()
        win = RioWindow(x, y, w, h)
        dtype = s.dtype if s.dtype in EXACT_DTYPES else "float32"
        data = src.read(list(s.indexes), window=win, out_dtype=dtype)
        valid = valid_pixels(src, data, win, s.has_mask, s.nodata)
        if valid is not None:
            if not valid.any():
                return Tile(index, None, None)
            if valid.all():
                valid = None
            else:
                data = data.astype(np.float32, copy=False)
                data[:, ~valid] = np.nan
        pad = ((0, g.tile - h), (0, g.tile - w))
        if h < g.tile or w < g.tile:
            data = np.pad(data, ((0, 0), *pad), mode="reflect")
            valid = np.pad(np.ones((h, w), bool) if valid is None else valid, pad)
        return Tile(index, np.ascontiguousarray(data), valid)
