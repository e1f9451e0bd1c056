"""``geociss scan``: check an image/label folder and show its tiles, classes and bands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from geociss.cli.options import NODATA_HELP

DEFAULT_PRESET = "isprs"
"""The schema of a folder without ``--schema`` and without ``classes.yaml`` next to its images."""


def schema_with_origin(ref: str | None, images: Path) -> tuple[Any, str]:
    """The class schema named by ``--schema``, else ``IMAGES/../classes.yaml``, else ``isprs``.

    Returns:
        The :class:`~geociss.data.classes.ClassSchema` and where it came from, in words.
    """
    from geociss.data.classes import ClassSchema

    if ref is None:
        guess = images.absolute().parent / "classes.yaml"
        if guess.is_file():
            return ClassSchema.from_yaml(guess), f"{guess} (next to the images)"
        return ClassSchema.preset(DEFAULT_PRESET), (
            f"preset {DEFAULT_PRESET}, the default: no --schema and no classes.yaml next to "
            "the images"
        )
    if str(ref) in ClassSchema.presets():
        return ClassSchema.preset(str(ref)), f"preset {ref}"
    return ClassSchema.load(ref), str(ref)


def resolve_schema(ref: str | None, images: Path) -> Any:
    """The class schema named by ``--schema``, else ``IMAGES/../classes.yaml``, else ``isprs``."""
    return schema_with_origin(ref, images)[0]


@contextmanager
def naming_schema(origin: str) -> Iterator[None]:
    """Add the schema used (and where it came from) to an unknown-label-value error."""
    from geociss.errors import DataError, UnknownLabelValueError

    try:
        yield
    except UnknownLabelValueError as err:
        raise DataError(err.path, f"{err.problem}; schema used: {origin}") from None


def schema_warnings(summary: dict[str, Any]) -> list[str]:
    """Signs that the labels do not fit the schema: classes without a single labelled pixel."""
    if summary.get("labels") is None or not summary.get("classes"):
        return []
    empty = [c["name"] for c in summary["classes"] if c["pixels"] == 0]
    if not empty:
        return []
    schema = summary.get("schema", {})
    return [
        f"{len(empty)} of {len(summary['classes'])} classes of schema "
        f"{schema.get('name', '?')!r} have no pixels in the labels ({', '.join(empty)}); "
        f"check that the schema fits the labels (schema used: {schema.get('from', '?')}; "
        "format: docs/configuration.md)"
    ]


def _nodata_text(counts: list[dict[str, Any]], tiles: int) -> str:
    """``0 (4 of 4 tiles)``, ``none (no nodata tag; declare one with --nodata)``."""
    if not counts:
        return "-"
    if len(counts) == 1 and counts[0]["value"] is None:
        return "none (no nodata tag; declare one with --nodata or data.nodata)"

    def value(v: float | str | None) -> str:
        return "none" if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{value(c['value'])} ({c['tiles']} of {tiles} tiles)" for c in counts)


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
    used: list[tuple[str, str]] = []
    if (schema := summary.get("schema")) is not None:
        text = f"{schema['name']} ({schema['classes']} classes, {schema['encoding']})"
        used.append(("schema", f"{text} from {schema['from']}"))
    for key, value in (
        ("images", summary["images"]),
        ("labels", summary["labels"] or "-"),
        *used,
        ("tiles", str(summary["tiles"])),
        ("size (px)", size),
        ("CRS", crs),
        ("GSD", gsd),
        ("bands", f"{summary['bands']} ({summary['dtype']})"),
        ("nodata", _nodata_text(summary.get("nodata", []), summary["tiles"])),
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
@click.option("--nodata", type=float, default=None, help=NODATA_HELP)
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
    nodata: float | None,
) -> None:
    """Check a folder of GeoTIFF IMAGES and their LABELS (folder of rasters or polygon file).

    Pairs files by name, reads every pixel once and reports tiles, grid, class shares and band
    statistics. Problems are reported as one line naming the file (exit status 2).

    With --dataset, IMAGES is the folder holding an official ISPRS distribution (the zip
    archives as downloaded, or their extracted folders) and LABELS is not given.
    """
    import json

    from rich.console import Console
    from rich.markup import escape

    from geociss.io import atomic_write_text, check_output_file

    if json_out is not None:
        check_output_file(json_out, "--json")
    if dataset is not None:
        catalog, origin = _official(
            images,
            labels,
            schema_ref,
            dataset,
            modality,
            split,
            eroded,
            exclude_tiles,
            chip_size,
            not no_cache,
        )
    else:
        catalog, origin = _folder(
            images,
            labels,
            schema_ref,
            image_glob,
            label_glob,
            label_attribute,
            unlabelled,
            chip_size,
            not no_cache,
            nodata,
        )
    summary = catalog.summary()
    if summary["labels"] is not None:
        summary["schema"] = {
            "name": catalog.schema.name,
            "from": origin,
            "classes": catalog.schema.num_classes,
            "encoding": catalog.schema.encoding,
        }
    if chip_size is not None:
        summary["chip_size"] = chip_size
        summary["regions"] = len(catalog.regions())
    console = Console()
    render(summary, console)
    for line in schema_warnings(summary):
        console.print(f"[bold red]warning:[/bold red] {escape(line)}")
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(summary, indent=2) + "\n")


def _official(
    root: Path,
    labels: Path | None,
    schema_ref: str | None,
    dataset: str,
    modality: str | None,
    split: str,
    eroded: bool,
    exclude_tiles: str | None,
    chip_size: int | None,
    cache: bool,
) -> tuple[Any, str]:
    """The catalogue of one split of an official ISPRS distribution, and its schema's origin."""
    from geociss.data.classes import ClassSchema
    from geociss.data.isprs import get_dataset, official_catalog
    from geociss.errors import ConfigError

    if labels is not None:
        raise ConfigError("with --dataset, give only the dataset folder (labels are found in it)")
    default = get_dataset(dataset).schema
    schema = ClassSchema.load(schema_ref or default)
    origin = str(schema_ref) if schema_ref else f"preset {default}, the {dataset} default"
    exclude = None
    if exclude_tiles is not None:
        exclude = [t.strip() for t in exclude_tiles.split(",") if t.strip()]
    with naming_schema(origin):
        catalog, found = official_catalog(
            dataset,
            root,
            schema,
            split,
            modality,
            eroded=eroded,  # type: ignore[arg-type]
            exclude=exclude,
            chip_size=chip_size,
            cache=cache,
            progress=True,
        )
    click.echo(
        f"{found.dataset.title}, {found.modality}, official {split} split: "
        f"images from {found.images_from}, labels from {found.labels_from}"
    )
    for note in found.notes:
        click.echo(f"note: {note}")
    return catalog, origin


def _folder(
    images: Path,
    labels: Path | None,
    schema_ref: str | None,
    image_glob: str,
    label_glob: str | None,
    label_attribute: str,
    unlabelled: str,
    chip_size: int | None,
    cache: bool,
    nodata: float | None = None,
) -> tuple[Any, str]:
    """The catalogue of an image folder and its labels, and where its schema came from."""
    from geociss.data.catalog import Catalog

    schema, origin = schema_with_origin(schema_ref, images)
    with naming_schema(origin):
        catalog = Catalog.scan(
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
            nodata=nodata,
        )
    return catalog, origin
