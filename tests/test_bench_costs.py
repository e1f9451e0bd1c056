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
