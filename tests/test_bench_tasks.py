"""Which tasks a bench runs: 4-1 unless told, ``all`` for the four IDEC tasks, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's benchmarks/

from geociss.bench import DEFAULT_TASKS, IDEC_TASKS, BenchRow, task_list
from geociss.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_all_names_the_four_idec_tasks_and_names_repeat_once() -> None:
    assert task_list("all") == ["4-1", "2-3", "2-2-1", "2-1-1-1"] == list(IDEC_TASKS)
    assert task_list("2-3, all,4-1") == ["2-3", "4-1", "2-2-1", "2-1-1-1"]
    assert task_list("15-5s") == ["15-5s"]
    assert task_list(DEFAULT_TASKS) == ["4-1"]
    for empty in ("", ",", " , "):
        with pytest.raises(ConfigError, match="--tasks names no task"):
            task_list(empty)


def _bench(monkeypatch, tmp_path: Path, *args: str) -> tuple[list, object]:
    import geociss.bench as bench
    from geociss.cli.main import cli

    ran: list = []
    monkeypatch.setattr(bench, "run_bench", lambda m, t, *a, **kw: ran.append(list(t)) or [])
    out = CliRunner().invoke(cli, ["bench", "--methods", "mib", "--out", str(tmp_path), *args])
    return ran, out


def test_geociss_bench_runs_4_1_unless_told_and_all_tasks_with_all(monkeypatch, tmp_path) -> None:
    ran, out = _bench(monkeypatch, tmp_path)
    assert out.exit_code == 0, out.output
    assert ran == [["4-1"]]
    ran, out = _bench(monkeypatch, tmp_path, "--tasks", "all")
    assert out.exit_code == 0 and ran == [list(IDEC_TASKS)]
    ran, out = _bench(monkeypatch, tmp_path, "--tasks", ",")
    assert out.exit_code != 0 and ran == []
    assert "--tasks names no task" in out.output and "Traceback" not in out.output


def test_bench_methods_runs_4_1_unless_told_and_tabulates_every_task(monkeypatch, tmp_path) -> None:
    import benchmarks.bench_methods as bm

    ran: list = []
    asked: list = []
    monkeypatch.setattr(bm, "run_bench", lambda m, t, p, o, **kw: ran.append(list(t)))
    monkeypatch.setattr(bm, "collect", lambda m, t, p, o, s, **kw: asked.append(list(t)) or [])
    monkeypatch.setattr(bm, "update_section", lambda name, text: None)
    monkeypatch.setattr(bm, "sample_scenes", lambda preset, folder: folder)
    for argv, runs in (([], ["4-1"]), (["--tasks", "all"], list(IDEC_TASKS))):
        ran.clear()
        asked.clear()
        monkeypatch.setattr(sys, "argv", ["bench_methods", "--out", str(tmp_path), "--no-records",
                                          *argv])
        bm.main()
        assert ran == [runs]
        assert asked == [list(IDEC_TASKS)]  # the table: every finished task of the folder


def test_the_printed_command_names_the_tasks_that_have_finished_runs(monkeypatch) -> None:
    import argparse

    import benchmarks.bench_methods as bm

    rows = [BenchRow("4-1", m, 70.0, 30.0, 60.0, seed=s) for m in ("finetune", "mib", "joint")
            for s in (0, 1)]
    monkeypatch.setattr(bm, "collect", lambda *a, **kw: rows)
    args = argparse.Namespace(preset="cpu", out="nowhere", measure_cost=False, records=None,
                              no_records=True)
    text = bm.report(args, ["mib"], list(IDEC_TASKS), [0, 1])
    assert "--tasks 4-1 --seeds 0,1 --jobs 3` (trains what is missing" in text
    assert "this text: the same with `--report-only`)" in text
    assert text.startswith("## Methods on the sample scenes (cpu preset: 4-1)")
    monkeypatch.setattr(bm, "collect", lambda *a, **kw: [])
    assert "--tasks 4-1,2-3,2-2-1,2-1-1-1 " in bm.report(args, ["mib"], list(IDEC_TASKS), [0])
    args.preset = "paper"  # a GPU preset: one process, no --jobs
    text = bm.report(args, ["mib"], ["4-1"], [0])
    assert "--seeds 0` (trains what is missing, then writes" in text and "--jobs" not in text


def test_bench_methods_rejects_bad_tasks_with_one_line(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_methods", "--tasks", ",", "--out",
         str(tmp_path / "b")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "bench: --tasks names no task (got ','; e.g. 4-1 or all)"
    ]
    assert not (tmp_path / "b").exists()
