"""``geociss bench --jobs``: seeds shared among processes; real children, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from geociss.bench.jobs import label_of, run_jobs, seed_groups, thread_env
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


TALKER = """
import sys, time
for k in range(3):
    print(f"line {k} of " + sys.argv[1], flush=True)
    print(f"warning {k} of " + sys.argv[1], file=sys.stderr, flush=True)
    time.sleep(0.05)
sys.stdout.write("no newline at the end")
"""


def test_labelled_jobs_relay_whole_lines_each_with_its_jobs_label(capsys):
    cmds = [[sys.executable, "-c", TALKER, name] for name in ("a", "b")]
    assert label_of([1]) == "s1" and label_of([0, 3]) == "s0,3"
    assert run_jobs(cmds, log=lambda m: None, labels=["s0", "s1,3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 14
    for label, name in (("s0", "a"), ("s1,3", "b")):
        own = [line for line in lines if line.startswith(f"[{label}] ")]
        assert own == [  # whole lines, in the child's order, stdout and stderr both
            f"[{label}] {kind} {k} of {name}" for k in range(3) for kind in ("line", "warning")
        ] + [f"[{label}] no newline at the end"]
    with pytest.raises(ValueError, match="2 labels for 1 commands"):
        run_jobs(cmds[:1], labels=["s0", "s1"])


def test_a_closed_stdout_does_not_leave_labelled_jobs_blocked(monkeypatch):
    class Gone:  # this process's stdout after `| head` has exited
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Gone())
    loud = "import sys\nfor k in range(20000): print('x' * 40, k)\n"  # ~1 MB, far over a pipe
    done = []
    worker = threading.Thread(
        target=lambda: done.append(
            run_jobs([[sys.executable, "-c", loud]] * 2, log=lambda m: None, labels=["s0", "s1"])
        ),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=120)
    assert done == [0], "a job blocked on its full output pipe"


CHILD = """
import os, signal, sys, time
from pathlib import Path
mark = Path(sys.argv[1])
def stop(signum, frame):
    (mark.parent / (mark.name + ".stopped")).write_text(str(signum))
    print("stopping " + mark.name, flush=True)
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
mark.write_text(str(os.getpid()))
time.sleep(120)
"""

PARENT = """
import sys
from geociss.bench.jobs import run_jobs
from geociss.interrupts import Interrupted, handling_signals
child, folder, labelled = sys.argv[1], sys.argv[2], sys.argv[3] == "labelled"
cmds = [[sys.executable, child, f"{folder}/job{k}"] for k in range(2)]
with handling_signals():
    try:
        run_jobs(cmds, log=lambda m: print(m, flush=True),
                 labels=["s0", "s1"] if labelled else None)
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
    """Running (a zombie that no one has reaped yet, where no init reaps orphans, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    try:
        return "\tZ" not in status.read_text().split("State:")[1].splitlines()[0]
    except (OSError, IndexError):
        return True


@pytest.mark.parametrize("relay", ["labelled", "direct"])
def test_sigterm_to_the_parent_alone_stops_every_job_and_leaves_none_running(tmp_path, relay):
    child = tmp_path / "child.py"
    child.write_text(textwrap.dedent(CHILD))
    parent_py = tmp_path / "parent.py"
    parent_py.write_text(textwrap.dedent(PARENT))
    parent = subprocess.Popen(
        [sys.executable, str(parent_py), str(child), str(tmp_path), relay],
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
    if relay == "labelled":  # the children's last words come through, labelled, before the end
        lines = out.splitlines()
        assert {"[s0] stopping job0", "[s1] stopping job1"} <= set(lines)
        assert lines[-1] == "parent stopped"
    assert "Traceback" not in out
    for m, pid in zip(marks, pids, strict=True):
        assert (m.parent / (m.name + ".stopped")).read_text() == str(int(signal.SIGTERM))
        assert not _alive(pid)


TICKER = """
import os, sys, time
from pathlib import Path
mark = Path(sys.argv[1])
mark.write_text(str(os.getpid()))
for k in range(600):
    print("tick", k, flush=True)
    (mark.parent / (mark.name + ".last")).write_text(str(k))
    time.sleep(0.1)
"""


def test_labelled_jobs_do_not_run_on_after_the_parent_is_killed(tmp_path):
    child = tmp_path / "ticker.py"
    child.write_text(textwrap.dedent(TICKER))
    parent_py = tmp_path / "parent.py"
    parent_py.write_text(textwrap.dedent(PARENT))
    parent = subprocess.Popen(
        [sys.executable, str(parent_py), str(child), str(tmp_path), "labelled"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    marks = [tmp_path / "job0", tmp_path / "job1"]
    _wait_for([m.parent / (m.name + ".last") for m in marks])
    pids = [int(m.read_text()) for m in marks]
    parent.kill()  # SIGKILL: nothing in the parent runs again
    parent.wait(timeout=30)
    end = time.time() + 30
    while any(_alive(pid) for pid in pids):
        assert time.time() < end, "a job ran on after its parent was killed"
        time.sleep(0.1)


def test_bench_jobs_run_the_seed_groups_then_tabulate_every_seed(tmp_path, monkeypatch):
    import geociss.bench as bench
    import geociss.bench.jobs as jobs

    started: list[tuple[list[list[str]], dict[str, str], list[str]]] = []
    benched: list[dict] = []
    monkeypatch.setattr(
        jobs, "run_jobs",
        lambda cmds, env, log, labels: started.append((cmds, env, labels)) or 0,
    )
    monkeypatch.setattr(bench, "sample_scenes", lambda preset, folder: folder)
    monkeypatch.setattr(bench, "run_bench", lambda *a, **kw: benched.append(kw) or [])
    args = ["bench", "--methods", "mib", "--tasks", "4-1", "--out", str(tmp_path), "--jobs", "2"]
    out = CliRunner().invoke(cli, [*args, "--seeds", "0,1,2"])
    assert out.exit_code == 0, out.output
    [(cmds, env, labels)] = started
    assert [c[c.index("--seeds") + 1] for c in cmds] == ["0,2", "1"]
    assert labels == ["s0,2", "s1"]  # each job's lines come back with its seeds in front
    for c in cmds:
        assert c[1:4] == ["-m", "geociss", "bench"] and "--runs-only" in c
        assert c[c.index("--out") + 1] == str(tmp_path) and c[c.index("--methods") + 1] == "mib"
        assert "--jobs" not in c
    assert env["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2))
    # then this process tabulates every seed, with the step costs
    assert benched[-1]["seeds"] == [0, 1, 2] and benched[-1]["measure_costs"] is True

    # a failed job: a one-line error, no tables
    monkeypatch.setattr(jobs, "run_jobs", lambda cmds, env, log, labels: 2)
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
        "--no-records",
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
    monkeypatch.setattr(bench, "collect", lambda *a, **kw: asked.append(a) or rows)
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
    assert "s/step: the runs' own wall time per step" in out.output


def test_report_only_takes_the_saved_step_costs_over_in_run_wall_time(tmp_path, monkeypatch):
    import geociss.bench as bench
    from geociss.bench import BenchRow
    from geociss.bench.cost import COSTS_FILE, save_costs

    rows = [  # in-run wall time: fine-tuning's inflated by other load
        BenchRow("4-1", "finetune", 0.1, 0.3, 0.1, step_seconds=2.0),
        BenchRow("4-1", "mib", 0.7, 0.2, 0.6, step_seconds=0.6),
        BenchRow("4-1", "joint", 0.8, 0.5, 0.7),
    ]
    monkeypatch.setattr(bench, "collect", lambda *a, **kw: rows)
    (tmp_path / "runs").mkdir()
    save_costs(tmp_path / COSTS_FILE, {"finetune": (0.4, 410.0), "mib": (0.5, 452.0)}, "cpu", 5)
    args = ["bench", "--methods", "mib", "--tasks", "4-1", "--seeds", "0", "--out", str(tmp_path)]
    out = CliRunner().invoke(cli, [*args, "--report-only"], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    assert "(5 interleaved rounds" in out.output
    assert rows[1].step_seconds == 0.5 and rows[1].peak_mib == 452.0
    assert rows[1].step_vs_finetune == pytest.approx(1.25)  # not 0.3 from the wall times
    out = CliRunner().invoke(cli, [*args, "--preset", "small", "--report-only"])
    assert "s/step: the runs' own wall time" in out.output  # costs of another preset: not used
