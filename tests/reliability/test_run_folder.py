"""A failed first attempt of a run leaves no run folder behind, unless it holds progress."""

from __future__ import annotations

import pytest
from test_step0_cache import config, scenes

import geociss.engine.runner as runner_mod
from geociss.engine.run_folder import holds_progress, removed_unless_progress
from geociss.engine.runner import ScenarioRunner
from geociss.errors import ConfigError


def test_a_new_folder_without_progress_is_removed(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ConfigError), removed_unless_progress(run):
        (run / "step0" / "checkpoints").mkdir(parents=True)
        (run / "config.yaml").write_text("x: 1\n")
        (run / "step0" / "checkpoints" / "config_hash").write_text("abc")
        raise ConfigError("late config error")
    assert not run.exists()


@pytest.mark.parametrize("progress", ["step0/bundle.safetensors", "step1/checkpoints/last.ckpt"])
def test_a_folder_with_progress_is_kept(tmp_path, progress):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt), removed_unless_progress(run):
        (run / progress).parent.mkdir(parents=True)
        (run / progress).write_bytes(b"x")
        raise KeyboardInterrupt
    assert holds_progress(run) and (run / progress).is_file()


def test_a_folder_that_existed_is_kept(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError), removed_unless_progress(run):
        raise RuntimeError("boom")
    assert (run / "notes.txt").read_text() == "mine"


def test_success_keeps_the_folder(tmp_path):
    run = tmp_path / "run"
    with removed_unless_progress(run):
        run.mkdir()
    assert run.is_dir()


def test_a_train_that_fails_in_its_first_step_leaves_no_run_folder(tmp_path, monkeypatch):
    root = scenes(tmp_path)

    def fails(*args, **kwargs):
        raise ConfigError("a late config error")

    monkeypatch.setattr(runner_mod, "fit_step", fails)
    cfg = config(root)
    with pytest.raises(ConfigError):
        ScenarioRunner(cfg, log=lambda _: None, progress=False).run()
    assert not cfg.run_dir.exists()
    assert not list(cfg.run_dir.parent.glob("*.lock"))
