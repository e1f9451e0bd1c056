"""Methods × tasks on the sample scenes (small preset), written to docs/benchmarks.md.

Run: python -m benchmarks.bench_methods [--tasks 4-1,2-2-1] [--methods ilt,mib,...]
     python -m benchmarks.bench_methods --report-only ...   (table of the finished run folders)
"""

import argparse
import time
from pathlib import Path

from benchmarks._report import update_section
from geociss.bench import collect, describe, markdown, run_bench


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="ilt,mib,plop,ucd,dkd,idec")
    ap.add_argument("--tasks", default="4-1,2-2-1")
    ap.add_argument("--out", default="bench-small")
    ap.add_argument("--section", default="methods")
    ap.add_argument("--report-only", action="store_true", help="tabulate finished runs only")
    args = ap.parse_args()
    if args.report_only:
        rows = collect(args.methods.split(","), args.tasks.split(","), "small", Path(args.out))
        print(markdown(rows))
        return
    start = time.time()
    rows = run_bench(
        args.methods.split(","),
        args.tasks.split(","),
        "small",
        Path(args.out),
        log=lambda m: print(m, flush=True),
    )
    minutes = (time.time() - start) / 60
    cmd = f"python -m benchmarks.bench_methods --methods {args.methods} --tasks {args.tasks}"
    update_section(
        args.section,
        (
            f"## Methods on the sample scenes ({args.tasks}; small preset)\n\n"
            f"Command: `{cmd}` ({minutes:.0f} min on this machine). " + describe("small") + " "
            "mIoU in % on full validation tiles after the last step "
            "(old = step-0 classes incl. impervious surfaces, new = classes added later); "
            "s/step = median seconds of one training step (batch and patch of the preset) of the "
            "method at step 1, measured apart from the runs; peak MiB = growth of the peak "
            "resident memory of that step's process (CPU) or peak allocated CUDA memory; "
            "vs fine-tune = the same relative to fine-tuning.\n\n" + markdown(rows)
        ),
    )
    print(markdown(rows))


if __name__ == "__main__":
    main()
