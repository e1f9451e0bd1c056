"""bench_methods: saved step costs, whole tables from every process, jobs sharing the seeds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's benchmarks/

from benchmarks.bench_methods import load_costs, save_costs


def test_saved_costs_come_back_for_their_preset_only(tmp_path: Path) -> None:
    path = tmp_path / "step-costs.json"
    assert load_costs(path, "cpu") == ({}, "")
    save_costs(path, {"finetune": (0.4, 401.0), "mib": (0.5, 450.5)}, "cpu", 5)
    costs, how = load_costs(path, "cpu")
    assert costs == {"finetune": (0.4, 401.0), "mib": (0.5, 450.5)}
    assert "--cost-rounds 5" in how
    assert load_costs(path, "small") == ({}, "")
    assert not list(tmp_path.glob("*.tmp"))


def test_a_one_seed_run_writes_the_table_of_every_finished_run(
    tmp_path: Path, monkeypatch
) -> None:
    """Several processes (one per seed) each end by writing the docs section: each must leave
    the table of all finished runs of the folder, not a table of its own seed alone."""
    import benchmarks.bench_methods as bm

    ran: list[tuple] = []
    asked: list[tuple] = []
    written: list[str] = []
    monkeypatch.setattr(
        bm, "run_bench",
        lambda m, t, p, o, **kw: ran.append((m, t, kw["seeds"], kw["measure_costs"])),
    )
    monkeypatch.setattr(
        bm, "collect", lambda m, t, p, o, s: asked.append((list(m), list(t), list(s))) or []
    )
    monkeypatch.setattr(bm, "update_section", lambda name, text: written.append(text))
    monkeypatch.setattr(
        sys, "argv",
        ["bench_methods", "--tasks", "2-1-1-1", "--methods", "idec-no-dada,x-extra", "--seeds",
         "1", "--out", str(tmp_path)],
    )
    bm.main()
    assert ran == [(["idec-no-dada", "x-extra"], ["2-1-1-1"], [1], False)]  # costs: from the file
    methods, tasks, seeds = asked[0]
    assert set(bm.METHODS.split(",")) | {"x-extra"} == set(methods)
    assert tasks == bm.TASKS.split(",") and seeds == [0, 1, 2]
    assert "--report-only" in written[0] and "--seeds 0,1,2" in written[0]


def test_jobs_share_the_seeds_and_the_cores_and_leave_the_table_to_the_parent() -> None:
    from benchmarks.bench_methods import seed_jobs

    argv = ["--tasks", "4-1", "--seeds=0,1,2,3", "--jobs", "3", "--out", "b"]
    jobs = seed_jobs(argv, [0, 1, 2, 3], 3, cores=2)
    assert len(jobs) == 3
    seeds = [cmd[cmd.index("--seeds") + 1] for cmd, _ in jobs]
    assert seeds == ["0,3", "1", "2"]
    for cmd, env in jobs:
        assert cmd[1:3] == ["-m", "benchmarks.bench_methods"] and cmd[-1] == "--no-report"
        assert cmd[cmd.index("--jobs") + 1] == "1" and cmd.count("--jobs") == 1
        assert not any(a.startswith("--seeds=") for a in cmd)
        assert cmd[cmd.index("--tasks") + 1] == "4-1" and cmd[cmd.index("--out") + 1] == "b"
        assert env == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    # more jobs than seeds: one per seed; more cores: threads shared out
    jobs = seed_jobs(["--seeds", "0,1"], [0, 1], 4, cores=16)
    assert len(jobs) == 2 and jobs[0][1]["OMP_NUM_THREADS"] == "4"


def test_the_parent_of_jobs_writes_the_table_and_its_children_do_not(tmp_path, monkeypatch):
    import benchmarks.bench_methods as bm

    written: list[str] = []
    jobs: list[tuple] = []
    monkeypatch.setattr(bm, "update_section", lambda name, text: written.append(text))
    monkeypatch.setattr(bm, "collect", lambda *a: [])
    monkeypatch.setattr(bm, "run_bench", lambda *a, **kw: None)
    monkeypatch.setattr(bm, "sample_scenes", lambda preset, folder: jobs.append(folder))
    monkeypatch.setattr(bm, "_run_jobs", lambda argv, seeds, n: jobs.append((seeds, n)) or 0)
    monkeypatch.setattr(sys, "argv", ["bench_methods", "--jobs", "3", "--out", str(tmp_path)])
    bm.main()
    # the scenes are written once, before the children start (not by three at a time)
    assert jobs == [tmp_path / "sample", ([0, 1, 2], 3)] and len(written) == 1
    monkeypatch.setattr(sys, "argv", ["bench_methods", "--seeds", "1", "--no-report"])
    bm.main()
    assert len(written) == 1  # a child writes nothing
    monkeypatch.setattr(bm, "_run_jobs", lambda argv, seeds, n: 1)
    monkeypatch.setattr(sys, "argv", ["bench_methods", "--jobs", "2", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="a job failed"):
        bm.main()
    assert len(written) == 1  # no table after a failed job
