"""The experiment config: data, model, scenario, method and training of one ``geociss train`` run.

Written as layered YAML (see :mod:`geociss.config.load`), validated here with messages that
name the key and what is allowed. Relative data paths are relative to the directory the command
runs in, as paths given on the command line are.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from geociss.config.load import load_config
from geociss.config.validation import validate_model
from geociss.data.scenarios import ScenarioConfig
from geociss.errors import ConfigError
from geociss.models.config import ModelConfig


class DataConfig(BaseModel):
    """Where the training and validation data are and how they are sampled."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    images: Path | None = Field(
        default=None, description="Folder of training image GeoTIFFs (or data.dataset + root)."
    )
    labels: Path | None = Field(
        default=None,
        description="Folder of label rasters, or a GeoPackage/Shapefile of polygons.",
    )
    dataset: str | None = Field(
        default=None,
        description="An official benchmark read from its distribution archives under data.root "
        "instead of data.images/labels: potsdam or vaihingen (see data/README.md).",
    )
    root: Path | None = Field(
        default=None,
        description="Folder holding data.dataset's official zip archives or extracted folders.",
    )
    modality: str | None = Field(
        default=None,
        description="Image product of data.dataset: Potsdam rgb (default), irrg or rgbir; "
        "Vaihingen irrg.",
    )
    split: Literal["official", "train-holdout"] = Field(
        default="official",
        description="data.dataset only. 'official': train on the official training tiles, "
        "validate on the test tiles; 'train-holdout': training tiles only, val_fraction held out.",
    )
    eroded: bool = Field(
        default=False,
        description="data.dataset only: validate on the labels with eroded class boundaries.",
    )
    exclude_tiles: list[str | int] | None = Field(
        default=None,
        description="data.dataset only: tile ids to leave out (default: the known bad tiles, "
        "Potsdam 4_12); [] keeps every tile. A list replaces the default, so name 4_12 too to "
        "keep it out. Quote ids ('4_12'): unquoted, YAML reads 4_12 as the number 412.",
    )
    class_schema: str = Field(
        default="isprs",
        alias="schema",
        description="Class schema: a preset name (isprs, isprs-rgb) or a YAML path. A preset name "
        "always means the preset, even if a file or folder of that name is in the working "
        "directory; write ./isprs for such a file.",
    )
    val_images: Path | None = Field(default=None, description="Validation images (default: split).")
    val_labels: Path | None = Field(default=None, description="Validation labels.")
    val_fraction: float = Field(
        default=0.25,
        ge=0.0,
        lt=1.0,
        description="Share of training tiles held out for validation when no val folder is given "
        "(chosen deterministically by file stem).",
    )
    image_glob: str = Field(default="*.tif", description="Glob of image files.")
    label_glob: str | None = Field(
        default=None,
        description="Glob of label files (default: same as image_glob); the text matched by the "
        "wildcards pairs images and labels (top_potsdam_*_RGB.tif with top_potsdam_*_label.tif).",
    )
    bands: list[int] | None = Field(
        default=None,
        description="1-based image bands to use, in this order (default: every band but an "
        "alpha band). model.in_channels follows their count; the bundle records them, so "
        "extend, evaluate and predict read the same bands.",
    )
    normalization: Literal["bands", "imagenet", "fixed"] = Field(
        default="bands",
        description="Input scaling: 'bands' (mean and standard deviation of each band over the "
        "valid pixels of the training tiles), 'imagenet' (the ImageNet mean/std that pretrained "
        "encoders were trained with, for 8-bit RGB in the first three bands; any further band by "
        "its own statistics) or 'fixed' ((x - data.offset) / data.scale, no statistics). Stored "
        "in the bundle, so evaluate, extend and predict scale the same way.",
    )
    scale: float | list[float] | None = Field(
        default=None,
        description="normalization: fixed only: divide by this, one value or one per band "
        "(e.g. 10000 for reflectance stored as integers); required with fixed.",
    )
    offset: float | list[float] | None = Field(
        default=None,
        description="normalization: fixed only: subtract this before dividing by data.scale, "
        "one value or one per band (default 0).",
    )
    clip_percentiles: list[float] | None = Field(
        default=None,
        description="[low, high] percentiles (0-100), e.g. [2, 98]: each band is clipped to "
        "these percentiles of the training tiles' valid pixels before scaling; the bounds are "
        "stored in the bundle. Default: no clipping.",
    )
    nodata: float | None = Field(
        default=None,
        description="Nodata value of images whose files carry no nodata tag (pixels where every "
        "band equals it are invalid: ignored in training, statistics and scores). A tag in the "
        "file wins. The bundle records it (or the nodata tag every training tile shares), and "
        "extend, evaluate and predict apply it to untagged files unless --nodata is given; "
        "scan takes it as --nodata.",
    )
    label_attribute: str = Field(default="class", description="Class attribute of vector labels.")
    chip_size: int | None = Field(
        default=None,
        ge=16,
        description="Cut tiles into chips of this size for step data selection (IDEC: 600).",
    )
    patch_size: int = Field(default=256, ge=16, description="Training window size in pixels.")
    batch_size: int = Field(default=8, ge=1, description="Training batch size per device.")
    samples_per_epoch: int = Field(default=2000, ge=1, description="Random windows per epoch.")
    num_workers: int = Field(
        default=2,
        ge=0,
        description="DataLoader worker processes reading the training windows "
        "(0: read in the main process). Workers hand each batch over in shared memory as the "
        "raster's own values and dtype (uint8, uint16, ...; float64 as float32), the labels as "
        "uint8 and, only for batches with invalid pixels, a bool nodata mask; the conversion to "
        "float, the nodata filling, the normalisation and the augmentation run in the main "
        "process, on the training device. Default 2, from `python -m benchmarks.bench_sampler` "
        "on 2 cores (docs/benchmarks.md): with tiles larger than GDAL's block cache (real "
        "datasets) 2 workers load random windows 1.25x as fast as the main process alone; with "
        "tiles that fit in the cache 0.8x, the cost of handing batches between processes. "
        "Workers are kept between epochs. 0 suits small data on a CPU-only machine of 2 cores, "
        "where the workers also take cores from the model.",
    )
    class_weights: dict[str, float] | None = Field(
        default=None,
        description="Class-aware window sampling weights by class name (e.g. car: 4): a region "
        "is drawn in proportion to Σ weight × pixels of each class. A weight applies only at the "
        "steps whose labels show its class (a class of a later step is background before it, "
        "and its pixels weigh 1 there, as a real scenario's labels would not show them).",
    )
    eval_tile: int = Field(default=512, ge=16, description="Sliding-window size for evaluation.")
    eval_overlap: int = Field(default=64, ge=0, description="Overlap of evaluation windows.")

    @model_validator(mode="after")
    def _check_scaling(self) -> DataConfig:
        fixed = self.normalization == "fixed"
        if fixed and self.scale is None:
            raise ValueError("data.normalization: fixed needs data.scale (e.g. 10000)")
        if not fixed and (self.scale is not None or self.offset is not None):
            raise ValueError("data.scale and data.offset need data.normalization: fixed")
        for name, value in (("scale", self.scale), ("offset", self.offset)):
            values = [value] if isinstance(value, int | float) else value or []
            if not all(math.isfinite(v) for v in values) or (name == "scale" and value == []):
                raise ValueError(f"data.{name} must be finite numbers, got {value}")
            if name == "scale" and any(v <= 0 for v in values):
                raise ValueError(f"data.scale must be above 0, got {value}")
        clip = self.clip_percentiles
        if clip is not None and (len(clip) != 2 or not 0 <= clip[0] < clip[1] <= 100):
            raise ValueError(
                f"data.clip_percentiles must be [low, high] with 0 <= low < high <= 100, got {clip}"
            )
        if self.nodata is not None and not math.isfinite(self.nodata):
            raise ValueError(f"data.nodata must be a finite number, got {self.nodata}")
        return self

    @model_validator(mode="after")
    def _check_source(self) -> DataConfig:
        if self.dataset is None:
            if self.images is None or self.labels is None:
                raise ValueError("give data.images and data.labels, or data.dataset and root")
            return self
        from geociss.data.isprs import check_source

        if self.images is not None or self.labels is not None or self.val_images is not None:
            raise ValueError("data.dataset reads images and labels from data.root; remove "
                             "data.images, data.labels and data.val_images")
        if self.root is None:
            raise ValueError("data.dataset needs data.root (the folder of the archives)")
        try:
            check_source(self.dataset, self.modality, self.exclude_tiles)
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return self


RUN_ONLY_TRAIN_KEYS = ("checkpoint_every_n_steps", "progress_every_n_steps")
"""``train`` keys that change how a step runs, not what it learns: they are left out of the
step hashes, so that changing them resumes a run instead of restarting it."""


class TrainConfig(BaseModel):
    """Optimisation and hardware settings (the papers' values: configs/train/paper.yaml)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=30, ge=1, description="Epochs of step 0 (and joint).")
    epochs_incremental: int | None = Field(
        default=None, ge=1, description="Epochs of steps ≥ 1 (default: same as epochs)."
    )
    lr: float = Field(default=0.01, gt=0, description="Learning rate of step 0 (and joint).")
    lr_incremental: float = Field(default=0.001, gt=0, description="Learning rate of steps ≥ 1.")
    optimizer: Literal["sgd", "adamw"] = Field(
        default="sgd",
        description="Optimiser of step 0 (and joint): 'sgd' (Nesterov momentum, the papers') or "
        "'adamw' (momentum ignored).",
    )
    optimizer_incremental: Literal["sgd", "adamw"] = Field(
        default="sgd",
        description="Optimiser of steps >= 1: 'sgd' (the papers') or 'adamw'.",
    )
    head_lr_mult: float = Field(
        default=1.0, gt=0, description="Head (ASPP + classifiers) learning rate × this factor."
    )
    momentum: float = Field(default=0.9, ge=0, lt=1, description="SGD momentum (Nesterov).")
    weight_decay: float = Field(default=1e-4, ge=0, description="SGD weight decay.")
    poly_power: float = Field(default=0.9, ge=0, description="Poly learning-rate schedule power.")
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = Field(
        default="auto", description="'auto': bf16-mixed on GPU, 32-bit on CPU."
    )
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = Field(
        default="auto",
        description="Lightning accelerator: 'auto' (a GPU when one is visible, else the CPU), "
        "'cpu', 'gpu'/'cuda' or 'mps' (Apple).",
    )
    devices: int | Literal["auto"] = Field(default=1, description="Devices per node (DDP if > 1).")
    num_nodes: int = Field(default=1, ge=1, description="Nodes (multi-node DDP).")
    seed: int = Field(default=0, description="Seed of sampling, augmentation and initialisation.")
    freeze_norm_incremental: bool = Field(
        default=False,
        description="Freeze every normalisation layer (BatchNorm statistics and affine weights) "
        "at steps >= 1, whatever the method. Recommended for small batches: a student whose "
        "BatchNorm uses batch statistics drifts from the teacher's running statistics, which "
        "inflates feature distillation. DKD and IDEC freeze them anyway.",
    )
    gradient_clip: float | None = Field(
        default=None,
        gt=0,
        description="Clip the global gradient norm to this value at every step (off by default, "
        "as in the papers). A guard for strong distillation weights at a high learning rate: "
        "ILT's 100 · KD + 100 · MSE or PLOP's POD on features trained from scratch can blow up.",
    )
    channels_last: bool = Field(default=True, description="Use channels_last memory format.")
    checkpoint_every_n_steps: int = Field(
        default=200,
        ge=0,
        description="Training steps between two resume checkpoints (checkpoints/last.ckpt of "
        "the step) within an epoch; one is also written at every epoch end. A killed train, or "
        "extend with --work-dir, resumes from the last one. 0: at epoch ends only.",
    )
    progress_every_n_steps: int = Field(
        default=50,
        ge=0,
        description="When standard output is not a terminal (a log file, a pipe), a progress "
        "line every this many training steps within an epoch, besides the one at every epoch "
        "end. 0: at epoch ends only.",
    )
    augment: dict[str, Any] = Field(
        default_factory=dict, description="Augmentation options (flip, rot90, scale, gain, offset)."
    )

    def epochs_for(self, step: int) -> int:
        """Epochs of a step."""
        return self.epochs if step == 0 else (self.epochs_incremental or self.epochs)

    def optimizer_for(self, step: int) -> str:
        """Optimiser of a step."""
        return self.optimizer if step == 0 else self.optimizer_incremental

    def lr_for(self, step: int) -> float:
        """Base learning rate of a step."""
        return self.lr if step == 0 else self.lr_incremental


class MethodConfig(BaseModel):
    """Which method runs the incremental steps, and its hyper-parameters."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="finetune", description="Registered method name (see README).")
    params: dict[str, Any] = Field(default_factory=dict, description="Method hyper-parameters.")


class ExperimentConfig(BaseModel):
    """One ``geociss train`` run."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        default="experiment",
        pattern=r"^[A-Za-z0-9._-]*[A-Za-z0-9_-][A-Za-z0-9._-]*$",
        description="Run name (letters, digits, '.', '_', '-'; not only dots).",
    )
    out: Path = Field(default=Path("runs"), description="Parent folder of the run folder.")
    data: DataConfig = Field(description="Training and validation data (section data).")
    model: ModelConfig = Field(
        default_factory=ModelConfig, description="The network (section model)."
    )
    scenario: ScenarioConfig = Field(description="Classes learned at each step (section scenario).")
    method: MethodConfig = Field(
        default_factory=MethodConfig,
        description="Method of the incremental steps and its parameters (section method).",
    )
    train: TrainConfig = Field(
        default_factory=TrainConfig, description="Optimisation and hardware (section train)."
    )

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        if self.data.eval_overlap >= self.data.eval_tile:
            raise ValueError("data.eval_overlap must be smaller than data.eval_tile")
        return self

    @property
    def run_dir(self) -> Path:
        """Folder the run writes to: ``out/name``."""
        return self.out / self.name


def load_experiment(
    path: str | Path, overrides: list[str] | tuple[str, ...] = ()
) -> ExperimentConfig:
    """Read, merge and validate an experiment file (errors name the file and the key)."""
    data = load_config(path, overrides)
    return validate_model(ExperimentConfig, data, str(path))
