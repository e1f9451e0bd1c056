"""Where the outputs of one ``predict`` input go: final rasters, partials, sidecars."""

from __future__ import annotations

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
        for path in self.partials(tag).values():
            path.unlink(missing_ok=True)
            Path(f"{path}.aux.xml").unlink(missing_ok=True)
        self.rank_sidecar(tag).unlink(missing_ok=True)


__all__ = ["OutputPaths"]
