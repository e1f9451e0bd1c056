"""``geociss bench --jobs``: seeds shared among processes; real children, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from geociss.bench.jobs import run_jobs, seed_groups, thread_env
from geociss.cli.main import cli


def test_seeds_go_round_robin_and_no_job_is_empty():
    assert seed_groups([0, 1, 2, 3], 3) == [[0, 3], [1], [2]]
    assert seed_groups([0, 1], 4) == [[0], [1]]
    assert seed_groups([5], 1) == [[5]]
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        seed_groups([0], 0)


def test_threads_are_the_cores_shared_out_at_least_one():
    assert thread_env(2, 3) == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert thread_env(16, 2)["OMP_NUM_THREADS"] == "8"


def test_run_jobs_returns_the_worst_exit_status_and_passes_the_environment(tmp_path):
    code = (
        "import os, sys; open(sys.argv[1], 'w').write(os.environ.get('OMP_NUM_THREADS', '-'));"
        " sys.exit(int(sys.argv[2]))"
    )
    cmds = [[sys.executable, "-c", code, str(tmp_path / f"{k}.txt"), str(k)] for k in (0, 3, 1)]
    assert run_jobs(cmds, {"OMP_NUM_THREADS": "7"}, log=lambda m: None) == 3
    assert [(tmp_path / f"{k}.txt").read_text() for k in (0, 3, 1)] == ["7"] * 3
    assert run_jobs([cmds[0]], log=lambda m: None) == 0


CHILD = """
import os, signal, sys, time
from pathlib import Path
mark = Path(sys.argv[1])
def stop(signum, frame):
    (mark.parent / (mark.name + ".stopped")).write_text(str(signum))
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
mark.write_text(str(os.getpid()))
time.sleep(120)
"""

PARENT = """
import sys
from geociss.bench.jobs import run_jobs
from geociss.interrupts import Interrupted, handling_signals
child, folder = sys.argv[1], sys.argv[2]
cmds = [[sys.executable, child, f"{folder}/job{k}"] for k in range(2)]
with handling_signals():
    try:
        run_jobs(cmds, log=lambda m: print(m, flush=True))
    except Interrupted as err:
        print("parent stopped", flush=True)
        sys.exit(err.exit_status)
"""


def _wait_for(paths: list[Path], seconds: float = 60) -> None:
    end = time.time() + seconds
    while not all(p.exists() for p in paths):
        assert time.time() < end, f"never appeared: {[p for p in paths if not p.exists()]}"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_to_the_parent_alone_stops_every_job_and_leaves_none_running(tmp_path):
    child = tmp_path / "child.py"
    child.write_text(textwrap.dedent(CHILD))
    parent_py = tmp_path / "parent.py"
    parent_py.write_text(textwrap.dedent(PARENT))
    parent = subprocess.Popen(
        [sys.executable, str(parent_py), str(child), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the signal below reaches the parent only, as `kill PID` does
    )
    marks = [tmp_path / "job0", tmp_path / "job1"]
    _wait_for(marks)
    _wait_for([m for m in marks if m.read_text()])  # each child has written its pid
    pids = [int(m.read_text()) for m in marks]
    parent.send_signal(signal.SIGTERM)
    out, _ = parent.communicate(timeout=60)
    assert parent.returncode == 143, out
    assert "waiting for 2 job(s) to stop" in out and "parent stopped" in out
    assert "Traceback" not in out
    for m, pid in zip(marks, pids, strict=True):
        assert (m.parent / (m.name + ".stopped")).read_text() == str(int(signal.SIGTERM))
        assert not _alive(pid)


def test_bench_jobs_run_the_seed_groups_then_tabulate_every_seed(tmp_path, monkeypatch):
    import geociss.bench as bench
    import geociss.bench.jobs as jobs

    started: list[tuple[list[list[str]], dict[str, str]]] = []
    benched: list[dict] = []
    monkeypatch.setattr(jobs, "run_jobs", lambda cmds, env, log: started.append((cmds, env)) or 0)
    monkeypatch.setattr(bench, "sample_scenes", lambda preset, folder: folder)
    monkeypatch.setattr(bench, "run_bench", lambda *a, **kw: benched.append(kw) or [])
    args = ["bench", "--methods", "mib", "--tasks", "4-1", "--out", str(tmp_path), "--jobs", "2"]
    out = CliRunner().invoke(cli, [*args, "--seeds", "0,1,2"])
    assert out.exit_code == 0, out.output
    [(cmds, env)] = started
    assert [c[c.index("--seeds") + 1] for c in cmds] == ["0,2", "1"]
    for c in cmds:
        assert c[1:4] == ["-m", "geociss", "bench"] and "--runs-only" in c
        assert c[c.index("--out") + 1] == str(tmp_path) and c[c.index("--methods") + 1] == "mib"
        assert "--jobs" not in c
    assert env["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2))
    # then this process tabulates every seed, with the step costs
    assert benched[-1]["seeds"] == [0, 1, 2] and benched[-1]["measure_costs"] is True

    # a failed job: a one-line error, no tables
    monkeypatch.setattr(jobs, "run_jobs", lambda cmds, env, log: 2)
    benched.clear()
    out = CliRunner().invoke(cli, [*args, "--seeds", "0,1"])
    assert out.exit_code != 0 and "a bench job failed (exit status 2)" in out.output
    assert benched == []


def test_a_job_runs_its_cells_without_costs_or_tables(tmp_path, monkeypatch):
    import geociss.bench as bench

    benched: list[dict] = []
    monkeypatch.setattr(bench, "run_bench", lambda *a, **kw: benched.append(kw) or [])
    out = CliRunner().invoke(
        cli, ["bench", "--methods", "mib", "--out", str(tmp_path), "--seeds", "1", "--runs-only"]
    )
    assert out.exit_code == 0 and "results:" not in out.output and "|" not in out.output
    assert benched[0]["measure_costs"] is False and benched[0]["seeds"] == [1]


def test_sigterm_stops_bench_methods_mid_fit_with_one_line_and_nothing_half_written(tmp_path):
    """A real `python -m benchmarks.bench_methods` run, SIGTERM while step 0 trains."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_methods",
        "--preset",
        "small",
        "--tasks",
        "4-1",
        "--methods",
        "mib",
        "--seeds",
        "0",
        "--out",
        str(tmp_path / "b"),
        "--section",
        "test-only",
        "--no-report",
    ]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines = []
    for line in proc.stdout:  # wait until step 0 is training
        lines.append(line)
        if line.startswith("step 0: learning"):
            break
    time.sleep(3)  # into the fit
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    out = "".join(lines) + rest
    assert proc.returncode == 143, out
    assert "bench: interrupted (SIGTERM); run the same command again to resume" in out
    assert "Traceback" not in out
    runs = tmp_path / "b" / "runs"
    assert not list(runs.rglob("bundle.safetensors"))  # nothing half-written under a final name
    assert not list(runs.glob("*.lock"))  # the lock was released


def test_report_only_tabulates_the_finished_cells_and_trains_nothing(tmp_path, monkeypatch):
    import geociss.bench as bench
    from geociss.bench import BenchRow

    def row(method, seed, all_, note=""):
        return BenchRow("4-1", method, all_, 0.1, all_, note=note, seed=seed)

    rows = [
        row("finetune", 0, 0.1),
        row("mib", 0, 0.6),
        row("joint", 0, 0.7),
        row("mib", 1, None, note="incomplete"),
    ]
    asked = []
    monkeypatch.setattr(bench, "collect", lambda *a: asked.append(a) or rows)
    monkeypatch.setattr(bench, "run_bench", lambda *a, **kw: pytest.fail("trained"))
    args = ["bench", "--methods", "mib", "--tasks", "4-1", "--seeds", "0,1", "--out", str(tmp_path)]
    out = CliRunner().invoke(cli, [*args, "--report-only"])
    assert out.exit_code == 2 and "no benchmark runs here" in out.output  # no runs/ yet
    (tmp_path / "runs").mkdir()
    out = CliRunner().invoke(cli, [*args, "--report-only"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "3 of 6 cells finished, 1 started and not finished" in out.output
    assert "mib" in out.output and "incomplete" not in out.output
    assert asked == [(["mib"], ["4-1"], "cpu", tmp_path, [0, 1])]
