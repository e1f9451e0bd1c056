"""A killed ``geociss train`` resumes inside the interrupted epoch and ends bit-identical.

The training process is really killed (``SIGKILL``, no cleanup) in the middle of an epoch of
step 1 through the fault point ``train:step:<n>`` (:mod:`geociss.faults`), the same command is run
again, and its bundles are compared tensor by tensor with those of an uninterrupted run. Both
runs print progress lines to a pipe (standard output is not a terminal), which is also how the
log-file progress is checked.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from safetensors.numpy import load_file

from geociss.faults import KILL_ENV

from fakes import write_tif

EPOCHS, BATCHES = 3, 4  # step 1: 3 epochs of 4 batches = 12 training steps


def scenes(root: Path, n: int = 4, size: int = 64) -> Path:
    """Label blocks of the six ISPRS classes; the image encodes the class (learnable)."""
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


def experiment(root: Path, out: Path, workers: int) -> Path:
    """A two-step MiB run of the tiny network (step 0: one epoch; step 1: ``EPOCHS``)."""
    cfg = {
        "name": "resume",
        "out": str(out),
        "data": {
            "images": str(root / "images"),
            "labels": str(root / "labels"),
            "schema": "isprs",
            "patch_size": 32,
            "batch_size": 4,
            "samples_per_epoch": 4 * BATCHES,
            "num_workers": workers,
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
        "method": {"name": "mib"},
        "train": {
            "epochs": 1,
            "epochs_incremental": EPOCHS,
            "accelerator": "cpu",
            "checkpoint_every_n_steps": 3,
            "progress_every_n_steps": 1,
        },
    }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def environment(fault: str | None) -> dict[str, str]:
    """This environment, one thread, and the fault point where the process kills itself."""
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    env["OMP_NUM_THREADS"] = "1"
    if fault is not None:
        env[KILL_ENV] = fault
    return env


def train(config: Path, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m geociss train CONFIG`` with standard output on a pipe (not a terminal)."""
    env = environment(fault)
    return subprocess.run(
        [sys.executable, "-m", "geociss", "train", str(config)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=config.parent,
        env=env,
    )


def progress_lines(stdout: str, step: int, epochs: int = EPOCHS) -> list[tuple[int, int, int]]:
    """(epoch, batch, training step) of each progress line of scenario step ``step``."""
    pattern = rf"^step {step}: epoch (\d+)/{epochs}, batch (\d+)/{BATCHES}, training step (\d+)/"
    return [
        tuple(int(g) for g in m.groups())  # type: ignore[misc]
        for m in re.finditer(pattern, stdout, re.MULTILINE)
    ]


def tensors(run: Path, step: int) -> dict[str, np.ndarray]:
    return load_file(str(run / "resume" / f"step{step}" / "bundle.safetensors"))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scenes(tmp_path_factory.mktemp("scenes"))


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The uninterrupted run: its output folder and its standard output."""
    out = tmp_path_factory.mktemp("reference") / "runs"
    proc = train(experiment(data, out, workers=0))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_progress_lines_in_a_log_file(reference: tuple[Path, str]) -> None:
    _, stdout = reference
    lines = progress_lines(stdout, 1)
    assert [s for _, _, s in lines] == list(range(1, EPOCHS * BATCHES + 1)), stdout
    assert {e for e, _, _ in lines} == {1, 2, 3}  # epoch k/K counted from 1, up to K
    assert lines[-1] == (EPOCHS, BATCHES, EPOCHS * BATCHES)
    last = [line for line in stdout.splitlines() if line.startswith("step 1: epoch 3/3")][-1]
    assert re.search(r"loss \d+\.\d{4}, elapsed \d+:\d\d:\d\d, ETA \d+:\d\d:\d\d$", last), last
    assert progress_lines(stdout, 0, epochs=1)[-1] == (1, BATCHES, BATCHES)
    assert "Epoch" not in stdout and "\r" not in stdout  # no progress bar in a file


@pytest.mark.parametrize(
    ("workers", "kill_at", "resume_at"),
    [
        (0, 7, (2, 3)),  # last checkpoint: step 6, within epoch 2 (every 3 steps)
        (1, 5, (2, 1)),  # last checkpoint: the end of epoch 1; one loader worker process
    ],
)
def test_a_killed_train_resumes_mid_epoch_bit_identical(
    data: Path,
    reference: tuple[Path, str],
    tmp_path: Path,
    workers: int,
    kill_at: int,
    resume_at: tuple[int, int],
) -> None:
    out = tmp_path / "runs"
    config = experiment(data, out, workers)
    killed = train(config, fault=f"train:step:{kill_at}")
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:] + killed.stderr[-3000:]
    ckpt = out / "resume" / "step1" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and not (out / "resume" / "step1" / "bundle.safetensors").exists()
    epoch, batch = divmod(kill_at - 1, BATCHES)
    assert progress_lines(killed.stdout, 1)[-1] == (epoch + 1, batch + 1, kill_at)

    resumed = train(config)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "step 0: up to date, skipped" in resumed.stdout
    first = (resume_at[0] - 1) * BATCHES + resume_at[1]
    where = f"epoch {resume_at[0]}/{EPOCHS}, batch {resume_at[1]}/{BATCHES}"
    assert f"resuming from {ckpt} at {where} (training step {first}/12)" in resumed.stdout, (
        resumed.stdout
    )
    # only the steps after the checkpoint are trained again, in the interrupted epoch
    assert [s for _, _, s in progress_lines(resumed.stdout, 1)] == list(range(first, 13))

    ref_out, _ = reference
    for step in (0, 1):
        ref, got = tensors(ref_out, step), tensors(out, step)
        assert sorted(ref) == sorted(got)
        different = [k for k in ref if not np.array_equal(ref[k], got[k])]
        assert not different, f"step {step}: {len(different)} tensors differ, e.g. {different[:3]}"


def extend(data: Path, model: Path, out: Path, fault: str | None = None) -> str:
    """``geociss extend`` of ``model`` by cars, 2 epochs of ``BATCHES``, stdout on a pipe."""
    env = environment(fault)
    options = {
        "--model": model, "--images": data / "images", "--labels": data / "cars",
        "--new-classes": "car", "--method": "mib", "--epochs": 2, "--batch-size": 4,
        "--patch-size": 32, "--samples-per-epoch": 4 * BATCHES, "--num-workers": 0,
        "--eval-tile": 32, "--eval-overlap": 8, "--device": "cpu",
        "--work-dir": out.parent / "work", "--out": out,
    }  # fmt: skip
    args = [str(item) for pair in options.items() for item in pair]
    proc = subprocess.run(
        [sys.executable, "-m", "geociss", "extend", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=out.parent,
        env=env,
    )
    expected = -signal.SIGKILL if fault is not None else 0
    assert proc.returncode == expected, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def car_labels(data: Path) -> None:
    """New-class labels of the scenes under ``data/cars``: car = 1, the rest 0."""
    for label in (data / "labels").glob("*.tif"):
        with rasterio.open(label) as src:
            write_tif(data / "cars" / label.name, (src.read(1) == 4).astype(np.uint8))


def test_a_killed_extend_with_a_work_dir_resumes_and_prints_progress(
    data: Path, reference: tuple[Path, str], tmp_path: Path
) -> None:
    car_labels(data)
    model = reference[0] / "resume" / "step0" / "bundle.safetensors"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = extend(data, model, tmp_path / "a" / "ext.safetensors")
    lines = progress_lines(whole, 1, epochs=2)
    assert lines == [(1, BATCHES, BATCHES), (2, BATCHES, 2 * BATCHES)], whole  # epoch ends

    killed = extend(data, model, tmp_path / "b" / "ext.safetensors", fault="train:step:6")
    assert progress_lines(killed, 1, epochs=2)[-1] == (1, BATCHES, BATCHES)
    resumed = extend(data, model, tmp_path / "b" / "ext.safetensors")
    assert "at epoch 2/2, batch 1/4 (training step 5/8)" in resumed, resumed
    ref = load_file(str(tmp_path / "a" / "ext.safetensors"))
    got = load_file(str(tmp_path / "b" / "ext.safetensors"))
    assert sorted(ref) == sorted(got)
    assert all(np.array_equal(ref[k], got[k]) for k in ref)


def test_a_killed_extend_restarts_when_its_labels_changed(
    data: Path, reference: tuple[Path, str], tmp_path: Path
) -> None:
    """A checkpoint of other files (a label replaced under its name) is not resumed."""
    car_labels(data)
    model = reference[0] / "resume" / "step0" / "bundle.safetensors"
    extend(data, model, tmp_path / "ext.safetensors", fault="train:step:6")
    for replaced in (data / "cars").glob("*.tif"):  # training and held-out tiles alike
        stat = replaced.stat()
        os.utime(replaced, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**10))
    resumed = extend(data, model, tmp_path / "ext.safetensors")
    assert "resuming from" not in resumed, resumed
    assert progress_lines(resumed, 1, epochs=2)[-1] == (2, BATCHES, 2 * BATCHES)


def test_a_killed_extend_resumes_with_its_data_named_another_way(
    data: Path, reference: tuple[Path, str], tmp_path: Path
) -> None:
    """Where the files lie is not part of the checkpoint's marker: a relative path resumes."""
    car_labels(data)
    model = reference[0] / "resume" / "step0" / "bundle.safetensors"
    link = tmp_path / "same-data"
    link.symlink_to(data, target_is_directory=True)  # the same files by another path
    extend(data, model, tmp_path / "ext.safetensors", fault="train:step:6")
    resumed = extend(link, model, tmp_path / "ext.safetensors")
    assert "at epoch 2/2, batch 1/4 (training step 5/8)" in resumed, resumed
