"""``predict`` launched by torchrun: every process is one rank, outputs identical to one process.

The torchrun runs start ``python -m torch.distributed.run`` (what the ``torchrun`` command runs)
with ``--standalone --nproc-per-node 2`` on CPU (gloo), on a tall raster (three block rows, so
that one input is shared by row ranges) and a small one (two inputs: one file per rank), and
compare the outputs byte for byte with an in-process one-process run.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from geociss.cli.main import cli
from geociss.errors import ConfigError
from geociss.faults import fault_point
from geociss.inference.distributed import RankLost, sync
from geociss.inference.launch import Launch
from geociss.locks import OutputLock, secondary_rank

from fakes import tiny_isprs_bundle, write_tif

LAUNCH_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "GROUP_RANK",
    "NODE_RANK",
    "SLURM_PROCID",
)
OUTPUTS = ("tall_classes.tif", "tall_confidence.tif", "small_classes.tif", "small_confidence.tif")


def predict_args(model: Path, out: Path, *inputs: Path) -> list[str]:
    return [
        "predict",
        "--model",
        str(model),
        "--out",
        str(out),
        *map(str, inputs),
        "--tile",
        "64",
        "--overlap",
        "16",
        "--workers",
        "0",
        "--batch-size",
        "4",
        "--confidence",
    ]


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict[str, Path]:
    """A 1100 x 96 raster (three block rows), a 200 x 150 one, a model, one-process outputs."""
    root = tmp_path_factory.mktemp("launch")
    rng = np.random.default_rng(0)
    tall = write_tif(root / "in" / "tall.tif", rng.integers(0, 256, (3, 1100, 96), np.uint8))
    small = write_tif(root / "in" / "small.tif", rng.integers(0, 256, (3, 200, 150), np.uint8))
    model = tiny_isprs_bundle().save(root / "model.safetensors")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks (OMP_NUM_THREADS=1): the same arithmetic
    try:
        res = CliRunner().invoke(cli, predict_args(model, root / "ref", tall, small))
        assert res.exit_code == 0, res.output
    finally:
        torch.set_num_threads(threads)
    return {"tall": tall, "small": small, "model": model, "ref": root / "ref"}


def torchrun(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 -m geociss ARGS`` (exit status, output)."""
    clean = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "geociss",
            *args,
        ],
        cwd=cwd,
        env={**clean, "OMP_NUM_THREADS": "1", "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_same_outputs(out: Path, ref: Path, names: tuple[str, ...]) -> None:
    for name in names:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    left = [p.name for p in out.iterdir() if re.search(r"\.partial|\.rank\d|\.lock", p.name)]
    assert not left, left


def exit_codes(stderr: str) -> list[int]:
    """The ranks' exit statuses in torchrun's failure report."""
    return [int(code) for code in re.findall(r"exitcode\s*:\s*(-?\d+)", stderr)]


# ------------------------------------------------------------------------------ without torchrun


def test_the_launch_is_read_from_torchruns_environment():
    assert Launch.from_env({}) is None
    assert Launch.from_env({"LOCAL_RANK": "1", "WORLD_SIZE": "2"}) is None  # Lightning's DDP
    env = {
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "node1",
        "MASTER_PORT": "29500",
    }
    launch = Launch.from_env(env)
    assert launch == Launch(rank=3, world=4, local_rank=1, local_world=2)
    assert not launch.primary
    assert Launch.from_env({**env, "RANK": "0"}).primary
    with pytest.raises(ConfigError, match="but not MASTER_ADDR and MASTER_PORT: set them"):
        Launch.from_env({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="RANK='x' is not a whole number"):
        Launch.from_env({**env, "RANK": "x"})
    with pytest.raises(ConfigError, match="0 <= RANK < WORLD_SIZE"):
        Launch.from_env({**env, "RANK": "4"})


def test_global_rank_0_takes_the_locks_whatever_its_slurm_task(monkeypatch):
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "1")  # srun started torchrun on the second node...
    assert secondary_rank()
    monkeypatch.setenv("RANK", "0")  # ...and torchrun made one of its processes rank 0
    assert not secondary_rank()
    monkeypatch.setenv("RANK", "2")
    assert secondary_rank()


def test_a_kill_point_for_another_rank_lets_this_one_live(monkeypatch):
    monkeypatch.setenv("GEOCISS_TEST_KILL_AT", "predict:flushed")
    monkeypatch.setenv("GEOCISS_TEST_KILL_RANK", "1")
    monkeypatch.setenv("RANK", "0")
    fault_point("predict:flushed")  # still alive


def test_a_rank_that_is_gone_stops_the_others_with_one_line():
    def gather() -> None:
        raise RuntimeError(
            "[/w/gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:9. This "
            "is typically caused by a remote worker crashing."
        )

    with pytest.raises(RankLost) as caught:
        sync(gather)
    assert str(caught.value) == (
        "another rank of this job stopped (Connection closed by peer [127.0.0.1]:9); the work "
        "done so far is kept: run the same command again to resume"
    )


@pytest.mark.parametrize("rank", ["0", "1"])
def test_devices_in_a_torchrun_launch_is_a_one_line_error(tmp_path, scene, rank):
    env = {
        "RANK": rank,
        "WORLD_SIZE": "2",
        "LOCAL_RANK": rank,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "1",
        "COLUMNS": "200",
    }
    out = tmp_path / "out"
    res = CliRunner().invoke(
        cli, [*predict_args(scene["model"], out, scene["tall"]), "--devices", "2"], env=env
    )
    assert res.exit_code == 2, res.output
    if rank == "0":
        assert res.output.splitlines() == [
            "error: --devices 2 cannot be combined with a torchrun or srun launch (WORLD_SIZE=2): "
            "every launched process is one rank already; drop --devices and choose the ranks "
            "with the launcher (torchrun --nproc-per-node)"
        ]
    else:
        assert res.output == ""  # rank 0 says it
    assert not out.exists()


# --------------------------------------------------------------------------------- with torchrun


@pytest.mark.slow
@pytest.mark.parametrize("inputs", [("tall", "small"), ("tall",)], ids=["files", "rows"])
def test_torchrun_writes_what_one_process_writes(tmp_path, scene, inputs):
    """Two inputs: one file per rank; one input: its row ranges shared, merged by rank 0."""
    out = tmp_path / "out"
    proc = torchrun(*predict_args(scene["model"], out, *(scene[i] for i in inputs)), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.count("written: ") == len(inputs)  # rank 0 reports, once
    assert_same_outputs(out, scene["ref"], tuple(o for o in OUTPUTS if o.startswith(inputs)))


@pytest.mark.slow
def test_a_killed_rank_stops_the_job_and_the_rerun_resumes(tmp_path, scene):
    out = tmp_path / "out"
    args = predict_args(scene["model"], out, scene["tall"])
    killed = torchrun(
        *args, cwd=tmp_path, GEOCISS_TEST_KILL_AT="predict:flushed", GEOCISS_TEST_KILL_RANK="1"
    )
    assert killed.returncode != 0, killed.stdout + killed.stderr
    assert -9 in exit_codes(killed.stderr), killed.stderr  # rank 1 died after its first rows
    assert not (out / "tall_classes.tif").exists()
    progress = json.loads((out / "tall.predict.rank1.json").read_text())
    assert progress["state"] == "running" and list(progress["parts"].values()) == [1024]
    (out / "tall_classes.tif.partial.rank2").write_bytes(b"")  # as if run with 3 ranks before
    again = torchrun(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert_same_outputs(out, scene["ref"], ("tall_classes.tif", "tall_confidence.tif"))


@pytest.mark.slow
def test_a_locked_output_stops_a_torchrun_job_with_one_line(tmp_path, scene):
    out = tmp_path / "out"
    with OutputLock(out / "small_classes.tif", "geociss predict"):  # held by this live process
        proc = torchrun(
            *predict_args(scene["model"], out, scene["tall"], scene["small"]), cwd=tmp_path
        )
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "small_classes.tif: in use by geociss predict (pid" in errors[0]
    assert not re.search(r'File ".*geociss', proc.stderr), proc.stderr  # no rank's traceback
    # the first rank to end ends with 2; torchrun then stops the other one (SIGTERM) unless it
    # has ended already
    codes = exit_codes(proc.stderr)
    assert codes[-1] == 2 and set(codes) <= {2, -15, 143}, proc.stderr
    assert not out.exists() or not list(out.iterdir())  # nothing written; our lock released


@pytest.mark.slow
def test_a_locked_output_ends_every_rank_of_an_srun_style_launch_with_2(tmp_path, scene):
    """Ranks started with RANK/WORLD_SIZE/MASTER_* set by hand, as under srun: nobody stops them."""
    out = tmp_path / "out"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    clean = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    args = predict_args(scene["model"], out, scene["tall"], scene["small"])
    with OutputLock(out / "small_classes.tif", "geociss predict"):
        ranks = [
            subprocess.Popen(
                [sys.executable, "-m", "geociss", *args],
                cwd=tmp_path,
                env={
                    **clean,
                    "OMP_NUM_THREADS": "1",
                    "RANK": str(r),
                    "WORLD_SIZE": "2",
                    "LOCAL_RANK": str(r),
                    "LOCAL_WORLD_SIZE": "2",
                    "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": port,
                },
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for r in range(2)
        ]
        ends = [rank.communicate(timeout=120) for rank in ranks]
    assert [rank.returncode for rank in ranks] == [2, 2], ends
    (out0, err0), (out1, err1) = ends
    assert out0 == out1 == err1 == ""  # rank 0 says it, once
    assert len(err0.splitlines()) == 1 and "small_classes.tif: in use by geociss" in err0
