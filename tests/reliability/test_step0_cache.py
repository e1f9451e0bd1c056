"""A damaged step-0 cache (or a damaged step bundle of the run) is retrained over, never blocks."""

from __future__ import annotations

import numpy as np
import pytest

import geociss.engine.runner as runner_mod
from geociss.config.experiment import ExperimentConfig
from geociss.engine.bundle import StepBundle
from geociss.engine.runner import ScenarioRunner

from fakes import write_tif


def scenes(root, n=3, size=32):
    """Label blocks of the ISPRS classes; the image encodes the class."""
    rng = np.random.default_rng(0)
    for i in range(n):
        blocks = rng.integers(0, 6, (size // 16, size // 16), dtype=np.uint8)
        label = np.kron(blocks, np.ones((16, 16), dtype=np.uint8))
        image = np.stack([label * 40, 255 - label * 40, (label % 2) * 200]).astype(np.uint8)
        write_tif(root / "images" / f"t{i}.tif", image)
        write_tif(root / "labels" / f"t{i}.tif", label)
    return root


def config(root, method="finetune"):
    """A tiny two-step experiment (one epoch of two windows)."""
    data = {
        "images": str(root / "images"),
        "labels": str(root / "labels"),
        "patch_size": 32,
        "batch_size": 2,
        "samples_per_epoch": 2,
        "num_workers": 0,
        "eval_tile": 32,
        "eval_overlap": 0,
        "val_fraction": 0.34,
    }
    return ExperimentConfig.model_validate({
        "name": f"run-{method}", "out": str(root / "runs"), "data": data,
        "model": {"encoder": "tiny", "weights": "none", "aspp_channels": 8, "norm": "group",
                  "norm_groups": 4},
        "scenario": {"task": "4-1", "unlearned": ["clutter"]},
        "method": {"name": method}, "train": {"epochs": 1, "accelerator": "cpu"},
    })  # fmt: skip


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def flip_last_bytes(path):
    data = bytearray(path.read_bytes())
    data[-40:-36] = bytes(b ^ 0xFF for b in data[-40:-36])
    path.write_bytes(bytes(data))


@pytest.fixture
def trainings(monkeypatch):
    """Counts the steps really trained (calls of fit_step)."""
    calls: list[int] = []
    real = runner_mod.fit_step
    monkeypatch.setattr(runner_mod, "fit_step", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_a_damaged_step0_cache_is_discarded_and_retrained(tmp_path, trainings):
    root = scenes(tmp_path)
    first = ScenarioRunner(config(root), log=lambda _: None, progress=False)
    digest = first.step_hash(0, None)
    first.run_step(0, digest)
    cache = first.config.out / ".step0" / digest / "bundle.safetensors"
    truncate(cache)  # as a kill during the (formerly non-atomic) copy left it

    logs: list[str] = []
    second = ScenarioRunner(config(root, "mib"), log=logs.append, progress=False)
    assert second.step_hash(0, None) == digest  # the same shared step-0 model
    bundle = second.run_step(0, digest)
    warning = f"warning: {cache}: not a readable safetensors file"
    assert logs[0].startswith(warning), logs
    assert logs[0].endswith("; discarded, it is trained again"), logs
    assert trainings == [1, 1]  # trained again instead of failing
    assert StepBundle.load(cache).tensors_sha256 == bundle.tensors_sha256  # cache repaired
    assert sorted(p.name for p in cache.parent.iterdir()) == ["bundle.safetensors"]

    logs.clear()
    third = ScenarioRunner(config(root, "ilt"), log=logs.append, progress=False)
    third.run_step(0, digest)
    assert any("reusing the shared step-0 model" in m for m in logs)
    assert trainings == [1, 1]


def test_a_damaged_bundle_of_the_run_is_replaced_from_the_cache(tmp_path, trainings):
    root = scenes(tmp_path)
    runner = ScenarioRunner(config(root), log=lambda _: None, progress=False)
    digest = runner.step_hash(0, None)
    runner.run_step(0, digest)
    own = runner.step_dir(0) / "bundle.safetensors"
    flip_last_bytes(own)  # bit rot: the file reads, its weights fail their checksum

    logs: list[str] = []
    again = ScenarioRunner(config(root), log=logs.append, progress=False).run_step(0, digest)
    assert logs[0] == (
        f"warning: {own}: the weights do not match their checksum: the file is damaged; "
        "discarded, it is trained again"
    )
    assert any("reusing the shared step-0 model" in m for m in logs)
    assert trainings == [1]  # the intact shared copy served
    assert StepBundle.load(own).tensors_sha256 == again.tensors_sha256


def test_an_interrupted_copy_leaves_no_file_under_the_final_name(tmp_path, monkeypatch):
    import geociss.engine.bundle_files as files
    from geociss.engine.bundle_files import copy_atomic

    source = tmp_path / "a.safetensors"
    source.write_bytes(b"x" * 4096)
    target = tmp_path / "cache" / "bundle.safetensors"

    def half_then_killed(src, dst):
        with open(dst, "wb") as out:
            out.write(src.read_bytes()[:1000])
        raise KeyboardInterrupt

    monkeypatch.setattr(files.shutil, "copyfile", half_then_killed)
    with pytest.raises(KeyboardInterrupt):
        copy_atomic(source, target)
    assert not target.exists()
    monkeypatch.undo()
    copy_atomic(source, target)
    assert target.read_bytes() == source.read_bytes()
