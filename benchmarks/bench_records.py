"""Per-seed numbers of the recorded bench cells, and how far a long table has come.

Run: python -m benchmarks.bench_records [--tasks all] [--class car] [--metric all|old|new]
                                        [--methods ...] [--seeds 0,1,2] [--preset cpu]
                                        [--records DIR] [--out bench-cpu]

The tables of ``bench_methods`` give means over seeds; this prints, per task, one row per method
with the value of every seed (all-, old- or new-mIoU, or one class's IoU with ``--class``), in %,
and how many of the task's cells are finished (recorded in ``benchmarks/results/<preset>/``
for this configuration and data, or with a complete run folder under ``--out``). Nothing is
trained and nothing is written except the sample scenes under ``--out`` when missing (their
contents are fingerprinted).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from geociss.bench import DEFAULT_METHODS, BenchRow, ResultStore, collect, task_list

RECORDS = Path(__file__).resolve().parent / "results"


def seed_table(rows: list[BenchRow], tasks: list[str], methods: list[str], seeds: list[int],
               metric: str, cls: str | None) -> str:
    """A markdown table per task: method × seed, and the count of finished cells."""

    def value(r: BenchRow) -> float | None:
        return r.per_class.get(cls) if cls else getattr(r, metric)

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    specs = list(dict.fromkeys(["finetune", *methods, "joint"]))
    what = f"{cls} IoU" if cls else f"{metric}-mIoU"
    out = []
    for task in tasks:
        cells = {(r.method, r.seed): r for r in rows if r.task == task and r.note != "incomplete"}
        done = sum((m, s) in cells for m in specs for s in seeds)
        lines = [f"{task}: {done} of {len(specs) * len(seeds)} cells finished ({what}, %)", "",
                 "| method | " + " | ".join(f"seed {s}" for s in seeds) + " |",
                 "| --- |" + " ---: |" * len(seeds)]
        for m in specs:
            got = [cells.get((m, s)) for s in seeds]
            lines.append(f"| {m} | " + " | ".join(
                "-" if r is None else pct(value(r)) + (f" ({r.note})" if r.note else "")
                for r in got) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--methods", default=DEFAULT_METHODS)
    ap.add_argument("--tasks", default="all")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--metric", choices=("all", "old", "new"), default="all")
    ap.add_argument("--class", dest="cls", default=None, help="one class's IoU instead")
    ap.add_argument("--records", default=None,
                    help="folder of the records (default: benchmarks/results/<preset>)")
    ap.add_argument("--out", default="bench-cpu", help="bench output folder (run folders)")
    args = ap.parse_args(argv)
    methods, tasks = args.methods.split(","), task_list(args.tasks)
    seeds = [int(s) for s in args.seeds.split(",")]
    store = ResultStore(Path(args.records) if args.records else RECORDS / args.preset)
    rows = collect(methods, tasks, args.preset, Path(args.out), seeds, store=store)
    print(seed_table(rows, tasks, methods, seeds, args.metric, args.cls))


if __name__ == "__main__":
    main()
