"""``geociss bench``: methods × tasks × seeds on the sample scenes (or your data), in tables."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from geociss.bench import DEFAULT_METHODS


@click.command("bench")
@click.option(
    "--preset",
    type=click.Choice(["cpu", "small", "paper"]),
    default="cpu",
    show_default=True,
    help="cpu: ImageNet EfficientNet-Lite0 + DeepLab-v3+, sized for 2 CPU cores; small: the "
    "from-scratch tiny encoder (ablation); paper: ResNet-101, 30 epochs (GPU).",
)
@click.option(
    "--methods",
    default=DEFAULT_METHODS,
    show_default=True,
    help="Comma-separated method names or configs/methods fragment names.",
)
@click.option(
    "--tasks",
    default="4-1",
    show_default=True,
    help="Comma-separated tasks, or all: the four IDEC tasks 4-1,2-3,2-2-1,2-1-1-1 (the cpu "
    "preset on 2 cores with --jobs 3: about 90 min for 4-1, 5-7 h for all).",
)
@click.option(
    "--seeds",
    default="0,1,2",
    show_default=True,
    help="Comma-separated training seeds; every cell runs once per seed.",
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench"), show_default=True)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="A folder with images/, labels/ and classes.yaml [default: sample scenes].",
)
@click.option(
    "--data-config",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="A config whose data: section to use instead, e.g. configs/data/potsdam.yaml "
    "(ISPRS read from the official archives); its keys override the preset's data settings.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes side by side, the seeds shared among them, each with cores/jobs torch "
    "threads (at least one). Small CPU cells use cores better this way (on 2 cores: --jobs 3).",
)
@click.option(
    "--report-only",
    is_flag=True,
    help="Train nothing: print the tables of the cells already finished in --out (e.g. while "
    "another bench runs there); s/step: the step costs saved in --out by bench_methods "
    "--measure-cost, else the runs' own wall time per step.",
)
@click.option("--progress/--no-progress", default=False, help="Show training progress bars.")
@click.option("--runs-only", is_flag=True, hidden=True, help="A job: run, no costs, no tables.")
def bench(
    preset: str,
    methods: str,
    tasks: str,
    seeds: str,
    out: Path,
    data: Path | None,
    data_config: Path | None,
    jobs: int,
    report_only: bool,
    progress: bool,
    runs_only: bool,
) -> None:
    """Train every method on every task with every seed, and print the tables.

    The tables: old/new/all mIoU (mean ± sd over seeds), all/joint, step cost, paired
    differences against MiB and fine-tuning with 95 % intervals, the IDEC ablation (each
    idec-* variant against IDEC, old and new classes apart) when it ran, and per-class IoU.

    Fine-tuning (the floor) and joint training (the ceiling) are always included. Runs are
    resumable: run the same command again to continue; finished steps are skipped. With
    --jobs N the seeds run in N processes; this one then measures the step costs and prints
    the tables.
    """
    from rich.console import Console

    from geociss.bench import run_bench, sample_scenes, task_list
    from geociss.errors import ConfigError

    section = None
    if data_config is not None:
        from geociss.config.load import load_config

        if data is not None:
            raise ConfigError("give --data or --data-config, not both")
        section = load_config(data_config).get("data")
        if not isinstance(section, dict):
            raise ConfigError(f"{data_config}: no data: section")
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    if not seed_list:
        raise ConfigError("--seeds names no seed")
    console = Console()
    method_list, tasks_run = [m for m in methods.split(",") if m], task_list(tasks)
    if report_only:
        _report(method_list, tasks_run, preset, out, seed_list, console)
        return
    if jobs > 1 and len(seed_list) > 1:
        if data is None and section is None:
            sample_scenes(preset, out / "sample")  # once, before the jobs start
        _run_seed_jobs(
            seed_list,
            jobs,
            console.print,
            ["--preset", preset, "--methods", methods, "--tasks", ",".join(tasks_run)]
            + ["--out", str(out)]
            + (["--data", str(data)] if data is not None else [])
            + (["--data-config", str(data_config)] if data_config is not None else []),
        )
    rows = run_bench(
        method_list,
        tasks_run,
        preset,
        out,
        data,
        log=console.print,
        progress=progress,
        data_section=section,
        seeds=seed_list,
        measure_costs=not runs_only,
    )
    if not runs_only:
        _print_tables(rows, console)
        console.print(f"results: {out / 'bench.json'}")


def _report(
    methods: list[str], tasks: list[str], preset: str, out: Path, seeds: list[int], console: Any
) -> None:
    """The tables of the finished cells of ``out`` (``--report-only``).

    s/step and peak memory: the costs an earlier ``bench_methods --measure-cost`` saved in
    ``out`` for this preset (measured apart, interleaved), else the runs' own wall time per
    step, which other load on the machine inflates.
    """
    from geociss.bench import collect, with_costs
    from geociss.bench.cost import COSTS_FILE, load_costs
    from geociss.errors import ConfigError

    if not (out / "runs").is_dir():
        raise ConfigError(f"{out}: no benchmark runs here (no runs/ folder)")
    rows = collect(methods, tasks, preset, out, seeds)
    done = [r for r in rows if r.note != "incomplete"]
    cells = len(tasks) * len(seeds) * len(dict.fromkeys(["finetune", *methods, "joint"]))
    console.print(
        f"{len(done)} of {cells} cells finished, {len(rows) - len(done)} started and not finished"
    )
    costs, record = load_costs(out / COSTS_FILE, preset)
    if record is not None:
        with_costs(done, costs)
        console.print(f"s/step and peak MiB: the step costs measured on {record['measured']} "
                      f"({record['rounds']} interleaved rounds, {out / COSTS_FILE})")
    else:
        console.print("s/step: the runs' own wall time per step (data loading and any other "
                      "load on the machine included)")
    if done:
        _print_tables(done, console)


def _print_tables(rows: list[Any], console: Any) -> None:
    """The summary, the paired comparisons, the IDEC ablation (when it ran), per-class IoU."""
    from rich.markdown import Markdown

    from geociss.bench.report import (
        ablation_comparisons,
        comparisons,
        per_class_table,
        summary_table,
    )

    tables = [summary_table(rows), comparisons(rows), ablation_comparisons(rows, "idec")]
    for table in [*tables, per_class_table(rows)]:
        if table:  # no IDEC variant ran: no ablation table
            console.print(Markdown(table))


def _run_seed_jobs(
    seeds: list[int], jobs: int, log: Callable[[str], None], args: list[str]
) -> None:
    """Run ``geociss bench <args>`` once per group of seeds, side by side (see bench.jobs)."""
    import os
    import sys

    from geociss.bench.jobs import label_of, run_jobs, seed_groups, thread_env
    from geociss.errors import GeocissError

    groups = seed_groups(seeds, jobs)
    env = thread_env(os.cpu_count() or 1, len(groups))
    log(f"bench: {len(groups)} jobs of {env['OMP_NUM_THREADS']} thread(s), seeds {groups}")
    commands = [
        [
            sys.executable,
            "-m",
            "geociss",
            "bench",
            *args,
            "--seeds",
            ",".join(map(str, g)),
            "--runs-only",
            "--no-progress",
        ]
        for g in groups
    ]
    status = run_jobs(commands, env, log, labels=[label_of(g) for g in groups])
    if status:
        raise GeocissError(f"a bench job failed (exit status {status}); run again to resume")
