"""``geociss export``: write a bundle in another format (ONNX for the QGIS Deepness plugin)."""

from __future__ import annotations

import warnings
from pathlib import Path

import click


@click.group("export")
def export() -> None:
    """Export a step bundle for use outside geociss."""


@export.command("onnx")
@click.option(
    "--model", "bundle", required=True, type=click.Path(path_type=Path),
    help="Step bundle (.safetensors) to export.",
)
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tile", default=512, show_default=True, help="Tile size in pixels (square).")
@click.option(
    "--overlap", default=15, show_default=True, help="Tile overlap for Deepness, in percent."
)
def onnx(bundle: Path, out: Path, tile: int, overlap: int) -> None:
    """Export a bundle to OUT (.onnx) for the QGIS Deepness plugin.

    One file with the softmax and the input normalisation in the graph, a dynamic batch, and
    the Deepness metadata (class names, resolution, tile size, overlap). Deepness feeds uint8
    bands only. Needs the onnx extra: pip install 'geociss[onnx]'.
    """
    from geociss.inference.onnx_export import ExportWarning, export_onnx

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExportWarning)
        path = export_onnx(bundle, out, tile=tile, overlap_percent=overlap)
    for warning in caught:
        if issubclass(warning.category, ExportWarning):
            click.echo(f"warning: {warning.message}", err=True)
    click.echo(f"wrote {path} (tile {tile} px, overlap {overlap} %)")
