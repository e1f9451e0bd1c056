"""The data of an experiment: catalogues, train/validation split, normalisation, step loaders."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from geociss.config.experiment import DataConfig
from geociss.data.catalog import Catalog
from geociss.data.classes import ClassSchema
from geociss.data.dataset import Collate, WindowDataset
from geociss.data.records import BandStats, Region, TileRecord
from geociss.data.samplers import RandomWindowSampler
from geociss.data.scaling import (
    Clip,
    Scaling,
    clipped_statistics,
    per_band,
    sample_windows,
    shared_nodata,
)
from geociss.data.scenarios import Scenario
from geociss.errors import DataError
from geociss.integrity import check_normalization

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""ImageNet per-channel mean of RGB in [0, 1] (torchvision's and timm's)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""ImageNet per-channel standard deviation of RGB in [0, 1]."""


def imagenet_scaling(
    catalog: Catalog, mean: list[float], std: list[float]
) -> tuple[list[float], list[float]]:
    """ImageNet mean/std (× 255) for the first three bands of 8-bit images; the rest unchanged.

    Raises:
        DataError: the images are not 8-bit or have fewer than three bands.
    """
    first = catalog.tiles[0]
    if first.dtype != "uint8" or len(mean) < 3:
        raise DataError(
            first.image,
            f"data.normalization: imagenet needs 8-bit images with RGB in the first three bands "
            f"(this one is {first.dtype} with {len(mean)} band(s)); use normalization: bands",
        )
    scaled_mean = [255.0 * m for m in IMAGENET_MEAN] + list(mean[3:])
    scaled_std = [255.0 * s for s in IMAGENET_STD] + list(std[3:])
    return scaled_mean, scaled_std


def _tile_names(catalog: Catalog, indexes: Sequence[int], shown: int = 5) -> str:
    names = [catalog.tiles[i].image.name for i in indexes]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def training_band_stats(catalog: Catalog, indexes: Sequence[int]) -> BandStats:
    """Band statistics over the valid pixels of the training tiles ``indexes`` of ``catalog``.

    Raises:
        DataError: no training tile holds a valid pixel (all nodata, NaN or masked); the
            message names the folder and the tiles.
    """
    try:
        return BandStats.merge([catalog.tiles[i].stats for i in indexes])
    except ValueError:
        raise DataError(
            catalog.images_dir,
            f"no valid pixels in the training tile(s) {_tile_names(catalog, indexes)} (all "
            "nodata, NaN or masked): the band statistics that normalise the input cannot be "
            "computed",
        ) from None


def input_scaling(
    cfg: DataConfig, catalog: Catalog, indexes: Sequence[int]
) -> tuple[Scaling, list[float], list[float]]:
    """The scaling of ``data.normalization`` with the mean/std that :func:`normalise` applies.

    ``bands``: statistics of the training tiles (of the clipped values with
    ``data.clip_percentiles``); ``imagenet``: the ImageNet numbers; ``fixed``: mean = offset and
    std = scale, so that ``(x - mean) / std`` is ``(x - offset) / scale``. The scaling records
    the nodata value the training tiles share (:func:`~geociss.data.scaling.shared_nodata`).

    Raises:
        DataError: no valid training pixel, or scaling values that do not fit the bands.
    """
    stats = training_band_stats(catalog, indexes)
    mean, std = list(stats.mean), list(stats.std)
    n = len(mean)
    clip = None
    if cfg.clip_percentiles is not None:
        clip, clipped_mean, clipped_std = _clip_bounds(cfg, catalog, indexes)
        if cfg.normalization == "bands":
            mean, std = clipped_mean, clipped_std
    if cfg.normalization == "imagenet":
        mean, std = imagenet_scaling(catalog, mean, std)
    offset = scale = None
    if cfg.normalization == "fixed":
        assert cfg.scale is not None  # DataConfig's validation
        try:
            offset = per_band(0.0 if cfg.offset is None else cfg.offset, n, "offset")
            scale = per_band(cfg.scale, n, "scale")
        except ValueError as err:
            raise DataError(catalog.images_dir, str(err)) from None
        mean, std = list(offset), list(scale)
    nodata = shared_nodata([catalog.tiles[i] for i in indexes])
    scaling = Scaling(cfg.normalization, offset, scale, cfg.clip_percentiles, clip, nodata)
    return scaling, mean, std


def _clip_bounds(
    cfg: DataConfig, catalog: Catalog, indexes: Sequence[int]
) -> tuple[Clip, list[float], list[float]]:
    """Clip bounds at ``data.clip_percentiles`` of sampled valid training pixels."""
    from geociss.data.reader import WindowReader

    assert cfg.clip_percentiles is not None
    reader = WindowReader(catalog.tiles, catalog.schema, bands=cfg.bands)
    chunks = []
    try:
        for i in indexes:
            for window in sample_windows(i, catalog.tiles[i]):
                image, _, valid = reader.read(window)
                chunks.append(image[:, valid])
    finally:
        reader.close()
    try:
        return clipped_statistics(np.concatenate(chunks, axis=1), cfg.clip_percentiles)
    except ValueError as err:
        raise DataError(catalog.images_dir, f"data.clip_percentiles: {err}") from None


def holdout(stem: str, fraction: float) -> bool:
    """Deterministic train/validation assignment of a tile from its stem (stable across runs)."""
    digest = hashlib.sha1(stem.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


@dataclass
class ExperimentData:
    """Training and validation tiles of an experiment, with normalisation statistics.

    Attributes:
        schema: the class schema.
        train: training catalogue (all of its tiles, before any split).
        train_tiles: indexes (into ``train.tiles``) of the tiles used for training.
        val_tiles: the validation tiles.
        mean: per-band mean of the training tiles.
        std: per-band standard deviation of the training tiles.
        scaling: how the input is scaled (:mod:`geociss.data.scaling`); ``mean``/``std`` are
            what :func:`~geociss.data.normalise.normalise` applies after its clip bounds.
    """

    schema: ClassSchema
    train: Catalog
    train_tiles: list[int]
    val_tiles: list[TileRecord]
    mean: list[float]
    std: list[float]
    scaling: Scaling = field(default_factory=Scaling)

    @classmethod
    def load(cls, cfg: DataConfig, schema: ClassSchema, progress: bool = False) -> ExperimentData:
        """Scan the folders (cached), split off validation tiles, compute normalisation."""
        kwargs: dict[str, Any] = {
            "image_glob": cfg.image_glob,
            "label_glob": cfg.label_glob,
            "bands": cfg.bands,
            "label_attribute": cfg.label_attribute,
            "progress": progress,
            "nodata": cfg.nodata,
        }
        val: Catalog | None = None
        if cfg.dataset is not None:  # an official distribution (data/README.md)
            from geociss.data.isprs import experiment_catalogs

            train, val = experiment_catalogs(cfg, schema, progress)
        else:
            assert cfg.images is not None
            train = Catalog.scan(cfg.images, cfg.labels, schema, chip_size=cfg.chip_size, **kwargs)
        if cfg.val_images is not None:
            if cfg.val_labels is None:
                raise DataError(cfg.val_images, "data.val_images is set but data.val_labels is not")
            val = Catalog.scan(cfg.val_images, cfg.val_labels, schema, **kwargs)
        if val is not None:
            train_idx = list(range(len(train.tiles)))
            val_tiles = list(val.tiles)
        else:
            held = [holdout(t.stem, cfg.val_fraction) for t in train.tiles]
            if cfg.val_fraction > 0 and not any(held) and len(train.tiles) > 1:
                held[-1] = True  # at least one validation tile when asked for a split
            if all(held):
                held[0] = False
            train_idx = [i for i, h in enumerate(held) if not h]
            val_tiles = [t for t, h in zip(train.tiles, held, strict=True) if h] or list(
                train.tiles
            )
        scaling, mean, std = input_scaling(cfg, train, train_idx)
        check_normalization(
            mean,
            std,
            len(mean),
            train.images_dir,
            f"computed from the training tile(s) {_tile_names(train, train_idx)}",
        )
        return cls(schema, train, train_idx, val_tiles, mean, std, scaling)

    def regions(self) -> list[Region]:
        """Regions of the training tiles (chips when ``data.chip_size`` is set)."""
        keep = set(self.train_tiles)
        return [r for r in self.train.regions() if r.tile in keep]

    def step_regions(self, scenario: Scenario, step: int) -> list[Region]:
        """Training regions of a step (overlap/disjoint selection on the original labels)."""
        chosen = scenario.select(self.regions(), step)
        if not chosen:
            names = ", ".join(scenario.schema.names[c] for c in scenario.steps[step])
            raise DataError(
                self.train.images_dir, f"step {step} has no training data: no tile holds {names}"
            )
        return chosen

    def fingerprint(self, regions: Sequence[Region]) -> str:
        """Short hash of the data a step trains on (files, sizes, mtimes, windows)."""
        h = hashlib.sha256()
        for r in regions:
            rec = self.train.tiles[r.tile]
            h.update(f"{rec.stem}:{rec.fingerprint}:{r.window}".encode())
        return h.hexdigest()[:16]


def step_class_weights(
    weights: Mapping[str, float] | None,
    schema: ClassSchema,
    labelled: Collection[int] | None = None,
) -> dict[str, float] | None:
    """The sampling weights (by class name) that apply at a step: those of its labelled classes.

    A class the step does not label (a class of a later step, an old class) is background in
    its data, and in a real scenario its pixels are not known at that step: weighting them
    would steer the step's windows with labels it does not have (with ISPRS car ×100, 55 % of
    the windows of the cpu benchmark's 4-1 step 0 would come from chips that hold cars, 10 %
    without: ``python -m benchmarks.diag_step_weights``). Its pixels weigh 1, as the
    background's do. ``labelled`` None: every class. None when no weight applies.
    """
    if not weights:
        return None
    kept = {
        name: float(w)
        for name, w in weights.items()
        if labelled is None or schema.class_id(name) in labelled
    }
    return kept or None


def step_weights(
    scenario: Scenario, step: int, keep_old: bool, weights: Mapping[str, float] | None
) -> dict[str, float] | None:
    """The sampling weights that apply at ``step``: those of the classes its labels show."""
    labelled = frozenset(scenario.labelled_classes(step, keep_old=keep_old))
    return step_class_weights(weights, scenario.schema, labelled)


def step_sampling(
    cfg: DataConfig, scenario: Scenario, step: int, keep_old: bool
) -> tuple[DataConfig, list[str]]:
    """The data settings ``step`` samples with, and the names of the class weights left out.

    The settings are ``cfg`` with only the class weights that apply at the step
    (:func:`step_weights`); a :class:`StepDataModule` given them draws its windows with them.
    """
    applied = step_weights(scenario, step, keep_old, cfg.class_weights)
    dropped = sorted(set(cfg.class_weights or {}) - set(applied or {}))
    return cfg.model_copy(update={"class_weights": applied}), dropped


class StepDataModule(L.LightningDataModule):
    """Training loader of one step: random windows of the selected regions, labels via a LUT.

    Its batches hold raw band values and uint8 masks (:mod:`geociss.data.dataset`); the
    step's module normalises them on the training device. The sampler is built when the loader
    is requested, with this process's rank and the world size, so each DDP rank draws its own
    share of the epoch's windows (Lightning's own distributed sampler is disabled by the
    runner).
    """

    def __init__(
        self,
        tiles: Sequence[TileRecord],
        schema: ClassSchema,
        regions: Sequence[Region],
        lut: np.ndarray,
        cfg: DataConfig,
        seed: int,
    ) -> None:
        super().__init__()
        self.tiles, self.schema, self.regions = list(tiles), schema, list(regions)
        self.lut, self.cfg, self.seed = lut, cfg, seed

    def class_weights(self) -> dict[int, float] | None:
        """Class-aware sampling weights by class id: all of ``cfg.class_weights``.

        A scenario step is given the settings of :func:`step_sampling`, which keep only the
        weights that apply at the step.
        """
        weights = self.cfg.class_weights
        return {self.schema.class_id(k): v for k, v in weights.items()} if weights else None

    def train_dataloader(self) -> DataLoader:
        """Random windows for this rank."""
        trainer = self.trainer
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        sampler = RandomWindowSampler(
            self.regions,
            self.cfg.patch_size,
            self.cfg.samples_per_epoch,
            seed=self.seed,
            class_weights=self.class_weights(),
            tiles=self.tiles,
            rank=rank,
            world_size=world,
        )
        from geociss.engine.resume import resumable_loader  # resumes mid-epoch

        return resumable_loader(
            WindowDataset(self.tiles, self.schema, bands=self.cfg.bands),
            sampler,  # type: ignore[arg-type]
            self.seed,
            batch_size=self.cfg.batch_size,
            collate_fn=Collate(self.lut),
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=len(sampler) >= self.cfg.batch_size,
        )
