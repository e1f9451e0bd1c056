"""``geociss bench``: methods × tasks on the sample scenes (or your data), one table."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("bench")
@click.option(
    "--preset",
    type=click.Choice(["small", "paper"]),
    default="small",
    show_default=True,
    help="small: tiny encoder, CPU-sized; paper: ResNet-101, 30 epochs (GPU).",
)
@click.option(
    "--methods",
    default="ilt,mib,plop,ucd,dkd,idec",
    show_default=True,
    help="Comma-separated method names or configs/methods fragment names.",
)
@click.option("--tasks", default="4-1,2-2-1", show_default=True, help="Comma-separated tasks.")
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
@click.option("--progress/--no-progress", default=False, help="Show training progress bars.")
def bench(
    preset: str,
    methods: str,
    tasks: str,
    out: Path,
    data: Path | None,
    data_config: Path | None,
    progress: bool,
) -> None:
    """Train every method on every task and print old/new/all mIoU, all/joint and step cost.

    Fine-tuning (the floor) and joint training (the ceiling) are always included. Runs are
    resumable: run the same command again to continue; finished steps are skipped.
    """
    from rich.console import Console
    from rich.markdown import Markdown

    from geociss.bench import markdown, run_bench

    section = None
    if data_config is not None:
        from geociss.config.load import load_config
        from geociss.errors import ConfigError

        if data is not None:
            raise ConfigError("give --data or --data-config, not both")
        section = load_config(data_config).get("data")
        if not isinstance(section, dict):
            raise ConfigError(f"{data_config}: no data: section")
    console = Console()
    rows = run_bench(
        [m for m in methods.split(",") if m],
        [t for t in tasks.split(",") if t],
        preset,
        out,
        data,
        log=console.print,
        progress=progress,
        data_section=section,
    )
    console.print(Markdown(markdown(rows)))
    console.print(f"results: {out / 'bench.json'}")
