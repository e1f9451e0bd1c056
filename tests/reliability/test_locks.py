"""Output locks: a live holder stops predict, train and extend at once; stale locks are taken over.

The "other process" is real: a ``sleep`` child whose pid a lock file names (alive), or a child
that has ended (its pid is dead). Takeovers race between real processes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from geociss.cli.main import cli
from geociss.locks import LockedError, LockHolder, OutputLock, OutputLocks, lock_path

from fakes import random_pair, tiny_isprs_bundle, write_tif

HOST = socket.gethostname()


@pytest.fixture
def live_pid():
    """The pid of a live process (a ``sleep``), killed after the test."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def dead_pid():
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def hold(target: Path, pid: int, host: str = HOST, command: str = "geociss predict") -> Path:
    """Write the lock file of ``target`` as process ``pid`` of ``host`` would."""
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(LockHolder(pid, host, time.time() - 60, command).to_json())
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_isprs_bundle().save(tmp_path_factory.mktemp("bundle") / "step0.safetensors")


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "300"})


def predict_args(bundle: Path, out: Path, *inputs: Path) -> list[object]:
    return [
        "predict",
        "--model",
        bundle,
        "--out",
        out,
        *inputs,
        "--tile",
        "64",
        "--overlap",
        "16",
        "--workers",
        "0",
    ]


def test_a_lock_records_its_holder_and_goes_with_it(tmp_path):
    target = tmp_path / "new" / "deeper" / "run"
    with OutputLock(target, "geociss train") as lock:
        data = json.loads(lock.path.read_text())
        assert lock.path == tmp_path / "new" / "deeper" / "run.lock"
        assert (data["pid"], data["host"], data["command"]) == (os.getpid(), HOST, "geociss train")
        assert abs(data["since"] - time.time()) < 60
        with pytest.raises(LockedError, match=r"\(this process\)"):
            OutputLock(target, "geociss train").acquire()
    assert not (tmp_path / "new").exists()  # the lock and the folders made for it are gone


def test_an_error_releases_the_lock(tmp_path):
    with pytest.raises(KeyError), OutputLock(tmp_path / "x.tif", "geociss predict"):
        raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []


def test_all_or_none(tmp_path, live_pid):
    hold(tmp_path / "b.tif", live_pid)
    with pytest.raises(LockedError), OutputLocks([tmp_path / "a.tif", tmp_path / "b.tif"], "p"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tif.lock"]


def test_a_live_holder_stops_predict_at_once_naming_it(tmp_path, bundle, live_pid):
    image = np.random.default_rng(0).integers(0, 256, (3, 96, 96), dtype=np.uint8)
    src = write_tif(tmp_path / "in" / "scene.tif", image)
    out = tmp_path / "out"
    lock = hold(out / "scene_classes.tif", live_pid)
    before = snapshot(out)
    res = run(*predict_args(bundle, out, src))
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out / 'scene_classes.tif'}: in use")
    assert f"pid {live_pid} on host {HOST}, since " in lines[0] and str(lock) in lines[0]
    assert snapshot(out) == before  # nothing written, the lock untouched


def experiment(root: Path) -> Path:
    random_pair(root / "data", "a", size=32)
    path = root / "config.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        name: run
        out: {root / "runs"}
        data: {{images: {root / "data" / "images"}, labels: {root / "data" / "labels"}}}
        model: {{encoder: tiny, weights: none, aspp_channels: 16}}
        scenario: {{task: 2-3, unlearned: [clutter]}}
        """)
    )
    return path


def test_a_live_holder_stops_train_and_extend(tmp_path, bundle, live_pid):
    config = experiment(tmp_path)
    lock = hold(tmp_path / "runs" / "run", live_pid, command="geociss train")
    res = run("train", config, "--no-progress")
    assert res.exit_code == 2, res.output
    assert res.output.strip() == (
        f"error: {tmp_path / 'runs' / 'run'}: in use by geociss train ("
        f"{LockHolder.parse(lock.read_text()).describe()}); wait for it to end or write "
        f"elsewhere (lock file {lock})"
    )
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["run.lock"]

    out = tmp_path / "ext" / "extended.safetensors"
    hold(out, live_pid, command="geociss extend")
    res = run(
        "extend",
        "--model",
        bundle,
        "--images",
        tmp_path / "data" / "images",
        "--labels",
        tmp_path / "data" / "labels",
        "--new-classes",
        "car",
        "--method",
        "mib",
        "--out",
        out,
        "--device",
        "cpu",
        "--no-progress",
    )
    assert res.exit_code == 2, res.output
    assert len(res.output.strip().splitlines()) == 1
    assert f"{out}: in use by geociss extend (pid {live_pid} on host {HOST}" in res.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["extended.safetensors.lock"]


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, bundle, dead_pid):
    image = np.random.default_rng(1).integers(0, 256, (3, 96, 96), dtype=np.uint8)
    src = write_tif(tmp_path / "in" / "scene.tif", image)
    out = tmp_path / "out"
    hold(out / "scene_classes.tif", dead_pid)
    res = run(*predict_args(bundle, out, src))
    assert res.exit_code == 0, res.output
    assert f"took over the lock of a run that is gone (geociss predict, pid {dead_pid}" in (
        res.output
    )
    assert (out / "scene_classes.tif").is_file()
    assert not list(out.glob("*.lock*"))  # taken over, then released


def test_a_reused_pid_and_a_zombie_do_not_hold_a_lock(tmp_path, live_pid):
    target = tmp_path / "x.tif"
    reused = LockHolder(live_pid, HOST, time.time(), "geociss predict", start=1)  # other start
    lock_path(target).write_text(reused.to_json())
    with OutputLock(target, "geociss predict", log=lambda _: None) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    zombie = subprocess.Popen(["true"])
    time.sleep(0.3)  # ended, not reaped yet
    hold(target, zombie.pid)
    with OutputLock(target, "geociss predict", log=lambda _: None):
        pass
    zombie.wait()


def test_a_lock_of_another_host_is_left_alone(tmp_path, dead_pid):
    target = tmp_path / "run"
    lock = hold(target, dead_pid, host="elsewhere.example", command="geociss train")
    with pytest.raises(LockedError) as err:
        OutputLock(target, "geociss train").acquire()
    assert "another host); if that run is gone, delete the lock file" in str(err.value)
    assert lock.read_text() == LockHolder.parse(lock.read_text()).to_json()  # untouched


TAKER = """
import sys, time
from pathlib import Path
from geociss.locks import LockedError, OutputLock
target, folder = Path(sys.argv[1]), Path(sys.argv[2])
(folder / f"ready-{sys.argv[3]}").touch()
while not (folder / "start").exists():
    time.sleep(0.001)
try:
    lock = OutputLock(target, "taker", log=lambda _: None).acquire()
except LockedError:
    sys.exit(3)
(folder / "won").write_text(sys.argv[3])
while not (folder / "done").exists():
    time.sleep(0.01)
lock.release()
"""


def test_racing_takeovers_of_a_stale_lock_let_exactly_one_win(tmp_path, dead_pid):
    target = tmp_path / "out" / "scene_classes.tif"
    hold(target, dead_pid)
    takers = [
        subprocess.Popen([sys.executable, "-c", TAKER, str(target), str(tmp_path), str(i)])
        for i in range(6)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    (tmp_path / "start").touch()  # all six try at the same moment
    won = tmp_path / "won"
    while not (won.exists() and won.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    winner = takers[int(won.read_text())]
    codes = [p.wait(timeout=60) for p in takers if p is not winner]
    assert codes == [3] * 5, codes  # each loser refused, none took the lock
    assert winner.poll() is None  # the winner still holds it
    (tmp_path / "done").touch()
    assert winner.wait(timeout=30) == 0
    assert sorted(p.name for p in target.parent.iterdir()) == []
