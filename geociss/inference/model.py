"""What ``predict`` needs to know about a model, and the settings of a prediction run.

:class:`LoadedModel` wraps a network with its input conventions (bands, mean/std), its class
style (the class raster value is the model channel, :meth:`ClassStyle.from_bundle`), its
probability rule (the rule of the method that trained the last step: softmax for most, DKD's
sigmoid scores for DKD) and a content hash that identifies it in the resume sidecar. It is
usually read from a step bundle (:meth:`LoadedModel.from_bundle`); tests and other tools may
build one around any fully-convolutional network.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from geociss.data.scaling import Clip
from geociss.errors import ConfigError, DataError
from geociss.inference.grid import check_tiling
from geociss.inference.plan import DEFAULT_BUFFER_MB
from geociss.inference.predictor import (
    TTA_MODES,
    Predictor,
    ProbabilitiesFn,
    resolve_batch_size,
)
from geociss.inference.qml import ClassStyle


@dataclass
class PredictOptions:
    """Settings of a prediction run (the CLI options).

    Attributes:
        tile: tile side in pixels.
        overlap: overlap between neighbouring tiles in pixels.
        margin: zero-weight margin at inner tile edges (None: overlap / 8).
        batch_size: tiles per forward pass, or ``auto``.
        tta: test-time augmentation, ``none``, ``flip`` or ``d4``.
        confidence: also write the confidence raster.
        probabilities: also write the per-class probability raster.
        vector: also write GeoPackage polygons.
        workers: tile-reading worker processes (None: CPU cores - 1, at most 4).
        devices: processes to share the inputs (one per GPU, or CPU processes).
        buffer_mb: row-band buffer budget per stream in MiB (wider rasters use column groups).
        device: ``cpu``, ``cuda``, ``cuda:1``... (None: CUDA when available).
        min_polygon_pixels: polygons smaller than this are merged into a neighbour.
        nodata: nodata value of inputs whose files declare none (``--nodata``), or None.
    """

    tile: int = 512
    overlap: int = 128
    margin: int | None = None
    batch_size: int | str = "auto"
    tta: str = "none"
    confidence: bool = False
    probabilities: bool = False
    vector: bool = False
    workers: int | None = None
    devices: int = 1
    buffer_mb: int = DEFAULT_BUFFER_MB
    device: str | None = None
    min_polygon_pixels: int = 16
    nodata: float | None = None

    def __post_init__(self) -> None:
        check_tiling(self.tile, self.overlap, self.margin)
        if self.tta not in TTA_MODES:
            choices = ", ".join(TTA_MODES)
            raise ConfigError(f"unknown TTA mode {self.tta!r}; choose one of: {choices}")
        if self.devices < 1:
            raise ConfigError(f"devices must be at least 1, got {self.devices}")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.buffer_mb < 1:
            raise ConfigError(f"buffer_mb must be at least 1, got {self.buffer_mb}")
        if self.nodata is not None and not math.isfinite(self.nodata):
            raise ConfigError(f"--nodata must be a finite number, got {self.nodata}")

    def describe(self) -> dict[str, Any]:
        """The settings that shape the outputs, as JSON (recorded in the run sidecar)."""
        return {
            "tile": self.tile, "overlap": self.overlap, "margin": self.margin, "tta": self.tta,
            "confidence": self.confidence, "probabilities": self.probabilities,
            "vector": self.vector, "batch_size": self.batch_size,
        }


@dataclass
class LoadedModel:
    """A network ready for ``predict``.

    Attributes:
        module: the network (eval mode); ``module(x)`` gives logits or has ``.logits``.
        in_channels: input bands.
        num_classes: output channels (class raster values 0..num_classes-1).
        style: names and colours of the class values.
        mean: per-band normalisation mean, or None.
        std: per-band normalisation std, or None.
        clip: per-band ``(low, high)`` clip bounds before normalising, or None.
        bands: band names (for messages).
        band_indexes: 1-based bands to read, or None (every band but alpha).
        key: content hash identifying the model.
        name: display name (the bundle file name).
        probabilities_fn: logits -> probabilities (None: softmax).
        source: the bundle file, when loaded from one (ranks reload it instead of copying).
        nodata: nodata value of inputs without a nodata tag when ``--nodata`` is not given (the
            bundle's training nodata value), or None.
    """

    module: nn.Module
    in_channels: int
    num_classes: int
    style: ClassStyle
    mean: list[float] | None = None
    std: list[float] | None = None
    clip: Clip | None = None
    bands: list[str] = field(default_factory=list)
    band_indexes: list[int] | None = None
    key: str = ""
    name: str = "model"
    probabilities_fn: ProbabilitiesFn | None = None
    source: Path | None = None
    nodata: float | None = None

    @classmethod
    def from_bundle(cls, path: str | Path) -> LoadedModel:
        """Load a step bundle.

        Raises:
            DataError: missing or invalid bundle, or one without input normalisation.
        """
        from geociss.engine.assess import (
            bundle_bands,
            bundle_clip,
            bundle_nodata,
            bundle_normalisation,
        )
        from geociss.engine.bundle import StepBundle

        path = Path(path)
        bundle = StepBundle.load(path)
        mean, std = bundle_normalisation(bundle)
        if bundle.model_config.in_channels < 1 or len(bundle.channels) > 255:
            raise DataError(path, "a class raster holds at most 255 classes")
        return cls(
            module=bundle.build_model(), in_channels=bundle.model_config.in_channels,
            num_classes=len(bundle.channels), style=ClassStyle.from_bundle(bundle),
            mean=mean, std=std, clip=bundle_clip(bundle), bands=list(bundle.bands),
            band_indexes=bundle_bands(bundle),
            key=file_digest(path), name=path.name, probabilities_fn=_method_rule(bundle),
            source=path.resolve(), nodata=bundle_nodata(bundle),
        )

    def predictor(self, opts: PredictOptions, device: str | None = None) -> Predictor:
        """A :class:`Predictor` for this model under ``opts`` (``device`` overrides)."""
        return Predictor(
            self.module, mean=self.mean, std=self.std, clip=self.clip,
            device=device or opts.device,
            tta=opts.tta, probabilities_fn=self.probabilities_fn,
        )

    def batch_size(self, opts: PredictOptions, predictor: Predictor) -> int:
        """The batch size of ``opts`` (``auto`` is probed on CUDA)."""
        return resolve_batch_size(opts.batch_size, predictor, self.in_channels, opts.tile,
                                  self.key)


def file_digest(path: Path, chunk: int = 1 << 22) -> str:
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _method_rule(bundle: Any) -> ProbabilitiesFn | None:
    """The probability rule of the method of the bundle's last step (None: softmax)."""
    from geociss.methods import get_method
    from geociss.methods.base import StepContext

    counts = tuple(bundle.classes_per_step)
    try:
        method = get_method(bundle.steps[-1].method).from_config(
            {}, StepContext(len(counts) - 1, counts)
        )
    except (ConfigError, ValueError, TypeError):
        return None
    return method.probabilities
