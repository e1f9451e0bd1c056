"""bench_methods keeps measured step costs for later reports of the same preset."""

from __future__ import annotations

import sys
from pathlib import Path

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
