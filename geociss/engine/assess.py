"""Evaluate a step bundle on a labelled folder (``geociss evaluate``).

Every tile is scored whole, with the owned sliding windows of :mod:`geociss.engine.evaluate`
(never centre crops), in the channels of the bundle. Ground-truth classes reach channels by
name (so a ``--schema`` other than the bundle's works as long as the names agree):

* a class the model learned → its channel;
* a class the model never learned → **ignored (255) when the background is a real class**
  (channel 0 is a schema class, e.g. ISPRS impervious surfaces: clutter is then ignored, as IDEC
  evaluates) and **background (channel 0) when the background is implicit** (channel 0 stands for
  "anything not learned"); this is :meth:`Scenario.eval_lut`'s convention;
* a class the bundle's own scenario still had to learn in a later step (a *future* class) follows
  the scenario's ``future`` setting (ignored by default), so that evaluating a runner's
  intermediate bundle gives the runner's numbers.

Old = the channels of step 0 (background included), new = the channels of later steps. Inputs are
normalised with the bundle's mean/std, bands are checked against the bundle, and the rule that
turns logits into classes is the last step's method's (argmax for every built-in method).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from geociss.data.classes import IGNORE_INDEX, ClassSchema
from geociss.data.records import TileRecord
from geociss.data.scaling import Clip
from geociss.engine.bundle import StepBundle
from geociss.engine.evaluate import evaluate_tiles, owned_grid
from geociss.errors import ConfigError, DataError
from geociss.evaluation.scores import Scores

if TYPE_CHECKING:
    from geociss.models.segmenter import SegmentationModel

_BAND = re.compile(r"^band (\d+)$")


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` if a GPU is visible, else ``cpu``; ``cuda`` without a GPU is an error."""
    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def bundle_normalisation(bundle: StepBundle) -> tuple[list[float], list[float]]:
    """The mean/std the model was trained with (new data is never re-normalised)."""
    if bundle.mean is None or bundle.std is None:
        raise DataError(bundle.source, "bundle has no input normalisation (mean/std)")
    return list(bundle.mean), list(bundle.std)


def bundle_clip(bundle: StepBundle) -> Clip | None:
    """The clip bounds the model was trained with (None: none, or an older bundle)."""
    return None if bundle.scaling is None else bundle.scaling.clip


def bundle_nodata(bundle: StepBundle, given: float | None = None) -> float | None:
    """Nodata value for inputs without a nodata tag: ``given`` (``--nodata``), else the bundle's.

    The bundle's is the training nodata value (None: none, or an older bundle).
    """
    if given is not None or bundle.scaling is None:
        return given
    return bundle.scaling.nodata


def bundle_bands(bundle: StepBundle) -> list[int] | None:
    """1-based image bands to read for a bundle: its ``band N`` names, or None (all bands).

    None when the bundle's bands are ``band 1 .. band n`` in order or carry other names; the band
    count is then checked by :func:`check_bands`.
    """
    found = [_BAND.match(b) for b in bundle.bands]
    if not bundle.bands or not all(found):
        return None
    bands = [int(m.group(1)) for m in found if m is not None]
    return None if bands == list(range(1, len(bands) + 1)) else bands


def check_bands(tiles: Sequence[TileRecord], bundle: StepBundle) -> None:
    """Every tile must feed the model as many bands as it was trained with."""
    n = bundle.model_config.in_channels
    model = f"the model {bundle.source.name}" if bundle.source else "the model"
    names = f" ({', '.join(bundle.bands)})" if bundle.bands else ""
    for tile in tiles:
        if tile.bands != n:
            raise DataError(
                tile.image, f"has {tile.bands} image band(s) but {model} takes {n}{names}"
            )


def bundle_eval_lut(bundle: StepBundle, schema: ClassSchema) -> tuple[np.ndarray, dict[str, str]]:
    """Look-up table class id of ``schema`` → channel of ``bundle`` (256 entries, uint8).

    Returns the table and, for each ``schema`` class the model never learned, how it is scored:
    ``"ignored"`` or ``"background"`` (conventions in the module docstring).
    """
    channel_of = {
        bundle.schema.names[c].lower(): i for i, c in enumerate(bundle.channels) if c is not None
    }
    fill = 0 if bundle.channels[0] is None else IGNORE_INDEX
    scenario = bundle.scenario or {}
    future = {str(name).lower() for step in scenario.get("steps", []) for name in step} - set(
        channel_of
    )
    future_fill = 0 if scenario.get("future") == "background" else IGNORE_INDEX
    lut = np.full(256, fill, dtype=np.uint8)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    unlearned: dict[str, str] = {}
    for c in schema.classes:
        key = c.name.lower()
        if key in channel_of:
            lut[c.id] = channel_of[key]
            continue
        lut[c.id] = future_fill if key in future else fill
        unlearned[c.name] = "ignored" if lut[c.id] == IGNORE_INDEX else "background"
    return lut, unlearned


def predict_rule(bundle: StepBundle) -> Callable[[Tensor], Tensor]:
    """Logits → channel per pixel, by the rule of the method of the bundle's last step."""
    from geociss.methods import get_method
    from geociss.methods.base import StepContext

    counts = tuple(bundle.classes_per_step)
    try:
        method = get_method(bundle.steps[-1].method).from_config(
            {}, StepContext(len(counts) - 1, counts)
        )
    except (ConfigError, ValueError):  # unknown method, or it needs params: plain argmax
        return lambda logits: logits.argmax(1)
    return method.predict


def confusion_over_tiles(
    model: torch.nn.Module,
    predict: Callable[[Tensor], Tensor],
    tiles: Sequence[TileRecord],
    schema: ClassSchema,
    lut: np.ndarray,
    num_channels: int,
    bundle: StepBundle,
    *,
    size: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    device: str = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """:func:`evaluate_tiles` with the bundle's normalisation and bands, and a progress bar."""
    if overlap >= size:
        raise ConfigError(f"the window overlap ({overlap}) must be smaller than the tile ({size})")
    mean, std = bundle_normalisation(bundle)
    kwargs = {
        "size": size,
        "overlap": overlap,
        "batch_size": batch_size,
        "device": device,
        "bands": bundle_bands(bundle),
        "clip": bundle_clip(bundle),
    }
    args = (model, predict, tiles, schema, lut, num_channels, mean, std)
    if not progress:
        return evaluate_tiles(*args, **kwargs)  # type: ignore[arg-type]
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("evaluating windows", total=len(owned_grid(tiles, size, overlap)))
        return evaluate_tiles(  # type: ignore[misc]
            *args, **kwargs, progress=lambda n: bar.advance(task, n)
        )


def warn_statistics(
    mean: Sequence[float], bundle: StepBundle, log: Callable[[str], None]
) -> list[int]:
    """Warn (and return the bands) where new images' band means lie > 2 std off the bundle's."""
    ref_mean, ref_std = bundle_normalisation(bundle)
    off = [
        i + 1
        for i, (m, m0, s0) in enumerate(zip(mean, ref_mean, ref_std, strict=False))
        if abs(m - m0) > 2 * max(s0, 1e-6)
    ]
    if off:
        log(
            f"warning: band(s) {', '.join(map(str, off))} of the new images have a mean more "
            "than 2 std away from the model's training data; inputs are still normalised with "
            "the model's statistics (check the band order and the data type)"
        )
    return off


def new_vs_rest(
    model: SegmentationModel,
    predict: Callable[[Tensor], Tensor],
    tiles: Sequence[TileRecord],
    labels: ClassSchema,
    bundle: StepBundle,
    step: int,
    **kwargs: Any,
) -> Scores:
    """Score the classes new at ``step`` against everything else, on new-class-only labels.

    ``labels`` reads the labels as 0 = rest, k = k-th new class (the last ``K`` channels of
    ``model``). Every older channel's prediction counts as "rest" (channel 0 of the result,
    reported but in no mean): without old labels, old classes cannot be scored.

    Args:
        model: the extended model (old channels + ``K`` new ones).
        predict: logits → model channel per pixel.
        tiles: evaluation tiles, labelled for the new classes only.
        labels: the new-class label schema (background + ``K`` classes).
        bundle: the bundle that was extended (normalisation and bands).
        step: the step that added the new classes.
        **kwargs: ``size``, ``overlap``, ``batch_size``, ``device``, ``progress`` of
            :func:`confusion_over_tiles`.
    """
    k = labels.num_classes - 1
    n_old = model.num_classes - k
    device = torch.device(kwargs.get("device", "cpu"))
    to_rest = torch.tensor([0] * n_old + list(range(1, k + 1)), device=device)
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[: k + 1] = np.arange(k + 1)
    cm = confusion_over_tiles(
        model.to(device),
        lambda z: to_rest[predict(z)],
        tiles,
        labels,
        lut,
        k + 1,
        bundle,
        **kwargs,
    )
    model.to("cpu")
    return Scores.from_confusion(
        cm,
        ["rest (background and old classes)", *labels.names[1:]],
        old_channels=(),
        new_channels=range(1, k + 1),
        channel_steps=[None] + [step] * k,
    )


@dataclass
class Assessment:
    """The result of :func:`assess_bundle`.

    Attributes:
        scores: per-channel IoU, old/new/all mIoU and the confusion matrix.
        colors: display colour per channel (black for an implicit background).
        tiles: number of tiles evaluated.
        unlearned: ground-truth classes the model never learned → ``"ignored"`` or
            ``"background"`` (how they were scored).
    """

    scores: Scores
    colors: list[tuple[int, int, int]]
    tiles: int
    unlearned: dict[str, str]


def assess_bundle(
    bundle: StepBundle,
    images: Path,
    labels: Path,
    schema: ClassSchema | None = None,
    *,
    size: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    device: str = "auto",
    label_attribute: str = "class",
    progress: bool = True,
    nodata: float | None = None,
) -> Assessment:
    """Score ``bundle`` on every tile of ``images`` labelled by ``labels`` (folder or polygons).

    Args:
        bundle: the model.
        images: folder of image GeoTIFFs.
        labels: folder of label rasters or a polygon file; outside polygons is background when
            the schema has a background class, ignored otherwise.
        schema: how the labels encode classes (default: the bundle's schema).
        size: sliding-window size.
        overlap: overlap of neighbouring windows.
        batch_size: windows per forward pass.
        device: ``auto``, ``cpu`` or ``cuda``.
        label_attribute: class attribute of vector labels.
        progress: show progress bars.
        nodata: nodata value of images whose files declare none (``--nodata``; default: the
            training nodata value the bundle records, if any).
    """
    from geociss.data.catalog import Catalog

    schema = schema or bundle.schema
    dev = resolve_device(device)
    bands = bundle_bands(bundle)
    catalog = Catalog.scan(
        images,
        labels,
        schema,
        bands=bands,
        label_attribute=label_attribute,
        unlabelled="background" if schema.background_id is not None else "ignore",
        progress=progress,
        nodata=bundle_nodata(bundle, nodata),
    )
    if not catalog.tiles:
        raise DataError(images, "no image found to evaluate on")
    check_bands(catalog.tiles, bundle)
    lut, unlearned = bundle_eval_lut(bundle, schema)
    model = bundle.build_model().to(dev)
    n = len(bundle.channels)
    cm = confusion_over_tiles(
        model,
        predict_rule(bundle),
        catalog.tiles,
        schema,
        lut,
        n,
        bundle,
        size=size,
        overlap=overlap,
        batch_size=batch_size,
        device=dev,
        progress=progress,
    )
    first = bundle.classes_per_step[0]
    steps = [t for t, s in enumerate(bundle.steps) for _ in s.channels]
    scores = Scores.from_confusion(
        cm,
        bundle.channel_names,
        old_channels=range(first),
        new_channels=range(first, n),
        channel_steps=steps,
    )
    colors = [(0, 0, 0) if c is None else bundle.schema.colors[c] for c in bundle.channels]
    return Assessment(scores, colors, len(catalog.tiles), unlearned)
