"""bench_compare: paired NEW − OLD differences between two benchmark folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's benchmarks/

from benchmarks.bench_compare import compare
from geociss.bench import BenchRow

ROOT = Path(__file__).resolve().parents[1]


def _row(method: str, seed: int, all_: float, car: float, task: str = "4-1") -> BenchRow:
    return BenchRow(task, method, 0.8, car, all_, seed=seed, per_class={"car": car})


def test_differences_are_paired_by_seed_and_called_only_outside_the_interval() -> None:
    old = [_row("mib", s, 0.60 + s / 100, 0.30 + s / 100) for s in range(3)]
    old += [_row("idec", s, 0.70, 0.20) for s in range(3)]
    # mib: all +2 points on every seed (a real change); car −10 + noise that straddles 0
    new = [_row("mib", s, 0.62 + s / 100, 0.30 + s / 100 + (-0.3, 0.2, 0.1)[s]) for s in range(3)]
    new += [_row("idec", s, 0.70, 0.20) for s in (0, 1)]  # seed 2 not finished here
    new += [_row("ucd", 0, 0.5, 0.1)]  # not in OLD: left out
    lines = compare(new, old, "car").splitlines()
    assert lines[0].startswith("| task | method | seeds | Δ all [95 % CI]")
    mib = next(line for line in lines if "| mib |" in line).split(" | ")
    assert mib[2] == "3" and mib[3] == "+2.0 [+2.0, +2.0] higher"
    assert mib[6].startswith("+0.0 [") and not mib[6].rstrip(" |").endswith(("higher", "lower"))
    idec = next(line for line in lines if "| idec |" in line).split(" | ")
    assert idec[2] == "2" and idec[3] == "+0.0 [+0.0, +0.0]"
    assert not any("| ucd |" in line for line in lines)
    assert compare(new, [], "car") == "no cell is finished in both folders with a common seed"


def test_a_folder_without_runs_is_one_line_and_a_failure(tmp_path: Path) -> None:
    (tmp_path / "new" / "runs").mkdir(parents=True)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_compare", str(tmp_path / "new"),
         str(tmp_path / "old")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"bench_compare: {tmp_path / 'old'}: no benchmark runs here (no runs/ folder)"
    )
