"""``geociss extend``: train one new step of a bundle on data labelled for the new classes only.

Steps are prepared with :mod:`geociss.engine.step`, as the runner's are. :func:`extend_bundle` is
the production workflow: add classes to a trained model from a folder (or polygon file)
labelled for the **new classes only**, without the old training data:

* label rasters: value ``k`` (1-based) is the k-th new class, or the values given as
  ``label_values``; 0 is "anything else" (the background of this step, which hides the old
  classes: the "background shift"); 255 is ignored. Any other value is an error.
  Polygon files: the class attribute holds new class names (or 1-based numbers); pixels outside
  every polygon are background.
* the new classes join the bundle's class schema (appended ids and colours; a schema class the
  model never learned, such as ISPRS ``car`` after step 0 of a 4-1 run, keeps its id) and get
  new channels after the old ones (:mod:`geociss.engine.new_classes`); the bundle's history
  grows by one step.
* inputs are normalised with the **bundle's** mean/std, not statistics of the new images: the
  old weights only make sense on inputs scaled as in their training (a warning is logged when
  the new images look very different). The bundle's bands (its ``data.bands`` selection)
  are read everywhere: scan, training windows, pre-pass, evaluation.
* the step trains on tiles holding at least one new-class pixel (MiB's overlap protocol) and
  is evaluated on held-out tiles of the new data. That data has no old labels, so the
  evaluation can only score **new classes against everything else**: a prediction of an old
  class counts as "rest". Old classes need :mod:`geociss.engine.assess` on old labels.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from geociss.config.experiment import RUN_ONLY_TRAIN_KEYS, DataConfig, MethodConfig, TrainConfig
from geociss.data.classes import IGNORE_INDEX, ClassSchema
from geociss.data.records import Region
from geociss.data.scaling import with_nodata
from geociss.data.vector_labels import is_vector
from geociss.engine.bundle import StepBundle, StepRecord
from geociss.engine.freshness import DATA_PATH_KEYS
from geociss.engine.new_classes import extend_schema, extended_scenario, new_label_schema
from geociss.engine.step import StepData, grow_student, prepare_step, training_device
from geociss.errors import ConfigError, DataError, UnknownLabelValueError
from geociss.evaluation.retention import Retention
from geociss.evaluation.scores import Scores
from geociss.interrupts import raise_if_interrupted
from geociss.methods.base import IncrementalMethod, StepContext

if TYPE_CHECKING:
    from geociss.engine.data import ExperimentData
    from geociss.models.segmenter import SegmentationModel

SCOPE = "new classes vs rest, on held-out tiles of the new data; old classes not evaluated"
"""How the metrics of an ``extend`` step were measured (stored with them)."""


@dataclass
class ExtendRequest:
    """One ``geociss extend`` run.

    Attributes:
        model: the bundle to extend (never modified).
        out: where the extended bundle is written.
        new_classes: names of the classes the labels hold.
        data: images, labels, sampling and evaluation settings (``data.class_schema`` unused).
        train: optimisation settings; ``epochs_incremental``/``lr_incremental`` train the step.
        method: the incremental method and its parameters.
        colors: ``#rrggbb`` per new class (default: automatic).
        label_values: raw label value of each new class (default: 1, 2, ...).
        overwrite: replace ``out`` when it exists.
        work_dir: keep logs and checkpoints there (resumable); default: a temporary folder.
        full_labels: the labels hold every class; ``label_values`` are the new classes and
            every other value is background.
    """

    model: Path
    out: Path
    new_classes: list[str]
    data: DataConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    colors: list[str] | None = None
    label_values: list[int] | None = None
    overwrite: bool = False
    work_dir: Path | None = None
    full_labels: bool = False


@dataclass
class ExtendResult:
    """What :func:`extend_bundle` produced.

    Attributes:
        bundle: the extended bundle (written to ``path``).
        path: the output file.
        scores: new classes vs rest on the evaluation tiles (channel 0 = rest, in no mean).
        train_tiles: tiles the step could train on.
        eval_tiles: tiles it was evaluated on.
        held_out: False when the evaluation tiles are training tiles (too few tiles).
        retention: how much of each old class the extended model keeps of the input model's
            map on the evaluation tiles (no old labels needed).
    """

    bundle: StepBundle
    path: Path
    scores: Scores
    train_tiles: int
    eval_tiles: int
    held_out: bool
    retention: Retention | None = None


@dataclass
class _Plan:
    """An extend run, validated and resolved before training."""

    req: ExtendRequest
    bundle: StepBundle
    schema: ClassSchema  # the extended schema
    ids: list[int]  # class id of each new class in ``schema``
    labels: ClassSchema  # how the new-class labels are read
    method: IncrementalMethod
    data: ExperimentData
    regions: list[Region]

    @property
    def step(self) -> int:
        return len(self.bundle.steps)

    @functools.cached_property
    def fingerprint(self) -> str:  # taken once: the checkpoint marker and the bundle agree
        return self.data.fingerprint(self.regions)

    @property
    def held_out(self) -> bool:
        trained = {self.data.train.tiles[i].stem for i in self.data.train_tiles}
        return not trained & {t.stem for t in self.data.val_tiles}


def _check_paths(req: ExtendRequest) -> None:
    if req.out.exists() and req.model.exists() and req.out.resolve() == req.model.resolve():
        raise DataError(req.out, "is the input bundle; write the extended model to another file")
    if req.out.is_dir():
        raise DataError(req.out, "is a folder; --out must be a .safetensors file path")
    if req.out.exists() and not req.overwrite:
        raise DataError(req.out, "already exists; pass --overwrite to replace it")


def _data_config(req: ExtendRequest, bundle: StepBundle) -> DataConfig:
    """``req.data`` with the bundle's band selection (the bands the model was trained on).

    The scan, the training windows and the pre-pass all read these bands. Files without a
    nodata tag get ``--nodata``, else the bundle's training nodata value.
    """
    from geociss.engine.assess import bundle_bands, bundle_nodata

    # the bundle's scaling applies; the new images' statistics only feed warn_statistics
    plain = {"normalization": "bands", "scale": None, "offset": None, "clip_percentiles": None}
    nodata = bundle_nodata(bundle, req.data.nodata)
    return req.data.model_copy(update={"bands": bundle_bands(bundle), "nodata": nodata, **plain})


def _load_data(
    req: ExtendRequest, bundle: StepBundle, schema: ClassSchema, progress: bool
) -> tuple[ExperimentData, list[Region]]:
    """Scan the new data (bundle's bands), split it, and pick tiles holding a new class."""
    from geociss.engine.assess import check_bands
    from geociss.engine.data import ExperimentData

    cfg = _data_config(req, bundle)
    try:
        data = ExperimentData.load(cfg, schema, progress=progress)
    except UnknownLabelValueError as err:
        known = ", ".join(f"{c.values[0]} = {c.name}" for c in schema.classes[1:])  # type: ignore[index]
        raise DataError(
            err.path,
            f"unknown label value(s) {', '.join(err.values[:8])}; new-class labels hold "
            f"0 = background, {known}, 255 = ignore (map other values with --label-values)",
        ) from None
    check_bands(data.train.tiles, bundle)
    regions = [r for r in data.regions() if r.hist[1:].sum() > 0]
    if not regions:
        hint = "; lower --val-fraction" if req.data.val_fraction > 0 else ""
        where = data.train.labels or data.train.images_dir
        raise DataError(where, f"no training tile holds {', '.join(schema.names[1:])}{hint}")
    return data, regions


def _plan(req: ExtendRequest, progress: bool) -> _Plan:
    """Check every option and input before any training."""
    from geociss.engine.assess import bundle_normalisation
    from geociss.methods import get_method

    _check_paths(req)
    bundle = StepBundle.load(req.model)
    bundle_normalisation(bundle)  # a bundle without mean/std fails before the data is read
    method_cls = get_method(req.method.name)
    if method_cls.single_step:
        raise ConfigError(
            f"method {req.method.name!r} trains all classes at once and needs the old data; "
            "choose an incremental method"
        )
    learned = [c for c in bundle.channels if c is not None]
    schema, ids = extend_schema(bundle.schema, req.new_classes, req.colors, learned)
    if req.full_labels and is_vector(Path(req.data.labels)):
        raise ConfigError(
            f"--full-labels reads label rasters; {req.data.labels} is a polygon file (its class "
            "attribute already names the new classes)"
        )
    labels = new_label_schema(schema, ids, req.label_values, req.full_labels)
    context = StepContext(len(bundle.steps), (*bundle.classes_per_step, len(ids)))
    method = method_cls.from_config(req.method.params, context)
    data, regions = _load_data(req, bundle, labels, progress)
    return _Plan(req, bundle, schema, ids, labels, method, data, regions)


def _digest(plan: _Plan, paths: bool = False) -> str:
    """Hash of the input bundle and every setting (resumes a run in the same ``work_dir``).

    Where the data lie is left out (the checkpoint's marker adds the files' fingerprint);
    ``paths=True``: the hash as earlier versions wrote it, data paths included.
    """
    req = plan.req
    h = hashlib.sha256(req.model.read_bytes())
    hidden = {"num_workers"} if paths else {"num_workers", *DATA_PATH_KEYS}
    payload = {
        "data": req.data.model_dump(mode="json", exclude=hidden),
        "train": req.train.model_dump(
            mode="json", exclude={"accelerator", "devices", *RUN_ONLY_TRAIN_KEYS}
        ),
        "method": req.method.model_dump(mode="json"),
        "schema": plan.schema.to_dict(),
        "label_values": req.label_values,
        "full_labels": req.full_labels,
    }
    h.update(json.dumps(payload, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _train(plan: _Plan, mean: list[float], std: list[float], progress: bool) -> SegmentationModel:
    """Grow the bundle's model by the new classes and fit the step; return the student."""
    from geociss.engine.assess import bundle_clip
    from geociss.engine.trainer import fit_step

    req, step, k = plan.req, plan.step, len(plan.ids)
    student, teacher = grow_student(plan.bundle, k, req.train.seed + step)
    old = sum(plan.bundle.classes_per_step)
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[: k + 1] = [0, *range(old, old + k)]
    cfg = _data_config(req, plan.bundle)
    clip = bundle_clip(plan.bundle)
    data = StepData(plan.data.train.tiles, plan.labels, plan.regions, lut, cfg, mean, std, clip)
    module, dm = prepare_step(
        student,
        teacher,
        plan.method,
        data,
        req.train,
        step=step,
        restore=plan.bundle.extra_tensors,
    )
    with tempfile.TemporaryDirectory(prefix="geociss-extend-") as tmp:
        step_dir = req.work_dir or Path(tmp)
        fit_step(
            module,
            dm,
            req.train,
            step_dir,
            req.train.epochs_for(step),
            f"{_digest(plan)} {plan.fingerprint}",
            progress,  # the files too
            also=[f"{_digest(plan, paths=True)} {plan.fingerprint}"],  # earlier versions'
        )
    raise_if_interrupted()  # a SIGTERM in the fit's last batch: write no bundle
    return student.cpu().eval()


def _retention(plan: _Plan, student: SegmentationModel) -> Retention:
    """Old-class agreement of the student with the input model on the evaluation tiles."""
    from geociss.engine.assess import bundle_bands, bundle_clip, bundle_normalisation, predict_rule
    from geociss.engine.retention import measure_retention, scoring_lut

    req, k = plan.req, len(plan.ids)
    mean, std = bundle_normalisation(plan.bundle)
    where = "held-out tiles" if plan.held_out else "training tiles"
    return measure_retention(
        student,
        plan.bundle.build_model(),
        plan.method.predict,
        predict_rule(plan.bundle),
        plan.bundle.channel_names,
        len(plan.bundle.channels) + k,
        plan.data.val_tiles,
        plan.labels,
        scoring_lut(range(1, k + 1)),
        mean,
        std,
        scope=f"{where} of the new data ({len(plan.data.val_tiles)}), outside new-class labels",
        background=plan.bundle.schema.background_name,
        size=req.data.eval_tile,
        overlap=req.data.eval_overlap,
        batch_size=max(1, req.data.batch_size // 2),
        device=str(training_device(req.train)),
        bands=bundle_bands(plan.bundle),
        clip=bundle_clip(plan.bundle),
    )


def _extended_bundle(
    plan: _Plan, student: SegmentationModel, scores: Scores, retention: Retention
) -> StepBundle:
    """The output bundle: the student, the extended schema, the history plus this step."""
    req, bundle, schema = plan.req, plan.bundle, plan.schema
    scope = SCOPE if plan.held_out else SCOPE.replace("held-out tiles", "the training tiles")
    info = {
        "config_hash": _digest(plan),
        "extended_from": req.model.name,
        "images": str(req.data.images),
        "labels": str(req.data.labels),
        "epochs": req.train.epochs_for(plan.step),
        "lr": req.train.lr_for(plan.step),
        "params": req.method.params,
        "normalisation": "from the extended bundle",
        "label_values": [int(c.values[0]) for c in plan.labels.classes[1:]],  # type: ignore[index]
        "retention": retention.to_dict(),
    }
    record = StepRecord(
        list(plan.ids),
        req.method.name,
        plan.fingerprint,
        {**scores.to_dict(), "scope": scope},
        info,
    )
    steps = [*bundle.steps, record]
    return StepBundle.from_model(
        student,
        schema=schema,
        steps=steps,
        extra_tensors=plan.method.extra_tensors(),
        mean=bundle.mean,
        std=bundle.std,
        scaling=with_nodata(bundle.scaling, plan.data.scaling.nodata),
        bands=list(bundle.bands),
        gsd=bundle.gsd,
        scenario=extended_scenario(bundle.scenario, schema, steps),
    )


def extend_bundle(
    req: ExtendRequest, log: Callable[[str], None] = print, progress: bool = True
) -> ExtendResult:
    """Add ``req.new_classes`` to the bundle ``req.model``; write the result to ``req.out``.

    The output is locked (``<out>.lock``) while the run lasts.

    Raises:
        ConfigError: bad options (names, colours, label values, method).
        DataError: unreadable or inconsistent inputs, an existing output without ``overwrite``.
        LockedError: another live process writes the same output.
    """
    from geociss.locks import OutputLock

    with OutputLock(req.out, "geociss extend", log=log):
        return _extend(req, log, progress)


def _extend(req: ExtendRequest, log: Callable[[str], None], progress: bool) -> ExtendResult:
    """The body of :func:`extend_bundle`, under the output's lock."""
    from geociss.engine.assess import bundle_normalisation, new_vs_rest, warn_statistics

    plan = _plan(req, progress)
    mean, std = bundle_normalisation(plan.bundle)
    warn_statistics(plan.data.mean, plan.bundle, log)
    log(
        f"step {plan.step}: learning {', '.join(plan.labels.names[1:])} from "
        f"{len(plan.regions)} tile(s) with {req.method.name}; the model knows "
        f"{', '.join(plan.bundle.channel_names)}"
    )
    student = _train(plan, mean, std, progress)
    scores = new_vs_rest(
        student,
        plan.method.predict,
        plan.data.val_tiles,
        plan.labels,
        plan.bundle,
        plan.step,
        size=req.data.eval_tile,
        overlap=req.data.eval_overlap,
        batch_size=max(1, req.data.batch_size // 2),
        device=str(training_device(req.train)),
        progress=progress,
    )
    retention = _retention(plan, student)
    out = _extended_bundle(plan, student, scores, retention)
    out.save(req.out)
    out.source = req.out
    data = plan.data
    return ExtendResult(
        out, req.out, scores, len(data.train_tiles), len(data.val_tiles), plan.held_out, retention
    )
