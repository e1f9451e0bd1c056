"""``geociss demo``: sample scenes → step 0 → add "tree" with fine-tuning and MiB → table → map."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("geociss-demo"),
    show_default=True,
    help="Folder for the sample scenes, runs and maps.",
)
@click.option(
    "--method",
    default="mib",
    show_default=True,
    help="The class-incremental method compared with fine-tuning.",
)
@click.option("--quick", is_flag=True, help="A tiny version that runs in well under a minute.")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="DataLoader worker processes.",
)
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def demo(out: Path, method: str, quick: bool, workers: int, no_progress: bool) -> None:
    """Show class-incremental learning end to end on the embedded ISPRS-like sample scenes.

    Trains a land-cover model on impervious surfaces, buildings and low vegetation, then adds
    trees from data labelled for trees only, once by plain fine-tuning and once with METHOD,
    prints old/new/all mIoU side by side and maps a held-out scene.
    """
    from rich.console import Console
    from rich.table import Table

    from geociss.demo import NEW_CLASS, comparison_rows, run_demo
    from geociss.methods import get_method

    get_method(method)  # a bad name fails before any work
    console = Console()
    result = run_demo(
        out,
        method=method,
        quick=quick,
        workers=workers,
        log=console.print,
        progress=not no_progress,
    )
    table = Table(title=f"after adding '{NEW_CLASS}' (mIoU %, validation scenes)")
    for col in ("method", "old classes", "new class", "all"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for row in comparison_rows(result["scores"]):
        table.add_row(*row)
    console.print(table)
    for name, path in result["runs"].items():
        console.print(f"{name}: run folder {path} (history.png, step*/confusion.png, bundles)")
    for path in result["maps"]:
        console.print(f"map: {path}")
    console.print(
        "Open the maps in QGIS (Layer > Add Raster Layer): the .qml style next to each "
        "*_classes.tif is applied automatically, with the class names and colours."
        if result["maps"]
        else "Inspect a model with: geociss info "
        + str(result["runs"][method] / "step1" / "bundle.safetensors")
    )
