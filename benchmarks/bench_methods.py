"""Methods × tasks × seeds on the sample scenes, written to docs/benchmarks.md.

Run: python -m benchmarks.bench_methods                 (cpu preset: every method and the IDEC
                                                         ablation on task 4-1, seeds 0,1,2;
                                                         resumable)
     python -m benchmarks.bench_methods --jobs 3       (the same, three processes side by side,
                                                         one seed and one thread each on 2 cores:
                                                         about 90 min)
     python -m benchmarks.bench_methods --tasks all --jobs 3   (the four IDEC tasks: 5-7 h)
     python -m benchmarks.bench_methods --report-only  (tables of the finished run folders)
     python -m benchmarks.bench_methods --preset small --seeds 0 ...   (from-scratch ablation)

A run with --tasks/--methods/--seeds runs those cells and then writes the table of EVERY finished
run of the output folder (as --report-only does), so that several processes, one per seed say,
each leave a whole table when they end rather than overwriting it with their own part.

Every finished cell is also recorded in benchmarks/results/<preset>/ (a few KB of JSON per cell,
meant to be committed; geociss.bench.records): a later run, on another machine or after the run
folders are gone, takes the recorded cells instead of training them again, and the table is
written from the records and the run folders. --no-records runs without them; the step costs of
--measure-cost are kept there too.
"""

import argparse
import sys
import time
from pathlib import Path

from benchmarks._report import update_section
from geociss.bench import (
    DEFAULT_METHODS,
    DEFAULT_TASKS,
    IDEC_TASKS,
    PRESETS,
    ResultStore,
    collect,
    describe,
    run_bench,
    sample_scenes,
    task_list,
    with_costs,
)
from geociss.bench.cost import COSTS_FILE, interleaved_costs, save_costs
from geociss.bench.cost import load_costs as load_saved_costs
from geociss.bench.jobs import label_of, run_jobs, seed_groups, thread_env
from geociss.bench.records import recorded
from geociss.bench.report import (
    ablation_comparisons,
    comparisons,
    per_class_table,
    retention_misses,
    retention_tracking,
    summary_table,
)

METHODS = DEFAULT_METHODS
TASKS = ",".join(IDEC_TASKS)
"""The tasks whose finished runs the table after a run shows (any other --tasks given are added)."""
SEEDS = "0,1,2"
CLASSES = ["impervious surfaces", "building", "low vegetation", "tree", "car"]


def tables(rows, preset: str, command: str) -> str:
    """The section text: settings, the three tables and how to read them."""
    tasks = ", ".join(dict.fromkeys(r.task for r in rows)) or "no task finished"
    return (
        f"## Methods on the sample scenes ({preset} preset: {tasks})\n\n"
        f"Command: {command}. Each finished cell is recorded in `benchmarks/results/{preset}/` "
        "(committed; a rerun takes a recorded cell whose configuration and data match instead "
        "of training it, so the table can be built over several sessions). "
        + describe(preset) + " "
        "mIoU in % on the held-out scenes after the last step, mean ± sample standard deviation "
        "over the seeds (old = step-0 classes incl. impervious surfaces, new = classes added "
        "later); all / joint = all-mIoU as a fraction of joint training with the same seed; "
        "Potsdam all / joint = the same ratio from the IDEC paper's Table 3 (ISPRS Potsdam, "
        "ResNet-101, GPU), for orientation only; s/step vs fine-tune = median seconds of one "
        "training step of the method at step 1 relative to fine-tuning (measured apart from the "
        "runs, in a fresh process per method and round, median of the rounds, the methods "
        "interleaved in each round; with --report-only alone: the costs the last --measure-cost "
        f"saved in benchmarks/results/{preset}/step-costs.json (and the output folder's, which "
        "`geociss bench --report-only` reads), else in-run wall time per step, data "
        "loading included); peak MiB = growth of the peak resident memory of that step's "
        "process.\n\n"
        + summary_table(rows)
        + "\n\nPaired differences of all-mIoU (percentage points, same seed = same data, step-0 "
        "model and sampling), mean and 95 % Student-t interval over the seeds. A method is "
        "called better or worse only where the interval excludes 0.\n\n"
        + comparisons(rows)
        + _ablation(rows)
        + "\n\nPer-class IoU of the final model (%, mean over seeds).\n\n"
        + per_class_table(rows, CLASSES)
        + _tracking(rows)
    )


def _ablation(rows) -> str:
    table = ablation_comparisons(rows, "idec")
    if not table:
        return ""
    return (
        "\n\nThe IDEC ablation: each variant against full IDEC with the same seeds, on old and "
        "new classes apart (a part may trade one for the other), percentage points with 95 % "
        "intervals.\n\n" + table
    )


def _tracking(rows) -> str:
    table = retention_tracking(rows)
    if not table:
        return ""
    return (
        "\n\nDoes the label-free retention report (what `geociss extend` prints without old "
        "labels) track the real loss of old classes? For every incremental step of every run "
        "above and every old class: kept = share of the previous model's pixels of the class "
        "that the new model still gives it (validation scenes, new-class pixels left out), "
        "against IoU after / IoU before the step (with the labels the benchmark has).\n\n"
        + table
        + (f"\n\n{missed}" if (missed := retention_misses(rows)) else "")
    )


COSTS = COSTS_FILE
"""Step costs measured by --measure-cost, kept in the output folder for later reports."""


RECORDS = Path(__file__).resolve().parent / "results"
"""Where the records of each preset's finished cells are kept (``<RECORDS>/<preset>/``)."""


def records(args: argparse.Namespace) -> ResultStore | None:
    """The result store of the run (None with --no-records)."""
    if args.no_records:
        return None
    return ResultStore(Path(args.records) if args.records else RECORDS / args.preset,
                       log=lambda m: print(m, flush=True))


def costs_files(args: argparse.Namespace) -> list[Path]:
    """Where --measure-cost keeps the step costs, the one read first first: the result store's
    (committed with the records) and the output folder's (``geociss bench --report-only``
    reads that one)."""
    store = records(args)
    return [*([store.folder / COSTS] if store is not None else []), Path(args.out) / COSTS]


def load_costs(path: Path, preset: str) -> tuple[dict[str, tuple[float, float]], str]:
    """Step costs an earlier --measure-cost saved for ``preset`` and how they were measured
    (for the command line printed above the table); empty when none were saved."""
    costs, record = load_saved_costs(path, preset)
    if record is None:
        return {}, ""
    how = (f", step costs reused from `--measure-cost --cost-rounds {record['rounds']}` of "
           f"{record['measured']}")
    return costs, how


def report(args: argparse.Namespace, methods: list[str], tasks: list[str],
           seeds: list[int]) -> str:
    """The section text for every finished run of the output folder among the given cells.

    The command printed above the table names the tasks that have finished runs (all the given
    ones when none has).
    """
    rows = collect(methods, tasks, args.preset, Path(args.out), seeds, store=records(args))
    shown = [t for t in tasks if any(r.task == t for r in rows)] or tasks
    run = (
        f"python -m benchmarks.bench_methods --preset {args.preset} --methods "
        f"{','.join(methods)} --tasks {','.join(shown)} --seeds {','.join(map(str, seeds))}"
        + (f" --section {args.section}" if getattr(args, "section", None) else "")
    )
    files = costs_files(args)
    if args.measure_cost:
        # every method of the table, finished or not: costs do not depend on the runs
        specs = [m for m in dict.fromkeys(["finetune", *methods]) if m != "joint"]
        costs = interleaved_costs(specs, args.preset, rounds=args.cost_rounds)
        for saved in files:
            saved.parent.mkdir(parents=True, exist_ok=True)
            save_costs(saved, costs, args.preset, args.cost_rounds)
        how = f" `--report-only --measure-cost --cost-rounds {args.cost_rounds}`"
    else:
        costs, reused = next(
            (found for f in files if (found := load_costs(f, args.preset))[0]), ({}, "")
        )
        how = " `--report-only`" + reused
    side_by_side = PRESETS[args.preset]["train"].get("accelerator") == "cpu"
    command = (
        f"`{run}{' --jobs 3' if side_by_side else ''}` (trains what is missing"
        f"{', one process per seed' if side_by_side else ''}, then writes this section; "
        f"this text: the same with{how})"
    )
    if costs:
        with_costs(rows, costs)
    return tables(rows, args.preset, command)


def seed_jobs(argv: list[str], seeds: list[int], jobs: int,
              cores: int) -> list[tuple[list[str], dict[str, str]]]:
    """Command lines and thread settings of the child processes sharing the seeds.

    Seeds go round-robin to at most ``jobs`` children (:mod:`geociss.bench.jobs`: each child
    runs all its tasks and methods for its seeds, with ``cores`` shared among the children as
    torch threads, at least one each) and writes no table: the parent tabulates when all
    have ended.
    """
    groups = seed_groups(seeds, jobs)
    env = thread_env(cores, len(groups))
    base = [a for a in argv if a != "--no-report"]
    out = []
    for group in groups:
        args = _replace_option(_replace_option(base, "--seeds", ",".join(map(str, group))),
                               "--jobs", "1")
        out.append(([sys.executable, "-m", "benchmarks.bench_methods", *args, "--no-report"],
                    env))
    return out


def _replace_option(argv: list[str], name: str, value: str) -> list[str]:
    """``argv`` with option ``name`` set to ``value`` (``--name v`` or ``--name=v`` forms)."""
    out, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a == name:
            skip = i + 1 < len(argv)
            continue
        if a.startswith(name + "="):
            continue
        out.append(a)
    return [*out, name, value]


def _run_jobs(argv: list[str], seeds: list[int], jobs: int) -> int:
    """Run the children of :func:`seed_jobs` side by side; the worst exit status."""
    import os

    commands = seed_jobs(argv, seeds, jobs, os.cpu_count() or 1)
    labels = [label_of(group) for group in seed_groups(seeds, jobs)]  # the groups seed_jobs ran
    return run_jobs([cmd for cmd, _ in commands], commands[0][1], labels=labels)


def _main_handling_signals() -> None:
    """:func:`main` as geociss's commands run: Ctrl-C / SIGTERM end it with one line, 130 / 143;
    a user error (a bad --tasks, say) with one line and exit status 1.

    A fit stops at the end of its batch and nothing half-written is left (see
    geociss.interrupts); with --jobs the children are stopped first (geociss.bench.jobs).
    """
    from geociss import interrupts
    from geociss.errors import GeocissError

    with interrupts.handling_signals():
        try:
            main()
        except (Exception, KeyboardInterrupt, SystemExit, interrupts.Interrupted) as err:
            signum = interrupts.stopped_by(err)
            if signum is None and isinstance(err, GeocissError):
                sys.exit(f"bench: {err}")  # a user error: one line, exit status 1
            if signum is None:
                raise
            print(f"bench: interrupted ({interrupts.signal_name(signum)}); run the same command "
                  "again to resume", file=sys.stderr, flush=True)
            sys.exit(interrupts.exit_status(signum))


def _say_recorded(args: argparse.Namespace, methods: list[str], tasks: list[str],
                  seeds: list[int], data: Path) -> None:
    """Print how many of the cells are recorded already (the rest are trained)."""
    store = records(args)
    if store is None:
        return
    done, total = recorded(store, methods, tasks, args.preset, data, seeds)
    print(f"bench: {done} of {total} cells recorded in {store.folder}; training the other "
          f"{total - done}", flush=True)


def _union(default: str, given: str) -> list[str]:
    return list(dict.fromkeys([*default.split(","), *given.split(",")]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--tasks", default=DEFAULT_TASKS,
                    help="comma-separated tasks, or all (the four IDEC tasks: " + TASKS + ")")
    ap.add_argument("--seeds", default=SEEDS)
    ap.add_argument("--out", default="bench-cpu")
    ap.add_argument("--section", default=None, help="docs section (default: methods-<preset>)")
    ap.add_argument("--report-only", action="store_true", help="tabulate finished runs only")
    ap.add_argument("--measure-cost", action="store_true",
                    help="with --report-only: measure each method's step cost and peak memory "
                    "now (fresh processes; run on an idle machine) instead of in-run wall time")
    ap.add_argument("--cost-rounds", type=int, default=3,
                    help="with --measure-cost: rounds, each measuring every method once")
    ap.add_argument("--jobs", type=int, default=1,
                    help="processes side by side, the seeds shared among them (each with "
                    "cores/jobs torch threads, at least one)")
    ap.add_argument("--records", default=None,
                    help="folder of the finished cells' records (default: "
                    "benchmarks/results/<preset>)")
    ap.add_argument("--no-records", action="store_true",
                    help="neither take recorded cells nor record finished ones")
    ap.add_argument("--no-report", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    methods, tasks = args.methods.split(","), task_list(args.tasks)
    seeds = [int(s) for s in args.seeds.split(",")]
    section = args.section or f"methods-{args.preset}"
    if args.report_only:
        text = report(args, methods, tasks, seeds)
    else:
        start = time.time()
        if not args.no_report:  # the parent (or the only process), before any child
            data = sample_scenes(args.preset, Path(args.out) / "sample")
            _say_recorded(args, methods, tasks, seeds, data)
        if args.jobs > 1:
            status = _run_jobs(sys.argv[1:], seeds, args.jobs)
            if status:
                sys.exit(f"bench: a job failed (exit status {status}); rerun to resume")
        else:
            run_bench(
                methods, tasks, args.preset, Path(args.out),
                log=lambda m: print(m, flush=True), seeds=seeds, measure_costs=False,
                store=records(args),
            )
        print(f"bench: ran in {(time.time() - start) / 60:.0f} min", flush=True)
        if args.no_report:
            return
        # the table holds every finished run of the folder, not only this process's: several
        # processes (one per seed, say) each leave the whole table when they end
        args.measure_cost = False
        text = report(
            args, _union(METHODS, args.methods), _union(TASKS, ",".join(tasks)),
            [int(s) for s in _union(SEEDS, args.seeds)],
        )
    update_section(section, text)
    print(text)


if __name__ == "__main__":
    _main_handling_signals()
