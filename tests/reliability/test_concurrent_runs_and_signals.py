"""Real processes: two predicts into one output, SIGTERM/SIGINT to predict and train.

Each run is ``python -m geociss ...`` in a subprocess. A predict is held after its first block row
is on disk with the test hook ``GEOCISS_TEST_PAUSE`` (:mod:`geociss.faults`); a training is
caught mid-fit by waiting for Lightning's first metrics file. Outputs are compared byte for byte
with an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from geociss.cli.main import cli

from fakes import random_pair, tiny_isprs_bundle, write_tif

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
PAUSE = "predict:flushed"


def start(*args: object, cwd: Path, pause: Path | None = None, **popen) -> subprocess.Popen:
    env = dict(ENV)
    if pause is not None:
        env["GEOCISS_TEST_PAUSE"] = f"{PAUSE}@{pause}"
    return subprocess.Popen(
        [sys.executable, "-m", "geociss", *map(str, args)],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended ({proc.returncode}) before {path.name}:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# ------------------------------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    """A 1100 x 96 raster (three block rows), models A and B, and A's uninterrupted output."""
    root = tmp_path_factory.mktemp("predict")
    image = np.random.default_rng(0).integers(0, 256, (3, 1100, 96), dtype=np.uint8)
    src = write_tif(root / "in" / "mosaic.tif", image)
    a = tiny_isprs_bundle().save(root / "a.safetensors")
    b = tiny_isprs_bundle()
    gen = torch.Generator().manual_seed(1)
    b.state_dict = {
        k: v + 0.3 * torch.randn(v.shape, generator=gen) if v.ndim == 4 else v
        for k, v in b.state_dict.items()
    }
    b = b.save(root / "b.safetensors")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses (OMP_NUM_THREADS=1): the same arithmetic
    try:
        for model in (a, b):
            res = CliRunner().invoke(cli, predict_args(model, root / f"ref-{model.stem}", src))
            assert res.exit_code == 0, res.output
    finally:
        torch.set_num_threads(threads)
    ref_a, ref_b = (root / f"ref-{m}" / "mosaic_classes.tif" for m in ("a", "b"))
    assert ref_a.read_bytes() != ref_b.read_bytes()  # the models map differently
    return src, a, b, ref_a


def predict_args(model: Path, out: Path, src: Path) -> list[str]:
    return [
        str(a)
        for a in (
            "predict",
            "--model",
            model,
            "--out",
            out,
            src,
            "--tile",
            "64",
            "--overlap",
            "16",
            "--workers",
            "0",
            "--batch-size",
            "4",
        )
    ]


def test_a_second_predict_into_the_same_output_stops_at_once(tmp_path, scene):
    src, a, b, reference = scene
    out, pause = tmp_path / "out", tmp_path / "pause"
    first = start(*predict_args(a, out, src), cwd=tmp_path, pause=pause)
    try:
        wait_for(pause / "predict-flushed.reached", first)
        assert json.loads((out / "mosaic.predict.json").read_text())["state"] == "running"
        before = snapshot(out)
        assert "mosaic_classes.tif.partial" in before and "mosaic_classes.tif.lock" in before
        second = start(*predict_args(b, out, src), cwd=tmp_path)
        stdout, stderr = second.communicate(timeout=120)
        assert second.returncode == 2, stdout + stderr
        assert stdout == ""
        assert stderr.strip().splitlines() == [
            f"error: {out / 'mosaic_classes.tif'}: in use by geociss predict (pid {first.pid} on "
            f"host {socket.gethostname()}, since {stderr.split('since ')[1].split(')')[0]}); "
            f"wait for it to end or write elsewhere (lock file {out / 'mosaic_classes.tif.lock'})"
        ]
        assert snapshot(out) == before  # the first run's files, untouched
    finally:
        (pause / "predict-flushed.go").touch()
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stdout + stderr
    assert (out / "mosaic_classes.tif").read_bytes() == reference.read_bytes()
    assert not list(out.glob("*.lock")) and not list(out.glob("*.partial"))


def test_sigterm_stops_predict_with_143_and_the_rerun_resumes(tmp_path, scene):
    src, a, _, reference = scene
    out, pause = tmp_path / "out", tmp_path / "pause"
    run = start(*predict_args(a, out, src), cwd=tmp_path, pause=pause)
    wait_for(pause / "predict-flushed.reached", run)
    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 143, stdout + stderr
    assert stderr.strip().splitlines() == [
        "interrupted (SIGTERM): geociss predict stopped; run the same command again to resume"
    ]
    left = sorted(p.name for p in out.iterdir())
    assert left == ["mosaic.predict.json", "mosaic_classes.tif.partial"], left  # no lock
    res = CliRunner().invoke(cli, predict_args(a, out, src))
    assert res.exit_code == 0, res.output
    assert (out / "mosaic_classes.tif").read_bytes() == reference.read_bytes()


def ranks_of(pid: int) -> list[int]:
    """The spawned rank processes of process ``pid`` (Linux ``/proc``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and b"multiprocessing.spawn" in command:
            found.append(int(stat.parent.name))
    return found


def test_sigterm_stops_every_rank_of_a_shared_predict(tmp_path, scene):
    src, a, _, _ = scene
    out, pause = tmp_path / "out", tmp_path / "pause"
    run = start(*predict_args(a, out, src), "--devices", "2", cwd=tmp_path, pause=pause)
    wait_for(pause / "predict-flushed.reached", run)  # a rank is writing its rows
    ranks = ranks_of(run.pid)
    assert len(ranks) == 2, ranks
    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 143, stdout + stderr
    assert "Traceback" not in stderr
    for pid in ranks:  # none goes on writing once the locks are released
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not list(out.glob("*.lock")) and not (out / "mosaic_classes.tif").exists()


# --------------------------------------------------------------------------------------- train


def train_config(root: Path, workers: int) -> Path:
    for i in range(3):
        random_pair(root / "data", f"t{i}", size=64, seed=i)
    cfg = {
        "name": "run",
        "out": str(root / "runs"),
        "data": {
            "images": str(root / "data" / "images"),
            "labels": str(root / "data" / "labels"),
            "patch_size": 32,
            "batch_size": 2,
            "samples_per_epoch": 8,
            "num_workers": workers,
            "eval_tile": 32,
            "eval_overlap": 8,
        },
        "model": {"encoder": "tiny", "weights": "none", "aspp_channels": 16},
        "scenario": {"task": "4-1", "unlearned": ["clutter"]},
        "method": {"name": "finetune"},
        "train": {"epochs": 5000, "accelerator": "cpu"},  # runs until the signal
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def assert_nothing_half_written(root: Path) -> None:
    runs = root / "runs"
    assert not list(runs.rglob("bundle.safetensors")), "no bundle from an interrupted step"
    assert not list(runs.rglob("*.part")) and not list(runs.rglob(".*.part"))
    assert not list(runs.glob("*.lock")), "the run's lock is released"


def test_sigterm_mid_fit_ends_train_with_143_and_a_second_train_is_refused(tmp_path):
    config = train_config(tmp_path, workers=0)
    run = start("train", config, "--no-progress", cwd=tmp_path)
    try:
        wait_for(tmp_path / "runs" / "run" / "step0" / "logs" / "metrics.csv", run)
        second = CliRunner().invoke(cli, ["train", str(config), "--no-progress"])
        assert second.exit_code == 2, second.output
        assert len(second.output.strip().splitlines()) == 1
        assert f"{tmp_path / 'runs' / 'run'}: in use by geociss train (pid {run.pid} " in (
            second.output
        )
    finally:
        run.send_signal(signal.SIGTERM)  # as timeout, docker stop, Slurm preemption do
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 143, stdout + stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        "interrupted (SIGTERM): geociss train stopped; run the same command again to resume"
    )
    assert_nothing_half_written(tmp_path)


def test_ctrl_c_mid_fit_ends_train_with_130(tmp_path):
    config = train_config(tmp_path, workers=1)  # the data-loader worker gets the SIGINT too
    run = start("train", config, "--no-progress", cwd=tmp_path, start_new_session=True)
    try:
        wait_for(tmp_path / "runs" / "run" / "step0" / "logs" / "metrics.csv", run)
    finally:
        os.killpg(run.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        "interrupted (SIGINT): geociss train stopped; run the same command again to resume"
    )
    assert_nothing_half_written(tmp_path)


def test_sigterm_to_the_whole_process_group_ends_train_with_143(tmp_path):
    # Slurm's scancel and systemd's stop send SIGTERM to every process of the job, the
    # data-loader worker included: its death must not surface as a DataLoader traceback
    config = train_config(tmp_path, workers=1)
    run = start("train", config, "--no-progress", cwd=tmp_path, start_new_session=True)
    try:
        wait_for(tmp_path / "runs" / "run" / "step0" / "logs" / "metrics.csv", run)
    finally:
        os.killpg(run.pid, signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 143, stdout + stderr
    assert "Traceback" not in stderr and "DataLoader worker" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == (
        "interrupted (SIGTERM): geociss train stopped; run the same command again to resume"
    )
    assert_nothing_half_written(tmp_path)


# ------------------------------------------------- predict: loader workers and stderr


def children_of(pid: int) -> list[int]:
    """Live child processes of ``pid`` (Linux ``/proc``; zombies are not counted)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def test_sigterm_ends_predict_and_its_loader_workers_at_once(tmp_path, scene):
    src, a, _, _ = scene
    args = predict_args(a, tmp_path / "out", src)
    args[args.index("--workers") + 1] = "1"
    pause = tmp_path / "pause"
    run = start(*args, cwd=tmp_path, pause=pause)
    wait_for(pause / "predict-flushed.reached", run)
    workers = children_of(run.pid)
    assert workers, "predict --workers 1 should have a loader worker"
    run.send_signal(signal.SIGTERM)
    run.communicate(timeout=120)
    assert run.returncode == 143
    deadline = time.monotonic() + 2.0  # the issue saw workers linger 5-7 s
    while any(Path(f"/proc/{w}").exists() and _alive(w) for w in workers):
        assert time.monotonic() < deadline, "a loader worker outlived predict by > 2 s"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_non_georeferenced_input_prints_no_warnings(tmp_path, scene):
    _, a, _, _ = scene
    image = np.random.default_rng(1).integers(0, 256, (3, 80, 96), dtype=np.uint8)
    src = write_tif(tmp_path / "in" / "plain.tif", image, crs=None, transform=None)
    run = start(*predict_args(a, tmp_path / "out", src), "--vector", cwd=tmp_path)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stdout + stderr
    assert "Warning" not in stderr and "NotGeoreferenced" not in stderr, stderr
