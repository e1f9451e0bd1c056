"""``geociss scan``: check an image/label folder and show its tiles, classes and bands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def resolve_schema(ref: str | None, images: Path) -> Any:
    """The class schema named by ``--schema``, else ``IMAGES/../classes.yaml``, else ``isprs``."""
    from geociss.data.classes import ClassSchema

    if ref is None:
        guess = images.absolute().parent / "classes.yaml"
        return ClassSchema.from_yaml(guess) if guess.is_file() else ClassSchema.preset("isprs")
    return ClassSchema.load(ref)


def render(summary: dict[str, Any], console: Any) -> None:
    """Print the summary of a catalogue as rich tables."""
    from rich.table import Table

    size = "x".join(map(str, summary["size_min"]))
    if summary["size_max"] != summary["size_min"]:
        size += " to " + "x".join(map(str, summary["size_max"]))
    crs = summary["crs"] or summary["crs_note"]
    gsd = "-" if summary["gsd"] is None else "{:g} x {:g}".format(*summary["gsd"])
    overview = Table(title="tiles", show_header=False)
    overview.add_column("key", style="bold")
    overview.add_column("value")
    for key, value in (
        ("images", summary["images"]),
        ("labels", summary["labels"] or "-"),
        ("tiles", str(summary["tiles"])),
        ("size (px)", size),
        ("CRS", crs),
        ("GSD", gsd),
        ("bands", f"{summary['bands']} ({summary['dtype']})"),
    ):
        overview.add_row(key, value)
    if "regions" in summary:
        overview.add_row("regions", f"{summary['regions']} chips of {summary['chip_size']} px")
    console.print(overview)
    if summary["labels"] is not None:
        classes = Table(title="classes")
        for col in ("id", "class", "pixels", "%"):
            classes.add_column(col, justify="left" if col == "class" else "right")
        for c in summary["classes"]:
            classes.add_row(str(c["id"]), c["name"], f"{c['pixels']:,}", f"{100 * c['share']:.2f}")
        total = summary["labelled"] + summary["ignored"]
        share = 100 * summary["ignored"] / total if total else 0.0
        classes.add_row("255", "(ignored)", f"{summary['ignored']:,}", f"{share:.2f} of all")
        console.print(classes)
    bands = Table(title="bands (valid pixels)")
    for col in ("band", "mean", "std", "min", "max"):
        bands.add_column(col, justify="right")
    for b in summary["band_stats"]:
        bands.add_row(str(b["band"]), *(f"{b[k]:.4g}" for k in ("mean", "std", "min", "max")))
    console.print(bands)


@click.command("scan")
@click.argument("images", type=click.Path(path_type=Path))
@click.argument("labels", required=False, type=click.Path(path_type=Path))
@click.option(
    "--schema",
    "schema_ref",
    metavar="PRESET_OR_YAML",
    help="Class schema: a preset (isprs, isprs-rgb) or a YAML file. A preset name always "
    "means the preset, even if a file or folder of that name is in the working directory "
    "(write ./isprs for such a file) [default: IMAGES/../classes.yaml if present, else isprs].",
)
@click.option(
    "--glob",
    "image_glob",
    default="*.tif",
    show_default=True,
    help="Image file names (case-insensitive; .tif also matches .tiff).",
)
@click.option("--label-glob", default=None, help="Label file names [default: same as --glob].")
@click.option(
    "--label-attribute",
    default="class",
    show_default=True,
    help="Class attribute of vector labels (.gpkg/.shp/.geojson).",
)
@click.option(
    "--unlabelled",
    type=click.Choice(["background", "ignore"]),
    default="background",
    show_default=True,
    help="Vector labels: what pixels outside every polygon are.",
)
@click.option(
    "--chip-size",
    type=click.IntRange(min=1),
    default=None,
    help="Also count classes in chips of this many pixels.",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the summary as JSON to this file.",
)
@click.option("--no-cache", is_flag=True, help="Ignore and do not write the scan cache.")
@click.option(
    "--dataset",
    type=click.Choice(["potsdam", "vaihingen"]),
    default=None,
    help="IMAGES is the folder of this official ISPRS distribution's archives (data/README.md).",
)
@click.option("--modality", default=None, help="--dataset: rgb, irrg or rgbir [default: first].")
@click.option(
    "--split",
    type=click.Choice(["train", "test", "all"]),
    default="train",
    show_default=True,
    help="--dataset: which official tiles.",
)
@click.option("--eroded", is_flag=True, help="--dataset: labels with eroded class boundaries.")
@click.option(
    "--exclude-tiles",
    default=None,
    metavar="IDS",
    help="--dataset: comma-separated tile ids to leave out; a list replaces the default, so "
    "name the known bad tiles too (Potsdam 4_12) to keep them out [default: known bad tiles; "
    "'' none].",
)
def scan(
    images: Path,
    labels: Path | None,
    schema_ref: str | None,
    image_glob: str,
    label_glob: str | None,
    label_attribute: str,
    unlabelled: str,
    chip_size: int | None,
    json_out: Path | None,
    no_cache: bool,
    dataset: str | None,
    modality: str | None,
    split: str,
    eroded: bool,
    exclude_tiles: str | None,
) -> None:
    """Check a folder of GeoTIFF IMAGES and their LABELS (folder of rasters or polygon file).

    Pairs files by name, reads every pixel once and reports tiles, grid, class shares and band
    statistics. Problems are reported as one line naming the file (exit status 2).

    With --dataset, IMAGES is the folder holding an official ISPRS distribution (the zip
    archives as downloaded, or their extracted folders) and LABELS is not given.
    """
    import json

    from rich.console import Console

    from geociss.io import atomic_write_text, check_output_file

    if json_out is not None:
        check_output_file(json_out, "--json")
    if dataset is not None:
        catalog = _official(images, labels, schema_ref, dataset, modality, split, eroded,
                            exclude_tiles, chip_size, not no_cache)
    else:
        catalog = _folder(images, labels, schema_ref, image_glob, label_glob, label_attribute,
                          unlabelled, chip_size, not no_cache)
    summary = catalog.summary()
    if chip_size is not None:
        summary["chip_size"] = chip_size
        summary["regions"] = len(catalog.regions())
    render(summary, Console())
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(summary, indent=2) + "\n")


def _official(
    root: Path, labels: Path | None, schema_ref: str | None, dataset: str, modality: str | None,
    split: str, eroded: bool, exclude_tiles: str | None, chip_size: int | None, cache: bool,
) -> Any:
    """The catalogue of one split of an official ISPRS distribution under ``root``."""
    from geociss.data.classes import ClassSchema
    from geociss.data.isprs import get_dataset, official_catalog
    from geociss.errors import ConfigError

    if labels is not None:
        raise ConfigError("with --dataset, give only the dataset folder (labels are found in it)")
    schema = ClassSchema.load(schema_ref or get_dataset(dataset).schema)
    exclude = None
    if exclude_tiles is not None:
        exclude = [t.strip() for t in exclude_tiles.split(",") if t.strip()]
    catalog, found = official_catalog(
        dataset, root, schema, split, modality, eroded=eroded,  # type: ignore[arg-type]
        exclude=exclude, chip_size=chip_size, cache=cache, progress=True,
    )
    click.echo(f"{found.dataset.title}, {found.modality}, official {split} split: "
               f"images from {found.images_from}, labels from {found.labels_from}")
    for note in found.notes:
        click.echo(f"note: {note}")
    return catalog


def _folder(
    images: Path, labels: Path | None, schema_ref: str | None, image_glob: str,
    label_glob: str | None, label_attribute: str, unlabelled: str, chip_size: int | None,
    cache: bool,
) -> Any:
    """The catalogue of an image folder and its labels."""
    from geociss.data.catalog import Catalog

    schema = resolve_schema(schema_ref, images)
    return Catalog.scan(
        images,
        labels,
        schema,
        image_glob=image_glob,
        label_glob=label_glob,
        label_attribute=label_attribute,
        unlabelled=unlabelled,  # type: ignore[arg-type]
        chip_size=chip_size,
        cache=cache,
        progress=True,
    )
