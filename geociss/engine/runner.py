"""Run the steps 0..T of a scenario: train, bundle, evaluate, report.

Per step ``t`` the run folder ``<out>/<name>/step<t>/`` receives ``bundle.safetensors`` (the
model after the step, with its class history), ``checkpoints/last.ckpt`` (resume only), CSV and
TensorBoard logs, ``metrics.json`` / ``metrics.csv`` and ``confusion.png``. The run folder gets
``config.yaml`` (resolved), ``history.json`` / ``history.csv`` and ``history.png``.

A step whose bundle exists and whose config hash matches is skipped; an interrupted step
resumes from its last checkpoint. Step 0 does not depend on the incremental method (unless the
method changes step 0, as joint training does), so its bundle is cached under
``<out>/.step0/<hash>/`` and shared by every method's run of the same data, model and scenario
(``step0/step0_cache.json`` names the entry; deleting the cache is safe: see bundle_files).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import numpy as np
import torch

from geociss.config.experiment import ExperimentConfig
from geociss.data.classes import ClassSchema
from geociss.data.scenarios import Scenario
from geociss.engine import freshness
from geociss.engine.bundle import StepBundle, StepRecord
from geociss.engine.bundle_files import (
    STEP0_DIR,
    copy_atomic,
    load_or_discard,
    record_step0_entry,
    step0_cache_note,
)
from geociss.engine.data import ExperimentData, step_sampling
from geociss.engine.evaluate import evaluate_tiles
from geociss.engine.reports import write_config, write_history, write_step_reports
from geociss.engine.run_folder import removed_unless_progress
from geociss.engine.step import StepData, grow_student, prepare_step, training_device
from geociss.engine.trainer import fit_step, resolve_precision
from geociss.errors import ConfigError
from geociss.evaluation import Scores, StepHistory
from geociss.evaluation.retention import Retention
from geociss.interrupts import raise_if_interrupted
from geociss.locks import OutputLock
from geociss.methods import get_method
from geociss.methods.base import IncrementalMethod, StepContext
from geociss.models.segmenter import SegmentationModel

BUNDLE = "bundle.safetensors"
SUPERSEDED = "bundle.before-data-change.safetensors"  # set aside when its files changed


class ScenarioRunner:
    """Train and evaluate every step of an experiment.

    Args:
        config: the validated experiment.
        log: where progress messages go (default: print).
        progress: show Lightning's progress bars.
    """

    def __init__(
        self, config: ExperimentConfig, log: Callable[[str], None] = print, progress: bool = True
    ) -> None:
        if not config.name.strip("."):
            raise ConfigError(
                f"name: {config.name!r} is not a usable run name (the run folder "
                f"{config.run_dir} would not be a new folder in {config.out}); give it at least "
                "one letter, digit, '_' or '-'"
            )
        self.config = config
        self.log = log
        self.progress = progress
        self.schema = ClassSchema.load(config.data.class_schema)
        self.scenario = Scenario.from_config(config.scenario, self.schema)
        self.method_cls = get_method(config.method.name)
        self.train_scenario = (
            self.scenario.merged() if self.method_cls.single_step else self.scenario
        )
        self.run_dir = config.run_dir
        self.data: ExperimentData | None = None

    # ---------------------------------------------------------------- hashing

    def step_hash(self, step: int, previous: str | None, paths: bool = False) -> str:
        """Hash of everything that determines the result of ``step`` (freshness.step_hash).

        ``paths=True``: the hash as earlier versions wrote it, data paths included.
        """
        return freshness.step_hash(
            self.config, self.train_scenario, self._method(step), self.method_cls.single_step,
            step, previous, paths=paths,
        )

    def _method(self, step: int) -> IncrementalMethod:
        ctx = StepContext(step, tuple(self.train_scenario.classes_per_step[: step + 1]))
        return self.method_cls.from_config(self.config.method.params, ctx)

    # ---------------------------------------------------------------- run

    def run(self) -> StepHistory:
        """Run (or resume) every step; return the per-step scores.

        The run folder is locked (``<out>/<name>.lock``) for the whole run.

        Raises:
            LockedError: another live process runs into the same run folder.
        """
        with (
            OutputLock(self.run_dir, "geociss train", log=self.log),
            removed_unless_progress(self.run_dir),
        ):
            for note in self.data_notes():
                self.log(f"note: {note}")
            self.resolve_model()
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_config(self.run_dir, self.config.model_dump(mode="json"))
            history = StepHistory(method=self.config.method.name)
            previous = legacy = None
            for step in range(self.train_scenario.num_steps):
                digest = self.step_hash(step, previous)
                legacy = self.step_hash(step, legacy, paths=True)  # earlier versions' hash
                bundle = self.run_step(step, digest, legacy)
                history.add(self.scores_of(bundle, step), step=step)
                previous = digest
            write_history(self.run_dir, history, self.config.name)
        return history

    def data_notes(self) -> list[str]:
        """Tiles of an official ISPRS distribution left out (or brought back), one line each."""
        data = self.config.data
        if data.dataset is None:
            return []
        from geociss.data.isprs import get_dataset, tile_notes

        split = "all" if data.split == "official" else "train"
        return tile_notes(get_dataset(data.dataset), split, data.exclude_tiles)

    def resolve_model(self) -> None:
        """Set ``model.in_channels`` from the images' bands (after data.bands), or check it."""
        cfg, train = self.config, self.experiment_data().train
        model = cfg.model.for_bands(train.tiles[0].bands, train.images_dir, cfg.data.bands)
        self.config = cfg.model_copy(update={"model": model})

    def _step_classes(self, step: int) -> list[str]:
        return [self.schema.names[c] for c in self.train_scenario.steps[step]]

    def step_dir(self, step: int) -> Path:
        """Folder of a step's outputs."""
        return self.run_dir / f"step{step}"

    def run_step(self, step: int, digest: str, legacy: str | None = None) -> StepBundle:
        """Train (or reuse) one step and return its bundle.

        ``legacy``: the step's hash as earlier versions computed it (data paths included); a
        bundle, shared step-0 model or checkpoint stamped with it is taken as well.
        """
        path = self.step_dir(step) / BUNDLE
        accepted = {digest, legacy} - {None}
        bundle = load_or_discard(path, self.log) if path.is_file() else None
        if bundle is not None and bundle.steps[-1].info.get("config_hash") in accepted:
            changed = self._data_change(bundle, step)
            if changed is None:
                self.log(f"step {step}: up to date, skipped ({path})")
                return self._scored(bundle, step)
            kept = path.with_name(SUPERSEDED)  # a false alarm loses nothing
            with suppress(FileNotFoundError):  # another DDP rank set it aside first
                path.replace(kept)
            self.log(f"step {step}: {changed}; training it again (the model so far: {kept})")
        cache = self.config.out / STEP0_DIR / digest / BUNDLE
        if step == 0 and not cache.is_file() and legacy is not None:
            older = self.config.out / STEP0_DIR / legacy / BUNDLE
            cache = older if older.is_file() else cache
        cached = load_or_discard(cache, self.log) if step == 0 and cache.is_file() else None
        if cached is not None and self._data_change(cached, step) is None:
            self.log(f"step 0: reusing the shared step-0 model {cache}")
            bundle = self._scored(StepBundle.load(copy_atomic(cache, path)), 0)  # atomic copy
            write_step_reports(self.step_dir(step), step, self.scores_of(bundle, step))
        else:
            bundle = self.train_step(step, digest, legacy)
            if step == 0:
                cache = self.config.out / STEP0_DIR / digest / BUNDLE
                copy_atomic(path, cache)
        if step == 0:
            record_step0_entry(self.step_dir(0), cache)
            self.log(f"note: {step0_cache_note(self.config.out)}")
        return bundle

    def _data_change(self, bundle: StepBundle, step: int) -> str | None:
        """Why a bundle whose config hash matches was trained on other files, or None."""
        current = freshness.step_fingerprints(self.experiment_data(), self.train_scenario, step)
        return freshness.training_change(bundle, current)

    def _scored(self, bundle: StepBundle, step: int) -> StepBundle:
        """``bundle``, scored again (and saved) when its validation tiles changed since."""
        current = freshness.tiles_fingerprint(self.experiment_data().val_tiles)
        if not freshness.validation_changed(bundle, current):
            return bundle
        self.log(f"step {step}: the validation tiles changed since it was scored; scoring again")
        scores = self.evaluate(bundle.build_model(), self._method(step), step)
        bundle.steps[-1].metrics.update(scores.to_dict())
        bundle.steps[-1].info[freshness.VAL_KEY] = current
        bundle.save(self.step_dir(step) / BUNDLE)
        write_step_reports(self.step_dir(step), step, scores)
        return bundle

    def _device(self) -> str:
        """Device of the pre-pass and the evaluation: CUDA when available and not refused."""
        return str(training_device(self.config.train))

    def experiment_data(self) -> ExperimentData:
        """The run's catalogues, split and normalisation (scanned once, on first use)."""
        if self.data is None:
            self.data = ExperimentData.load(self.config.data, self.schema, progress=self.progress)
        return self.data

    def _models(
        self, step: int
    ) -> tuple[SegmentationModel, SegmentationModel | None, StepBundle | None]:
        counts = self.train_scenario.classes_per_step
        if step == 0:
            torch.manual_seed(self.config.train.seed)
            return SegmentationModel(self.config.model, [counts[0]]), None, None
        prev = StepBundle.load(self.step_dir(step - 1) / BUNDLE)
        student, teacher = grow_student(prev, counts[step], self.config.train.seed + step)
        return student, teacher, prev

    def train_step(self, step: int, digest: str, legacy: str | None = None) -> StepBundle:
        """Train one step from the previous bundle; write its bundle and reports.

        A checkpoint stamped with ``digest`` (or ``legacy``, an earlier version's hash of the
        step) resumes.
        """
        cfg, data = self.config, self.experiment_data()
        step_dir = self.step_dir(step)
        step_dir.mkdir(parents=True, exist_ok=True)
        student, teacher, prev = self._models(step)
        method = self._method(step)
        regions = data.step_regions(self.train_scenario, step)
        lut = self.train_scenario.train_lut(step, keep_old=method.keep_old_labels)
        self.log(
            f"step {step}: learning {', '.join(self._step_classes(step))} on {self._device()} "
            f"({resolve_precision(cfg.train)}) from "
            f"{len(regions)} region(s) with {cfg.method.name}"
        )
        sampling, dropped = step_sampling(
            cfg.data, self.train_scenario, step, method.keep_old_labels
        )
        if dropped:
            self.log(f"step {step}: sampling weights of {', '.join(dropped)} not applied "
                     "(not labelled at this step: background there)")
        step_data = StepData(
            data.train.tiles, self.schema, regions, lut, sampling, data.mean, data.std,
            data.scaling.clip,
        )
        module, dm = prepare_step(
            student,
            teacher,
            method,
            step_data,
            cfg.train,
            step=step,
            restore=prev.extra_tensors if prev else None,
        )
        start = time.perf_counter()
        prints = freshness.step_fingerprints(data, self.train_scenario, step)
        trainer = fit_step(
            module, dm, cfg.train, step_dir, cfg.train.epochs_for(step),
            " ".join([digest, *prints]), self.progress,
            also=[" ".join([legacy, *prints])] if legacy else (),
        )  # a checkpoint resumes only with the same configuration and files
        seconds = time.perf_counter() - start
        raise_if_interrupted()  # a SIGTERM in the fit's last batch: write no bundle
        if trainer.is_global_zero:
            self.log(
                f"step {step}: {trainer.global_step} training steps in {seconds:.0f} s on "
                f"{trainer.world_size} process(es)"
            )
            bundle = self._make_bundle(
                student.cpu(), method, prev, step, digest, data.fingerprint(regions)
            )
            bundle.steps[-1].info.update(
                train_seconds=round(seconds, 2),
                train_steps=int(trainer.global_step),
                processes=int(trainer.world_size),
            )
            scores = self.evaluate(student, method, step)
            bundle.steps[-1].metrics.update(scores.to_dict())
            if teacher is not None and prev is not None:
                retention = self.retention(student, teacher, method, prev, step)
                bundle.steps[-1].info["retention"] = retention.to_dict()
            bundle.save(step_dir / BUNDLE)
            write_step_reports(step_dir, step, scores)
        trainer.strategy.barrier()
        return StepBundle.load(step_dir / BUNDLE)

    def _make_bundle(
        self,
        model: SegmentationModel,
        method: IncrementalMethod,
        prev: StepBundle | None,
        step: int,
        digest: str,
        fingerprint: str,
    ) -> StepBundle:
        data = self.experiment_data()
        chans = self.train_scenario.channels
        new = list(self.train_scenario.new_channels(step))
        record = StepRecord(
            channels=[chans[i] for i in new],
            method=self.config.method.name,
            data_fingerprint=fingerprint,
            info={"config_hash": digest, "run": self.config.name,
                  freshness.VAL_KEY: freshness.tiles_fingerprint(data.val_tiles)},
        )
        steps = [*(prev.steps if prev else []), record]
        bands = [f"band {b}" for b in (self.config.data.bands or range(1, len(data.mean) + 1))]
        return StepBundle.from_model(
            model,
            schema=self.schema,
            steps=steps,
            extra_tensors=method.extra_tensors(),
            mean=data.mean,
            std=data.std,
            scaling=data.scaling,
            bands=bands,
            gsd=_gsd(data),
            scenario=self.scenario.to_dict(),
        )

    # ---------------------------------------------------------------- evaluation

    def evaluate(self, model: SegmentationModel, method: IncrementalMethod, step: int) -> Scores:
        """Scores of ``model`` after ``step`` on the validation tiles (full-tile windows)."""
        data, cfg = self.experiment_data(), self.config.data
        scen = self.train_scenario
        device = self._device()
        model = model.to(device)
        cm = evaluate_tiles(
            model,
            method.predict,
            data.val_tiles,
            self.schema,
            scen.eval_lut(step),
            scen.seen_channels(step),
            data.mean,
            data.std,
            size=cfg.eval_tile,
            overlap=cfg.eval_overlap,
            batch_size=max(1, cfg.batch_size // 2),
            device=device,
            bands=cfg.bands,
            clip=data.scaling.clip,
        )
        model.to("cpu")
        return self.scores_from_confusion(cm, step)

    def retention(
        self, student: SegmentationModel, teacher: SegmentationModel,
        method: IncrementalMethod, prev: StepBundle, step: int,
    ) -> Retention:
        """How much of each old class the student keeps of the teacher's map (logged)."""
        from geociss.engine.retention import scenario_retention

        return scenario_retention(
            student, teacher, method.predict, prev, self.train_scenario, step,
            self.experiment_data(), self.config.data, self._device(), self.log,
        )  # fmt: skip

    def scores_from_confusion(self, cm: np.ndarray, step: int) -> Scores:
        """Scores with the old/new split of the ORIGINAL scenario (joint included)."""
        n = cm.shape[0]
        old = list(range(min(self.scenario.classes_per_step[0], n)))
        new = list(range(len(old), n))
        names = (
            self.scenario.channel_names[:n]
            if not self.method_cls.single_step
            else self.train_scenario.channel_names
        )
        return Scores.from_confusion(cm, names, old_channels=old, new_channels=new)

    def scores_of(self, bundle: StepBundle, step: int) -> Scores:
        """Scores of a step's bundle with this run's old/new split.

        They are recomputed from the stored confusion matrix, because a shared step-0 or joint
        model serves tasks with different splits.
        """
        cm = np.asarray(bundle.steps[-1].metrics["confusion"], dtype=np.int64)
        return self.scores_from_confusion(cm, step)


def _gsd(data: ExperimentData) -> float | None:
    tile = data.train.tiles[0]
    if tile.crs is None:
        return None
    return float(abs(tile.transform[0]))
