"""``geociss scenario``: show the classes, channels and data of each step of a scenario."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def step_rows(scenario: Any, regions: list[Any] | None) -> list[dict[str, Any]]:
    """One JSON-ready row per step: classes, channels and (with data) the selected regions."""
    rows = []
    for t, classes in enumerate(scenario.steps):
        chans = scenario.new_channels(t)
        row: dict[str, Any] = {
            "step": t,
            "classes": [scenario.schema.names[c] for c in classes],
            "channels": [chans.start, chans.stop - 1],
        }
        if regions is not None:
            chosen = scenario.select(regions, t)
            new = [c for c in classes if c != scenario.background] or classes
            row["regions"] = len(chosen)
            row["tiles"] = len({r.tile for r in chosen})
            row["new_class_pixels"] = int(sum(int(r.hist[new].sum()) for r in chosen))
            row["windows"] = [
                [r.window.tile, r.window.row, r.window.col, r.window.height, r.window.width]
                for r in chosen
            ]
        rows.append(row)
    return rows


def render(scenario: Any, rows: list[dict[str, Any]], console: Any) -> None:
    """Print the steps as a rich table."""
    from rich.table import Table

    bg = (
        "implicit channel"
        if scenario.background is None
        else scenario.schema.names[scenario.background]
    )
    table = Table(title=f"{scenario!r}".split("(")[0] + f" ({scenario.setting}, background: {bg})")
    for col in ("step", "classes learned", "channels"):
        table.add_column(col)
    has_data = "regions" in rows[0]
    if has_data:
        for col in ("regions", "tiles", "new-class pixels"):
            table.add_column(col, justify="right")
    for row in rows:
        cells = [str(row["step"]), ", ".join(row["classes"]), "{}-{}".format(*row["channels"])]
        if has_data:
            cells += [str(row["regions"]), str(row["tiles"]), f"{row['new_class_pixels']:,}"]
        table.add_row(*cells)
    console.print(table)
    if scenario.unlearned:
        names = ", ".join(scenario.schema.names[c] for c in scenario.unlearned)
        console.print(f"not learned: {names} (background in training, ignored in evaluation)")


@click.command("scenario")
@click.argument("task")
@click.option(
    "--images", type=click.Path(path_type=Path), help="Image folder (to count data per step)."
)
@click.option("--labels", type=click.Path(path_type=Path), help="Label folder or vector file.")
@click.option(
    "--schema",
    "schema_ref",
    metavar="PRESET_OR_YAML",
    help="Class schema: a preset (isprs, isprs-rgb) or a YAML file. A preset name always "
    "means the preset, even if a file or folder of that name is in the working directory "
    "(write ./isprs for such a file) [default: IMAGES/../classes.yaml if present, else isprs].",
)
@click.option(
    "--unlearned", multiple=True, metavar="CLASS", help="A class no step learns (repeatable)."
)
@click.option(
    "--setting", type=click.Choice(["overlap", "disjoint"]), default="overlap", show_default=True
)
@click.option(
    "--no-count-background",
    is_flag=True,
    help="The task's numbers exclude the background class (VOC convention).",
)
@click.option(
    "--chip-size",
    type=click.IntRange(min=16),
    default=None,
    help="Select data per chip of this size instead of per tile (IDEC: 600).",
)
@click.option(
    "--json", "json_out", type=click.Path(path_type=Path), help="Write the steps as JSON."
)
def scenario(
    task: str,
    images: Path | None,
    labels: Path | None,
    schema_ref: str | None,
    unlearned: tuple[str, ...],
    setting: str,
    no_count_background: bool,
    chip_size: int | None,
    json_out: Path | None,
) -> None:
    """Show the classes, channels and selected data of each step of TASK.

    TASK is a scenario name such as 4-1, 2-2-1, 2-1-1-1, 15-5s or offline. With --images and
    --labels, each step's data is selected on the original labels and counted.
    """
    from rich.console import Console

    from geociss.cli.scan import resolve_schema
    from geociss.data.scenarios import Scenario
    from geociss.errors import ConfigError
    from geociss.io import atomic_write_text

    if (images is None) != (labels is None):
        raise ConfigError("give both --images and --labels, or neither")
    schema = resolve_schema(schema_ref, images or Path("."))
    config = {
        "task": task,
        "unlearned": list(unlearned),
        "setting": setting,
        "count_background": not no_count_background,
    }
    scen = Scenario.from_config(config, schema)
    regions = None
    if images is not None:
        from geociss.data.catalog import Catalog

        catalog = Catalog.scan(images, labels, schema, chip_size=chip_size)
        regions = catalog.regions()
    rows = step_rows(scen, regions)
    render(scen, rows, Console())
    if json_out is not None:
        atomic_write_text(
            json_out, json.dumps({"scenario": scen.to_dict(), "steps": rows}, indent=1)
        )
