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
        bm, "collect", lambda m, t, p, o, s, **kw: asked.append((list(m), list(t), list(s))) or []
    )
    monkeypatch.setattr(bm, "update_section", lambda name, text: written.append(text))
    monkeypatch.setattr(
        sys, "argv",
        ["bench_methods", "--tasks", "2-1-1-1", "--methods", "idec-no-dada,x-extra", "--seeds",
         "1", "--out", str(tmp_path), "--no-records"],
    )
    monkeypatch.setattr(bm, "sample_scenes", lambda preset, folder: folder)
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
    # more jobs than seeds: one per seed; more cores: shared out among the processes that run
    jobs = seed_jobs(["--seeds", "0,1"], [0, 1], 4, cores=16)
    assert len(jobs) == 2 and jobs[0][1]["OMP_NUM_THREADS"] == "8"


def test_the_parent_of_jobs_writes_the_table_and_its_children_do_not(tmp_path, monkeypatch):
    import benchmarks.bench_methods as bm

    written: list[str] = []
    jobs: list[tuple] = []
    monkeypatch.setattr(bm, "update_section", lambda name, text: written.append(text))
    monkeypatch.setattr(bm, "collect", lambda *a, **kw: [])
    monkeypatch.setattr(bm, "run_bench", lambda *a, **kw: None)
    monkeypatch.setattr(bm, "sample_scenes", lambda preset, folder: jobs.append(folder))
    monkeypatch.setattr(bm, "_run_jobs", lambda argv, seeds, n: jobs.append((seeds, n)) or 0)
    monkeypatch.setattr(sys, "argv", ["bench_methods", "--jobs", "3", "--out", str(tmp_path),
                                      "--no-records"])
    bm.main()
    # the scenes are written once, before the children start (not by three at a time)
    assert jobs == [tmp_path / "sample", ([0, 1, 2], 3)] and len(written) == 1
    monkeypatch.setattr(sys, "argv", ["bench_methods", "--seeds", "1", "--no-report"])
    bm.main()
    assert len(written) == 1  # a child writes nothing
    monkeypatch.setattr(bm, "_run_jobs", lambda argv, seeds, n: 1)
    monkeypatch.setattr(sys, "argv", ["bench_methods", "--jobs", "2", "--out", str(tmp_path),
                                      "--no-records"])
    with pytest.raises(SystemExit, match="a job failed"):
        bm.main()
    assert len(written) == 1  # no table after a failed job


def test_diag_paired_summary_pairs_each_variant_with_the_reference_by_seed():
    from benchmarks.diag_cpu_preset import CLASSES, paired_summary

    def res(all_: float, car: float) -> dict:
        return {"all": all_, **{c: 0.5 for c in CLASSES}, "car": car}

    results = {
        ("ref", "joint"): {0: res(0.70, 0.30), 1: res(0.70, 0.30), 2: res(0.70, 0.30)},
        ("car ×100", "joint"): {0: res(0.73, 0.43), 1: res(0.74, 0.44), 2: res(0.75, 0.45)},
        ("one seed", "joint"): {5: res(0.60, 0.1), 0: res(0.65, 0.2)},
    }
    lines = paired_summary(results, "ref")
    assert lines[0].startswith("| variant | method | vs ref: all Δ [95 % CI] |")
    body = {line.split(" | ")[0].strip("| "): line for line in lines[2:]}
    assert set(body) == {"car ×100", "one seed"}  # the reference is not compared with itself
    # all: differences 3, 4, 5 points → +4.0 [+1.5, +6.5]; car: 13, 14, 15 → +14.0 [+11.5, +16.5]
    assert "| +4.0 [+1.5, +6.5] |" in body["car ×100"]
    assert body["car ×100"].endswith("| +14.0 [+11.5, +16.5] |")
    assert "| -5.0 (1 seed) |" in body["one seed"]  # seed 5 has no partner


def test_diag_runs_every_seed_and_the_reference_even_when_only_leaves_it_out(
    monkeypatch, capsys
):
    import benchmarks.diag_cpu_preset as diag

    calls = []

    def fake_run(kind, name, overrides, method, out, seed):
        calls.append((name, seed))
        car = 0.4 if name == "car ×100" else 0.3
        return f"| {name} | s{seed} |", {"all": 0.7, **{c: 0.5 for c in diag.CLASSES}, "car": car}

    ref = "adamw lr 0.001, car ×30, 10 epochs, clip 5 (preset ×30)"
    monkeypatch.setattr(diag, "run", fake_run)
    monkeypatch.setattr(diag, "sample_scenes", lambda preset, folder: folder)
    monkeypatch.setattr(
        "sys.argv",
        ["diag", "joint", "--only", "car ×100", "--seeds", "0,1", "--against", ref],
    )
    diag.main()
    assert sorted(calls) == sorted([(ref, 0), (ref, 1), ("car ×100", 0), ("car ×100", 1)])
    out = capsys.readouterr().out
    assert "| car ×100 | joint | +0.0 [+0.0, +0.0] |" in out
    assert out.rstrip().endswith("+10.0 [+10.0, +10.0] |")  # car, the last column
