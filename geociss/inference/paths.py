"""Where the outputs of one ``predict`` input go: final rasters, partials, sidecars.

Every output is written under a hidden temporary name in the output folder and renamed
(:func:`geociss.io.atomic_path`: ``.<name>.<8 random characters><suffix>.part``, GDAL's
overview temporaries ``….part.ovr.tmp`` next to it; the GeoPackage in a hidden folder
``.<name>.<8 random characters>``). A kill while publishing leaves them behind;
:meth:`OutputPaths.discard_stale` removes those of an input's outputs on its next run.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from geociss.inference.model import PredictOptions


@dataclass
class OutputPaths:
    """Where the outputs of one input go."""

    classes: Path
    confidence: Path | None
    probabilities: Path | None
    gpkg: Path | None
    sidecar: Path

    @classmethod
    def for_input(cls, out_dir: Path, stem: str, opts: PredictOptions) -> OutputPaths:
        """The output names of input ``<stem>.tif`` under ``opts``."""
        return cls(
            classes=out_dir / f"{stem}_classes.tif",
            confidence=out_dir / f"{stem}_confidence.tif" if opts.confidence else None,
            probabilities=out_dir / f"{stem}_probabilities.tif" if opts.probabilities else None,
            gpkg=out_dir / f"{stem}.gpkg" if opts.vector else None,
            sidecar=out_dir / f"{stem}.predict.json",
        )

    def rasters(self) -> dict[str, Path]:
        """Output kind -> final raster path (the streamed outputs)."""
        out = {"classes": self.classes, "confidence": self.confidence,
               "probabilities": self.probabilities}
        return {k: v for k, v in out.items() if v is not None}

    def files(self) -> list[Path]:
        """Every main output file (rasters, then the GeoPackage)."""
        return [*self.rasters().values(), *([self.gpkg] if self.gpkg else [])]

    def partials(self, tag: str = "") -> dict[str, Path]:
        """Output kind -> streamed partial file (``tag`` distinguishes ranks)."""
        return {k: Path(f"{v}.partial{tag}") for k, v in self.rasters().items()}

    def rank_sidecar(self, tag: str) -> Path:
        """The progress file of a rank's partials (``tag`` empty: the main sidecar)."""
        return self.sidecar.with_name(f"{self.sidecar.stem}{tag}.json") if tag else self.sidecar

    def discard_partials(self, tag: str = "") -> None:
        """Delete the partial files of rank ``tag`` and their progress sidecar.

        For inputs that fail while streaming because the input itself is bad (an unreadable
        tile): their partials hold nothing a later run could resume, since a repaired input
        changes the run hash and starts afresh anyway.
        """
        self.remove_partials(tag)
        self.rank_sidecar(tag).unlink(missing_ok=True)

    def remove_partials(self, tag: str = "") -> None:
        """Delete the partial files of rank ``tag``, keeping the sidecar (published outputs)."""
        for path in self.partials(tag).values():
            path.unlink(missing_ok=True)
            Path(f"{path}.aux.xml").unlink(missing_ok=True)

    def stale(self) -> list[Path]:
        """Hidden temporaries of an earlier, killed publish of these outputs (files, folders).

        Only names this input's outputs produce match (``.<output name>.<8 random
        characters>…``): other inputs' files and the user's files are never taken.
        """
        names = {self.sidecar.name}
        for path in self.rasters().values():
            names |= {path.name, path.with_suffix(".qml").name, f"{path.name}.aux.xml"}
        if self.gpkg is not None:
            names.add(self.gpkg.name)
        alternatives = "|".join(re.escape(n) for n in sorted(names))
        ranks = re.escape(self.sidecar.stem) + r"\.rank\d+\.json"
        pattern = re.compile(rf"\.(?:{alternatives}|{ranks}){_TEMPORARY}")
        folder = self.classes.parent
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if pattern.fullmatch(p.name))

    def discard_stale(self) -> list[Path]:
        """Delete :meth:`stale` temporaries; return what was deleted.

        Call it only while this process owns these outputs (the run that publishes them):
        another live run's temporaries have the same form.
        """
        found = self.stale()
        for path in found:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return found


_TEMPORARY = r"\.[a-z0-9_]{8}(?:\.[A-Za-z0-9]+\.part(?:\..+)?)?"
"""What ``tempfile.mkstemp``/``mkdtemp`` add to ``.<name>``: 8 random characters, then (files)
the suffix and ``.part`` of :func:`geociss.io.atomic_path`, then GDAL's own temporaries
(``.ovr.tmp``, ``.aux.xml``)."""


__all__ = ["OutputPaths"]
