"""Files replaced in place under the same names: the steps they feed are trained or scored again."""

import os
import shutil

import numpy as np
import pytest
import rasterio

import geociss.engine.runner as runner_mod
from geociss.engine.bundle import StepBundle, StepRecord
from geociss.engine.freshness import training_change, validation_changed
from geociss.engine.runner import SUPERSEDED, ScenarioRunner

from test_runner import _interrupt_at, _Stop, config, scenes


@pytest.fixture()
def root(tmp_path_factory):
    return scenes(tmp_path_factory.mktemp("fresh"))


def _count_fits(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = runner_mod.fit_step
    monkeypatch.setattr(runner_mod, "fit_step", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def _rewrite_label(path, later_by_s: int = 10) -> None:
    """Write other classes into a label raster under its name (and a later modification time)."""
    with rasterio.open(path, "r+") as ds:
        label = ds.read(1)
        ds.write(np.where(label == 2, 3, np.where(label == 3, 2, label)).astype(label.dtype), 1)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + later_by_s * 10**9))


def _tiles(cfg):
    data = ScenarioRunner(cfg, log=lambda _: None, progress=False).experiment_data()
    train = [data.train.tiles[i].stem for i in data.train_tiles]
    return train, [t.stem for t in data.val_tiles]


def test_unchanged_files_reuse_every_step_and_a_replaced_training_label_retrains(
    root, monkeypatch
):
    cfg = config(root)
    ScenarioRunner(cfg, log=lambda _: None, progress=False).run()
    calls = _count_fits(monkeypatch)
    logs: list[str] = []
    ScenarioRunner(cfg, log=logs.append, progress=False).run()
    assert calls == [] and sum("up to date" in m for m in logs) == 2  # no false alarm
    train, _ = _tiles(cfg)
    _rewrite_label(root / "labels" / f"{train[0]}.tif")
    logs.clear()
    ScenarioRunner(cfg, log=logs.append, progress=False).run()
    assert calls == [1, 1]  # step 0 and, on the new step 0, step 1
    assert any("training data of step 0 changed" in m and "training it again" in m for m in logs)
    for step in (0, 1):  # the models trained on the former files are set aside, not deleted
        kept = StepBundle.load(cfg.run_dir / f"step{step}" / SUPERSEDED)
        now = StepBundle.load(cfg.run_dir / f"step{step}" / "bundle.safetensors")
        assert kept.steps[0].data_fingerprint != now.steps[0].data_fingerprint
    assert not any("reusing the shared step-0" in m for m in logs)  # the cache entry is stale
    calls.clear()
    other = cfg.model_copy(update={"name": "other"})
    logs.clear()
    ScenarioRunner(other, log=logs.append, progress=False).run()  # the refreshed cache serves
    assert any("reusing the shared step-0" in m for m in logs) and calls == [1]


def test_a_replaced_validation_label_is_scored_again_without_training(root, monkeypatch):
    cfg = config(root, seed=3)
    ScenarioRunner(cfg, log=lambda _: None, progress=False).run()
    before = StepBundle.load(cfg.run_dir / "step1" / "bundle.safetensors").steps[-1].metrics
    _, val = _tiles(cfg)
    _rewrite_label(root / "labels" / f"{val[0]}.tif")
    calls = _count_fits(monkeypatch)
    logs: list[str] = []
    ScenarioRunner(cfg, log=logs.append, progress=False).run()
    assert calls == []
    assert sum("validation tiles changed" in m for m in logs) == 2
    after = StepBundle.load(cfg.run_dir / "step1" / "bundle.safetensors").steps[-1].metrics
    assert after["confusion"] != before["confusion"]  # classes 2 and 3 swapped in the truth
    logs.clear()
    ScenarioRunner(cfg, log=logs.append, progress=False).run()
    assert not any("validation tiles changed" in m for m in logs)  # recorded: once only


def test_an_interrupted_step_restarts_when_its_files_changed(root, monkeypatch):
    run = config(root, epochs=2, checkpoint_every_n_steps=1, seed=5)
    seen: list[str] = []
    _interrupt_at(monkeypatch, 3, seen)
    with pytest.raises(_Stop):
        ScenarioRunner(run, log=lambda _: None, progress=False).run()
    assert (run.run_dir / "step0" / "checkpoints" / "last.ckpt").is_file()
    train, _ = _tiles(run)
    _rewrite_label(root / "labels" / f"{train[0]}.tif")
    seen.clear()
    _interrupt_at(monkeypatch, None, seen)
    ScenarioRunner(run, log=lambda _: None, progress=False).run()
    trained = seen[: seen.index("train:step:4") + 1]
    assert trained == [f"train:step:{i}" for i in range(1, 5)]  # from the start, not step 3


def test_copied_data_keeps_the_run_only_with_its_times(root, tmp_path, monkeypatch):
    """Moving data with its times (cp -p, rsync -t) is no change; without them it is."""
    cfg = config(root, seed=7)
    ScenarioRunner(cfg, log=lambda _: None, progress=False).run()
    calls = _count_fits(monkeypatch)
    for folder in ("images", "labels"):
        for path in (root / folder).iterdir():
            keep = tmp_path / path.name
            shutil.copy2(path, keep)
            shutil.copy2(keep, path)  # same bytes, same times
    ScenarioRunner(cfg, log=lambda _: None, progress=False).run()
    assert calls == []
    train, _ = _tiles(cfg)
    (root / "images" / f"{train[-1]}.tif").touch()
    ScenarioRunner(cfg, log=lambda _: None, progress=False).run()
    assert calls == [1, 1]


def test_records_without_fingerprints_are_taken_as_they_are():
    legacy = StepBundle.__new__(StepBundle)
    legacy.steps = [StepRecord([0, 1]), StepRecord([2], info={"config_hash": "x"})]
    assert training_change(legacy, ["a", "b"]) is None
    assert not validation_changed(legacy, "v")
    legacy.steps[0].data_fingerprint = "old"
    assert "step 0" in training_change(legacy, ["new", "b"])
    legacy.steps[-1].info["val_fingerprint"] = "v0"
    assert validation_changed(legacy, "v1") and not validation_changed(legacy, "v0")
