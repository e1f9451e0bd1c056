"""Rasters inside zip archives, addressed as GDAL ``/vsizip/`` paths.

A raster inside an archive is named by a :class:`~pathlib.Path` in GDAL's brace form::

    /vsizip/{/abs/path/2_Ortho_RGB.zip}/2_Ortho_RGB/top_potsdam_2_10_RGB.tif

``rasterio.open`` reads such a path directly (GDAL decompresses on the fly; nothing is
extracted), and it survives ``Path`` normalisation, which the plain ``/vsizip//abs/...`` form does
not (``Path`` collapses the double slash and GDAL then reads the archive path as relative). The
braces hold the archive's absolute path, so a path stays valid whatever the working directory.

The catalogue fingerprints such a raster by the size and modification time of its archive
(:func:`fingerprint`), so a changed archive is rescanned.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from geociss.errors import DataError

_MEMBER = re.compile(r"^/vsizip/\{(?P<archive>.+?)\}/(?P<member>.+)$")


def member_path(archive: Path, member: str) -> Path:
    """The GDAL path of ``member`` (posix path inside the archive) of the zip ``archive``."""
    return Path(f"/vsizip/{{{Path(archive).absolute()}}}/{member.lstrip('/')}")


def split_member(path: str | Path) -> tuple[Path, str] | None:
    """``(archive, member)`` of a path made by :func:`member_path`, else None."""
    m = _MEMBER.match(str(path))
    return None if m is None else (Path(m["archive"]), m["member"])


def fingerprint(path: Path) -> list[int]:
    """``[size, mtime_ns]`` of a file, or of the archive holding it.

    Raises:
        OSError: the file (or the archive) cannot be stat'ed.
    """
    parts = split_member(path)
    st = (path if parts is None else parts[0]).stat()
    return [st.st_size, st.st_mtime_ns]


def list_members(archive: Path) -> list[str]:
    """Posix paths of the files (not folders) inside a zip archive, in archive order.

    Only the archive's central directory is read, so this is fast whatever its size.

    Raises:
        DataError: the archive is missing or not a readable zip file.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            return [i.filename for i in zf.infolist() if not i.is_dir()]
    except FileNotFoundError:
        raise DataError(archive, "archive not found") from None
    except (zipfile.BadZipFile, OSError) as err:
        detail = " ".join(str(err).split()) or type(err).__name__
        raise DataError(archive, f"not a readable zip archive ({detail})") from None
