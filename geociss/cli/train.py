"""``geociss train``: run the steps of a class-incremental scenario from a config file."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("train")
@click.argument("config", type=click.Path(path_type=Path))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set train.epochs=3 (repeatable).",
)
@click.option(
    "--no-progress",
    is_flag=True,
    help="Hide the progress bar (on a terminal) or the progress lines (in a log file).",
)
def train(config: Path, overrides: tuple[str, ...], no_progress: bool) -> None:
    """Train steps 0..T of the scenario in CONFIG (YAML), evaluating after each step.

    Writes a run folder (<out>/<name>/) with one bundle, checkpoints, logs, metrics and plots
    per step, and the history of old/new/all mIoU. Run it again to resume: completed steps
    whose configuration has not changed are skipped, and an interrupted step continues from its
    last checkpoint (written at every epoch end and every train.checkpoint_every_n_steps
    steps), inside the interrupted epoch. When standard output is not a terminal, progress is
    one line per epoch (and every train.progress_every_n_steps steps) instead of a bar.
    """
    from rich.console import Console

    from geociss.config.experiment import load_experiment
    from geociss.engine.runner import ScenarioRunner
    from geociss.evaluation import history_table

    console = Console()
    cfg = load_experiment(config, list(overrides))
    runner = ScenarioRunner(cfg, log=console.print, progress=not no_progress)
    history = runner.run()
    colors = runner.scenario.channel_colors
    title = f"{cfg.name}: IoU % on the validation tiles after each step"
    console.print(history_table(history, colors=colors, title=title))
    console.print(f"outputs: {runner.run_dir}")
