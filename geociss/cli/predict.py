"""``geociss predict``: map rasters of any size into QGIS-ready GeoTIFFs."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, NoReturn

import click

from geociss.cli.options import MODEL_NODATA_HELP


def _batch_size(_: click.Context, __: click.Parameter, value: str) -> int | str:
    if value == "auto":
        return value
    try:
        batch = int(value)
    except ValueError:
        batch = 0
    if batch < 1:
        raise click.BadParameter(f"expected 'auto' or a positive integer, got {value!r}")
    return batch


def _echo_warning(message: Warning | str, *_: Any, **__: Any) -> None:
    """Show a warning as one ``warning: …`` line on stderr (no file name, no source line)."""
    click.echo(f"warning: {message}", err=True)


def render_summary(results: list[Any], console: Any) -> None:
    """Print one row per input: status, tiles, time, outputs or the reason of a failure."""
    from rich.table import Table

    table = Table(title="predict")
    for col in ("input", "status", "tiles", "nodata tiles", "seconds", "outputs / problem"):
        table.add_column(
            col,
            justify="right" if col in ("tiles", "nodata tiles", "seconds") else "left",
            overflow="fold",
        )
    style = {"written": "green", "skipped": "cyan", "failed": "bold red"}
    for r in results:
        detail = r.message if r.status == "failed" else ", ".join(Path(o).name for o in r.outputs)
        table.add_row(
            Path(r.input).name or r.input,
            f"[{style[r.status]}]{r.status}[/]",
            str(r.tiles),
            str(r.skipped_tiles),
            f"{r.seconds:.1f}",
            detail,
        )
    console.print(table)


@click.command("predict")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "--model",
    "bundle",
    required=True,
    type=click.Path(path_type=Path),
    help="Step bundle (.safetensors) written by geociss train/extend.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Output folder (created).",
)
@click.option(
    "--tile",
    default=512,
    show_default=True,
    type=click.IntRange(min=16),
    help="Tile side in pixels.",
)
@click.option(
    "--overlap",
    default=128,
    show_default=True,
    type=click.IntRange(min=0),
    help="Overlap between neighbouring tiles in pixels, blended with a raised cosine.",
)
@click.option(
    "--margin",
    default=None,
    type=click.IntRange(min=0),
    help="Pixels at inner tile edges that get zero weight; at least the model's "
    "receptive-field halo makes tiles match a whole-image pass [default: overlap/8].",
)
@click.option(
    "--batch-size",
    default="auto",
    show_default=True,
    callback=_batch_size,
    help="Tiles per forward pass, or 'auto' (probed on a GPU, 4 on CPU).",
)
@click.option(
    "--tta",
    type=click.Choice(["none", "flip", "d4"]),
    default="none",
    show_default=True,
    help="Test-time augmentation: average over flips or all 8 "
    "rotations/reflections (4x or 8x the compute).",
)
@click.option("--confidence", is_flag=True, help="Also write <name>_confidence.tif.")
@click.option(
    "--probabilities",
    is_flag=True,
    help="Also write <name>_probabilities.tif (one band per class).",
)
@click.option("--vector", is_flag=True, help="Also write <name>.gpkg polygons.")
@click.option("--nodata", type=float, default=None, help=MODEL_NODATA_HELP)
@click.option(
    "--devices",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Processes sharing the work (one per GPU, or CPU processes).",
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=0),
    help="Tile-reading worker processes [default: CPU cores - 1, at most 4].",
)
@click.option(
    "--buffer-mb",
    default=256,
    show_default=True,
    type=click.IntRange(min=1),
    help="Row-band buffer per stream in MiB; wider rasters are cut into column groups.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the grid, tile count and memory estimates; write nothing.",
)
def predict(
    inputs: tuple[str, ...],
    bundle: Path,
    out_dir: Path,
    tile: int,
    overlap: int,
    margin: int | None,
    batch_size: int | str,
    tta: str,
    confidence: bool,
    probabilities: bool,
    vector: bool,
    nodata: float | None,
    devices: int,
    workers: int | None,
    buffer_mb: int,
    dry_run: bool,
) -> None:
    """Map rasters of any size into QGIS-ready GeoTIFFs.

    INPUT is a raster file, a folder (its .tif/.tiff files) or a glob pattern; give as many as
    you like. For each <name>.tif the output folder gets <name>_classes.tif (a styled COG with
    a .qml and .tif.aux.xml), and on request <name>_confidence.tif, <name>_probabilities.tif
    and <name>.gpkg, on the input's exact grid. Interrupted runs resume; inputs already done
    with the same model and settings are skipped. A bad input is reported and the others go on;
    the exit status is non-zero when any input failed.

    Several machines: start it with torchrun (or srun, see docs/scaling.md) instead of
    --devices, e.g. torchrun --nnodes 2 --nproc-per-node 4 ... -m geociss predict ...; every
    process is one rank, sharing the inputs (or the rows of large rasters) as --devices does,
    into an output folder on a shared file system.
    """
    # torch reads this once, at its first allocation: transparent huge pages for large CPU
    # tensors cut page faults ~15x and keep the heap from fragmenting (see run.bound_heap_growth)
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    from geociss.inference.launch import Launch
    from geociss.inference.model import LoadedModel, PredictOptions
    from geociss.io import check_output_dir

    launch = Launch.from_env()  # a rank of torchrun / srun: only rank 0 reports
    primary = launch is None or launch.primary
    check_output_dir(out_dir, "--out")
    opts = PredictOptions(
        tile=tile,
        overlap=overlap,
        margin=margin,
        batch_size=batch_size,
        tta=tta,
        confidence=confidence,
        probabilities=probabilities,
        vector=vector,
        nodata=nodata,
        workers=workers,
        devices=devices,
        buffer_mb=buffer_mb,
    )
    model = LoadedModel.from_bundle(bundle)
    if dry_run:
        from geociss.inference.dryrun import dry_run as describe

        lines, bad = describe(inputs, model, opts, out_dir)
        for line in lines if primary else []:
            click.echo(line)
        if bad:
            _fail(f"{bad} input(s) cannot be predicted (see above)", primary)
        return
    _predict(inputs, model, opts, out_dir, primary)


def _fail(problem: str, primary: bool) -> NoReturn:
    """End with status 2: a lone process or rank 0 prints ``problem``, the other ranks nothing."""
    from geociss.errors import DataError

    if primary:
        raise DataError(None, problem)
    raise click.exceptions.Exit(2)


def _progress(result: Any) -> None:
    """One line per finished input: ``written: a.tif (1.2 s)``, or ``failed: …`` on stderr."""
    if result.status == "failed":
        click.echo(f"failed: {result.message}", err=True)
    else:
        click.echo(f"{result.status}: {result.input} ({result.seconds:.1f} s)")


def _predict(inputs: tuple[str, ...], model: Any, opts: Any, out_dir: Path, primary: bool) -> None:
    """Predict every input, print a line per input and the table; fail when any input failed.

    In a launched job every rank ends with rank 0's status; only rank 0 prints.
    """
    from rich.console import Console

    from geociss.inference.launch import PeerStopped
    from geociss.inference.run import predict_many

    with warnings.catch_warnings():
        warnings.showwarning = _echo_warning  # one line each, e.g. a damaged partial discarded
        try:
            results = predict_many(inputs, model, opts, out_dir, on_result=_progress)
        except PeerStopped as stopped:  # rank 0 printed why
            raise click.exceptions.Exit(stopped.status) from None
    if primary:
        render_summary(results, Console())
    failed = sum(r.status == "failed" for r in results)
    if failed:
        _fail(f"{failed} of {len(results)} input(s) failed (see the table above)", primary)
