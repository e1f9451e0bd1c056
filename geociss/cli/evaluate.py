"""``geociss evaluate``: per-class IoU, old/new/all mIoU and confusion of a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geociss.cli.options import MODEL_NODATA_HELP

_PATH = click.Path(path_type=Path)


def check_outputs(opts: dict[str, Any]) -> None:
    """Check the --json, --csv and --plot paths before the (long) evaluation runs."""
    from geociss.errors import DataError
    from geociss.io import check_output_dir, check_output_file

    for key, option in (("json_out", "--json"), ("csv_out", "--csv")):
        if opts[key] is not None:
            check_output_file(opts[key], option)
    if opts["plot_dir"] is not None:
        png = check_output_dir(opts["plot_dir"], "--plot") / "confusion.png"
        if png.is_dir():
            raise DataError(png, "is a folder, so --plot cannot write the confusion plot there")


@click.command("evaluate")
@click.option("--model", required=True, type=_PATH, help="Step bundle (.safetensors).")
@click.option("--images", required=True, type=_PATH, help="Folder of image GeoTIFFs.")
@click.option(
    "--labels",
    required=True,
    type=_PATH,
    help="Folder of label rasters, or a polygon file (.gpkg/.shp/.geojson).",
)
@click.option(
    "--schema",
    "schema_ref",
    metavar="PRESET_OR_YAML",
    help="How the labels encode classes: a preset (isprs, isprs-rgb) or a YAML file. A preset "
    "name always means the preset, even if a file or folder of that name is in the working "
    "directory (write ./isprs for such a file) [default: the bundle's schema].",
)
@click.option("--json", "json_out", type=_PATH, help="Write the scores as JSON.")
@click.option("--csv", "csv_out", type=_PATH, help="Write per-class scores as CSV.")
@click.option("--plot", "plot_dir", type=_PATH, help="Write confusion.png into this folder.")
@click.option(
    "--tile",
    type=click.IntRange(min=16),
    default=512,
    show_default=True,
    help="Sliding-window size in pixels.",
)
@click.option(
    "--overlap",
    type=click.IntRange(min=0),
    default=64,
    show_default=True,
    help="Overlap of neighbouring windows.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Windows per forward pass.",
)
@click.option(
    "--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"])
)
@click.option(
    "--label-attribute",
    default="class",
    show_default=True,
    help="Class attribute of polygon labels.",
)
@click.option("--nodata", type=float, default=None, help=MODEL_NODATA_HELP)
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def evaluate(**opts: Any) -> None:
    """Score a model on every pixel of labelled tiles (sliding windows over whole tiles).

    Classes match the model's channels by name. A class the model never learned is IGNORED when
    the model's background is a real class (e.g. ISPRS impervious surfaces; clutter is then left
    out, as IDEC evaluates) and counts as BACKGROUND when the background is implicit (channel 0
    means "anything not learned"). Classes the model's own scenario learns in a later step
    follow the scenario's `future` setting (ignored by default). "old" = the classes of step 0
    (background included), "new" = the classes added later, "all" = both. Polygon labels: pixels
    outside every polygon are background when the schema has a background class, else ignored.
    """
    from rich.console import Console

    from geociss.data.classes import ClassSchema
    from geociss.engine.assess import assess_bundle
    from geociss.engine.bundle import StepBundle
    from geociss.evaluation import (
        plot_confusion,
        scores_table,
        write_scores_csv,
        write_scores_json,
    )

    check_outputs(opts)
    console = Console()
    bundle = StepBundle.load(opts["model"])
    schema = ClassSchema.load(opts["schema_ref"]) if opts["schema_ref"] else None
    result = assess_bundle(
        bundle,
        opts["images"],
        opts["labels"],
        schema,
        size=opts["tile"],
        overlap=opts["overlap"],
        batch_size=opts["batch_size"],
        device=opts["device"],
        label_attribute=opts["label_attribute"],
        progress=not opts["no_progress"],
        nodata=opts["nodata"],
    )
    scores = result.scores
    console.print(
        scores_table(
            scores,
            colors=result.colors,
            title=f"{opts['model']}: IoU % per class on every labelled pixel of "
            f"{result.tiles} tile(s)",
        )
    )
    if result.unlearned:
        shown = ", ".join(f"{name} ({how})" for name, how in result.unlearned.items())
        console.print(f"classes the model never learned: {shown}")
    if opts["json_out"]:
        write_scores_json(opts["json_out"], scores)
        console.print(f"wrote {opts['json_out']}")
    if opts["csv_out"]:
        write_scores_csv(opts["csv_out"], scores)
        console.print(f"wrote {opts['csv_out']}")
    if opts["plot_dir"]:
        path = Path(opts["plot_dir"]) / "confusion.png"
        plot_confusion(
            scores.confusion,
            list(scores.channel_names),
            path,
            title=f"{Path(opts['model']).name}: confusion (row-normalised)",
        )
        console.print(f"wrote {path}")
