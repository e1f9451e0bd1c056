"""A tiny step trained with Lightning DDP on two CPU processes (gloo), through the CLI."""

import subprocess
import sys

import pytest
import yaml

from geociss.engine.bundle import StepBundle

from test_runner import scenes


@pytest.mark.slow
def test_train_two_cpu_processes(tmp_path):
    root = scenes(tmp_path)
    cfg = {
        "name": "ddp",
        "out": str(tmp_path / "runs"),
        "data": {
            "images": str(root / "images"),
            "labels": str(root / "labels"),
            "schema": "isprs",
            "patch_size": 32,
            "batch_size": 2,
            "samples_per_epoch": 8,
            "num_workers": 0,
            "eval_tile": 32,
            "eval_overlap": 8,
        },
        "model": {
            "encoder": "tiny",
            "weights": "none",
            "aspp_channels": 16,
            "norm": "group",
            "norm_groups": 4,
        },
        "scenario": {"task": "4-1", "unlearned": ["clutter"]},
        "method": {"name": "finetune"},
        "train": {"epochs": 1, "accelerator": "cpu", "devices": 2},
    }
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "geociss", "train", str(path), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "on 2 process(es)" in proc.stdout, proc.stdout[-3000:]
    bundle = StepBundle.load(tmp_path / "runs" / "ddp" / "step1" / "bundle.safetensors")
    assert bundle.classes_per_step == [4, 1]
