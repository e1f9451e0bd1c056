"""End-to-end runs of the scenario runner on tiny fake data (tiny encoder, a few windows)."""

import json

import numpy as np
import pytest

from geociss.config.experiment import ExperimentConfig
from geociss.engine.bundle import StepBundle
from geociss.engine.runner import ScenarioRunner
from geociss.evaluation.retention import Retention

from fakes import write_tif


def scenes(root, n=4, size=64):
    """Label blocks of all six ISPRS classes; the image encodes the class so a model can learn."""
    rng = np.random.default_rng(0)
    for i in range(n):
        blocks = rng.integers(0, 6, (size // 16, size // 16), dtype=np.uint8)
        blocks[0, 0], blocks[-1, -1] = 4, 1  # every tile holds a car and a building
        label = np.kron(blocks, np.ones((16, 16), dtype=np.uint8))
        image = np.stack([label * 40, 255 - label * 40, (label % 2) * 200]).astype(np.uint8)
        image = image + rng.integers(0, 20, image.shape, dtype=np.uint8)
        write_tif(root / "images" / f"t{i}.tif", image)
        write_tif(root / "labels" / f"t{i}.tif", label)
    return root


def config(root, method="finetune", **train):
    return ExperimentConfig.model_validate(
        {
            "name": f"run-{method}",
            "out": str(root / "runs"),
            "data": {
                "images": str(root / "images"),
                "labels": str(root / "labels"),
                "schema": "isprs",
                "patch_size": 32,
                "batch_size": 4,
                "samples_per_epoch": 8,
                "num_workers": 0,
                "eval_tile": 32,
                "eval_overlap": 8,
                "val_fraction": 0.25,
            },
            "model": {
                "encoder": "tiny",
                "weights": "none",
                "aspp_channels": 16,
                "norm": "group",
                "norm_groups": 4,
            },
            "scenario": {"task": "4-1", "unlearned": ["clutter"]},
            "method": {"name": method},
            "train": {"epochs": 1, "accelerator": "cpu", **train},
        }
    )


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return scenes(tmp_path_factory.mktemp("scenes"))


def test_two_step_run_writes_bundles_reports_and_history(data_root):
    cfg = config(data_root)
    logs: list[str] = []
    runner = ScenarioRunner(cfg, log=logs.append, progress=False)
    history = runner.run()
    run = cfg.run_dir
    assert len(history.records) == 2
    for step in (0, 1):
        d = run / f"step{step}"
        for name in ("bundle.safetensors", "metrics.json", "metrics.csv", "confusion.png"):
            assert (d / name).is_file(), name
        assert (d / "checkpoints" / "last.ckpt").is_file()
        assert (d / "logs" / "metrics.csv").is_file()
    bundle = StepBundle.load(run / "step1" / "bundle.safetensors")
    assert bundle.classes_per_step == [4, 1]
    assert bundle.channel_names == [
        "impervious surfaces",
        "building",
        "low vegetation",
        "tree",
        "car",
    ]
    assert [s.method for s in bundle.steps] == ["finetune", "finetune"]
    assert bundle.steps[1].metrics["new_channels"] == [4]
    # every incremental step measures how much of the old classes it kept (no labels needed)
    retention = Retention.from_dict(bundle.steps[1].info["retention"])
    assert [c.name for c in retention.classes] == bundle.channel_names[:4]
    assert retention.pixels > 0 and "validation tiles" in retention.scope
    assert "retention" not in bundle.steps[0].info
    assert any("old classes kept from the previous model" in m for m in logs)
    assert len(bundle.mean) == 3 and all(s > 0 for s in bundle.std)
    saved = json.loads((run / "history.json").read_text())
    assert saved and (run / "history.png").stat().st_size > 1000
    assert (run / "config.yaml").is_file()


def test_rerun_skips_completed_steps_and_changed_config_retrains(data_root, monkeypatch):
    cfg = config(data_root)
    ScenarioRunner(cfg, log=lambda _: None, progress=False).run()
    calls = []
    import geociss.engine.runner as runner_mod

    real = runner_mod.fit_step
    monkeypatch.setattr(runner_mod, "fit_step", lambda *a, **k: calls.append(1) or real(*a, **k))
    logs = []
    ScenarioRunner(cfg, log=logs.append, progress=False).run()
    assert calls == [] and sum("skipped" in m for m in logs) == 2
    changed = config(data_root, lr_incremental=0.002)
    ScenarioRunner(changed, log=lambda _: None, progress=False).run()
    assert calls == [1]  # step 0 unchanged (skipped); step 1 retrained


def test_step0_shared_between_methods_and_joint_is_single_step(data_root):
    ScenarioRunner(config(data_root), log=lambda _: None, progress=False).run()
    logs = []
    ScenarioRunner(config(data_root, "joint"), log=logs.append, progress=False).run()
    joint = StepBundle.load(config(data_root, "joint").run_dir / "step0" / "bundle.safetensors")
    assert joint.classes_per_step == [5]
    assert joint.steps[0].metrics["old_channels"] == [0, 1, 2, 3]  # old/new split of the scenario
    assert not any("reusing the shared step-0" in m for m in logs)  # joint trains its own step 0
    logs = []
    other_task = config(data_root, "joint").model_copy(update={"name": "joint-2-2-1"})
    other_task.scenario.task = "2-2-1"
    ScenarioRunner(other_task, log=logs.append, progress=False).run()
    assert any("reusing the shared step-0" in m for m in logs)  # same classes, other split
    saved = json.loads((other_task.run_dir / "step0" / "metrics.json").read_text())
    assert saved["old_channels"] == [0, 1]
    cfg = config(data_root)
    other = cfg.model_copy(update={"name": "other-run"})
    logs = []
    ScenarioRunner(other, log=logs.append, progress=False).run()
    assert any("reusing the shared step-0" in m for m in logs)


class _Stop(Exception):
    """Raised by the fault point to interrupt a fit in this process."""


def _interrupt_at(monkeypatch, step: int | None, seen: list[str]) -> None:
    """Record the fault points a fit passes; raise :class:`_Stop` at ``train:step:<step>``."""
    import geociss.engine.resume as resume

    def point(name: str) -> None:
        seen.append(name)
        if name == f"train:step:{step}":
            raise _Stop

    monkeypatch.setattr(resume, "fault_point", point)


def test_an_interrupted_step_resumes_only_with_its_own_configuration(data_root, monkeypatch):
    """Resume after training step 3 of 4; a changed setting that matters restarts the step.

    (The kill of a real process, with bit-identical weights at the end, is in
    tests/reliability/test_resume_training.py.)
    """
    for name, seed, change, resumes in (
        ("resume", 1, {"checkpoint_every_n_steps": 5, "progress_every_n_steps": 7}, True),
        ("restart", 2, {"lr": 0.02}, False),
    ):  # own seeds: no step 0 of another test in the shared step-0 cache
        run = config(
            data_root, epochs=2, epochs_incremental=1, checkpoint_every_n_steps=1, seed=seed
        ).model_copy(update={"name": name})
        seen: list[str] = []
        _interrupt_at(monkeypatch, 3, seen)  # 2 epochs of 2 batches: stopped in epoch 2
        with pytest.raises(_Stop):
            ScenarioRunner(run, log=lambda _: None, progress=False).run()
        step0 = run.run_dir / "step0"
        assert (step0 / "checkpoints" / "last.ckpt").is_file()
        assert not (step0 / "bundle.safetensors").exists()
        again = run.model_copy(update={"train": run.train.model_copy(update=change)})
        seen.clear()
        _interrupt_at(monkeypatch, None, seen)
        ScenarioRunner(again, log=lambda _: None, progress=False).run()
        trained = seen[: seen.index("train:step:4") + 1]  # step 0's training steps
        expected = ["train:step:4"] if resumes else [f"train:step:{i}" for i in range(1, 5)]
        assert trained == expected
        assert StepBundle.load(step0 / "bundle.safetensors").steps[-1].info["train_steps"] == 4
