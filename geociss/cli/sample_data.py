"""``geociss sample-data``: write a folder of ISPRS-like sample scenes."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("sample-data")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--tiles",
    type=click.IntRange(1, 10_000),
    default=6,
    show_default=True,
    help="Number of scenes.",
)
@click.option(
    "--size",
    type=click.IntRange(64, 4096),
    default=1024,
    show_default=True,
    help="Width and height of each scene in pixels.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Random seed; the same seed gives byte-identical files.",
)
@click.option(
    "--bands",
    type=click.Choice(["rgb", "irrg", "rgbir"], case_sensitive=False),
    default="rgb",
    show_default=True,
    help="Band order: red-green-blue, near-infrared-red-green (as Vaihingen), or "
    "red-green-blue-near-infrared (as Potsdam).",
)
@click.option(
    "--crs",
    default="EPSG:32632",
    show_default=True,
    help="Projected CRS (metre units) of the tile grid.",
)
@click.option(
    "--gsd",
    type=click.FloatRange(0.03, 0.5),
    default=0.09,
    show_default=True,
    help="Ground sampling distance in metres per pixel.",
)
@click.option("--overwrite", is_flag=True, help="Replace the scenes of an earlier run in OUT.")
def sample_data(
    out: Path, tiles: int, size: int, seed: int, bands: str, crs: str, gsd: float, overwrite: bool
) -> None:
    """Write ISPRS-like sample scenes to OUT: images/, labels/ and classes.yaml.

    The scenes are georeferenced GeoTIFF tiles on one grid (they mosaic in QGIS) with the six
    ISPRS classes: impervious surfaces, building, low vegetation, tree, car, clutter.
    """
    from geociss.data.synthetic import generate_scenes

    scenes = generate_scenes(
        out,
        tiles=tiles,
        size=size,
        seed=seed,
        bands=bands.lower(),
        crs=crs,
        gsd=gsd,
        overwrite=overwrite,
    )
    first, last = scenes.stems[0], scenes.stems[-1]
    span = f"{first}.tif" if first == last else f"{first}.tif … {last}.tif"
    click.echo(
        f"wrote {len(scenes.stems)} scene(s) of {size} × {size} px ({bands.lower()}, "
        f"{crs}, {gsd:g} m) to {scenes.root}"
    )
    click.echo(f"  images:  {scenes.images}/{span}")
    click.echo(f"  labels:  {scenes.labels}/{span}")
    click.echo(f"  classes: {scenes.schema}")
    shares = ", ".join(f"{name} {share:.1%}" for name, share in scenes.shares().items())
    click.echo(f"class shares: {shares}")
