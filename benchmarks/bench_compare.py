"""What a change did to the methods table: paired differences between two benchmark folders.

Run: python -m benchmarks.bench_compare NEW OLD [--tasks 4-1|all] [--methods ...] [--seeds 0,1,2]
                                                [--preset cpu] [--class car]

NEW and OLD are output folders of ``bench_methods`` / ``geociss bench`` (the same preset, run
before and after a change: another class weight, a fix, another schedule). For every task and
method finished in both, with the same seeds, it prints NEW − OLD of all-, old- and new-mIoU and
of one class's IoU, in percentage points, mean and 95 % Student-t interval over the seeds
(paired: the same seed in both folders). A difference is called real (``higher``, ``lower``)
only where its interval excludes 0. Nothing is trained and nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from geociss.bench import DEFAULT_METHODS, BenchRow, collect, task_list
from geociss.bench.stats import paired_difference


def compare(new: list[BenchRow], old: list[BenchRow], cls: str) -> str:
    """A markdown table of NEW − OLD per task and method (cells finished in both)."""

    def finished(rows: list[BenchRow]) -> dict[tuple[str, str], dict[int, BenchRow]]:
        cells: dict[tuple[str, str], dict[int, BenchRow]] = {}
        for r in rows:
            if r.all is not None:
                cells.setdefault((r.task, r.method), {})[r.seed] = r
        return cells

    before = finished(old)
    lines = [
        f"| task | method | seeds | Δ all [95 % CI] | Δ old | Δ new | Δ {cls} IoU |",
        "| --- | --- | ---: | --- | --- | --- | --- |",
    ]
    for (task, method), after in finished(new).items():
        prior = before.get((task, method), {})
        seeds = sorted(set(after) & set(prior))
        if not seeds:
            continue
        cells = [
            _diff({s: value(after[s]) for s in seeds}, {s: value(prior[s]) for s in seeds})
            for value in (
                lambda r: r.all, lambda r: r.old, lambda r: r.new,
                lambda r: r.per_class.get(cls),
            )
        ]
        lines.append(f"| {task} | {method} | {len(seeds)} | " + " | ".join(cells) + " |")
    if len(lines) == 2:
        return "no cell is finished in both folders with a common seed"
    return "\n".join(lines)


def _diff(a: dict[int, float | None], b: dict[int, float | None]) -> str:
    """``+2.0 [+1.1, +2.9] higher`` (percentage points; a word only where 0 is outside)."""
    d = paired_difference(a, b)
    return d.show(verdict=False) + {"better": " higher", "worse": " lower"}.get(d.verdict, "")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("new", type=Path, help="benchmark folder after the change")
    ap.add_argument("old", type=Path, help="benchmark folder before the change")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--methods", default=DEFAULT_METHODS)
    ap.add_argument("--tasks", default="all", help="comma-separated tasks, or all")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--class", dest="cls", default="car", help="the class whose IoU to compare")
    args = ap.parse_args(argv)
    for folder in (args.new, args.old):
        if not (folder / "runs").is_dir():
            raise SystemExit(f"bench_compare: {folder}: no benchmark runs here (no runs/ folder)")
    methods, tasks = args.methods.split(","), task_list(args.tasks)
    seeds = [int(s) for s in args.seeds.split(",")]
    new = collect(methods, tasks, args.preset, args.new, seeds)
    old = collect(methods, tasks, args.preset, args.old, seeds)
    print(f"{args.new} − {args.old} (percentage points, paired by seed)\n")
    print(compare(new, old, args.cls))


if __name__ == "__main__":
    main()
