"""What identifies a finished step: the hash of its configuration and the fingerprints of its files.

The step hash (:func:`step_hash`) covers the configuration, but neither where the data lie nor
what the files hold: the same data named by a relative or an absolute path, or moved with their
modification times, give the same hash (a class schema given as a file enters by its content).
Earlier geociss also hashed the data paths as written; a bundle, shared step-0 model or
checkpoint stamped with such a hash (:func:`step_hash` with ``paths=True``) is still taken as
it is, so an upgrade trains nothing again. Every step bundle also records

* per step, the fingerprint of the data that step trained on
  (:meth:`~geociss.engine.data.ExperimentData.fingerprint`: each training tile's name, the size
  and modification time of its image and label files, and the windows drawn from it), kept in
  :attr:`~geociss.engine.bundle.StepRecord.data_fingerprint` of every record, so a bundle of
  step ``t`` knows the data of steps ``0..t``;
* the fingerprint of the validation tiles it was scored on (``info["val_fingerprint"]``).

A step whose training data (or an earlier step's) changed is trained again; a step whose
validation tiles alone changed is scored again. The test is the one ``make`` and ``rsync`` use
(size and modification time): copying the data without its times, or touching it, also counts as
a change. Bundles written before these fingerprints were checked carry none (or no validation
fingerprint) and are taken as they are.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from geociss.config.experiment import RUN_ONLY_TRAIN_KEYS
from geociss.data.records import TileRecord
from geociss.data.scenarios import Scenario
from geociss.engine.bundle import StepBundle
from geociss.engine.data import ExperimentData, step_weights

if TYPE_CHECKING:
    from geociss.config.experiment import ExperimentConfig
    from geociss.methods.base import IncrementalMethod

VAL_KEY = "val_fingerprint"
HARDWARE_KEYS = ("accelerator", "devices", "num_nodes")
"""Train keys that choose where a step runs, not what it learns (left out of the hash)."""

DATA_PATH_KEYS = ("images", "labels", "val_images", "val_labels", "root")
"""``data`` keys that say where the files lie (left out of the hash: the fingerprints say what
they hold)."""


def config_hash(payload: dict[str, Any]) -> str:
    """Stable short hash of a JSON-able mapping (the step hash of a configuration)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def step_hash(
    config: ExperimentConfig,
    scenario: Scenario,
    method: IncrementalMethod,
    single_step: bool,
    step: int,
    previous: str | None,
    paths: bool = False,
) -> str:
    """Hash of everything that determines the result of ``step`` of ``scenario``.

    ``method`` is the method at ``step``, ``previous`` the hash of step ``step - 1``. Left
    out: the run's name and folder, where the data lie, hardware and run-only keys, loader
    workers; a class schema file enters by its content. Step 0 depends on the classes it
    learns, not on the later split of the task nor (unless the method trains step 0 its own
    way) on the incremental method, so tasks and methods share it. Class weights enter as the
    step applies them (those of the classes it labels). ``paths=True``: the hash as versions
    before this rule wrote it (data paths and schema path as given), to recognise their files.
    """
    payload = config.model_dump(mode="json", exclude={"name": True, "out": True})
    for key in (*HARDWARE_KEYS, *RUN_ONLY_TRAIN_KEYS):
        payload["train"].pop(key, None)
    payload["data"].pop("num_workers", None)
    if not paths:
        for key in DATA_PATH_KEYS:
            payload["data"].pop(key, None)
        payload["data"]["class_schema"] = _schema_key(payload["data"].get("class_schema"))
    if step == 0:
        for key in ("lr_incremental", "epochs_incremental", "freeze_norm_incremental"):
            payload["train"].pop(key, None)
        payload.pop("method")
        payload["step0"] = method.step0_key()
        payload["single_step"] = single_step
        payload["scenario"] = {
            "channels": scenario.classes_per_step[:1],
            "classes": scenario.steps[0],
            "unlearned": scenario.unlearned,
            "setting": scenario.setting,
            "min_pixels": scenario.min_pixels,
        }
    if weights := payload["data"].get("class_weights"):  # those that apply (joint: all)
        payload["data"]["class_weights"] = step_weights(
            scenario, step, method.keep_old_labels, weights
        )
    return config_hash({"config": payload, "step": step, "previous": previous})


def _schema_key(schema: str | None) -> str | None:
    """A class schema in a hash: a preset name as it is, a file by the hash of its content."""
    from pathlib import Path

    if schema is None or not Path(schema).is_file():
        return schema
    return "sha256:" + hashlib.sha256(Path(schema).read_bytes()).hexdigest()[:16]


def step_fingerprints(data: ExperimentData, scenario: Scenario, last: int) -> list[str]:
    """Fingerprints of the training data of steps ``0..last`` of ``scenario``."""
    return [data.fingerprint(data.step_regions(scenario, s)) for s in range(last + 1)]


def tiles_fingerprint(tiles: Sequence[TileRecord]) -> str:
    """Short hash of tiles' names and the sizes and modification times of their files."""
    h = hashlib.sha256()
    for rec in tiles:
        h.update(f"{rec.stem}:{rec.fingerprint}\n".encode())
    return h.hexdigest()[:16]


def training_change(bundle: StepBundle, current: Sequence[str]) -> str | None:
    """Why ``bundle`` no longer matches the training data ``current`` (one per step), or None.

    A record without a fingerprint (an older bundle) is not compared.
    """
    for step, (record, now) in enumerate(zip(bundle.steps, current, strict=False)):
        if record.data_fingerprint is not None and record.data_fingerprint != now:
            return (
                f"the training data of step {step} changed since the model was trained (an "
                "image or label file has another size or modification time, or the tiles differ)"
            )
    return None


def validation_changed(bundle: StepBundle, current: str) -> bool:
    """True when ``bundle`` was scored on other validation files than ``current`` describes."""
    stored = bundle.steps[-1].info.get(VAL_KEY)
    return stored is not None and stored != current
