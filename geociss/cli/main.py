"""The ``geociss`` command group.

Commands live one per module in :mod:`geociss.cli` and are imported only when invoked, so
``geociss --help`` never imports torch, rasterio or geopandas.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

from geociss import __version__

# command name -> (module, attribute, one-line help shown by `geociss --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "bench": ("geociss.cli.bench", "bench", "Compare methods on tasks: old/new/all mIoU table."),
    "demo": ("geociss.cli.demo", "demo", "Run the class-incremental story on sample scenes."),
    "sample-data": ("geociss.cli.sample_data", "sample_data", "Write ISPRS-like sample scenes."),
    "scan": (
        "geociss.cli.scan",
        "scan",
        "Check a GeoTIFF image/label folder and show its classes.",
    ),
    "scenario": ("geociss.cli.scenario", "scenario", "Show the classes and tiles of each step."),
    "info": ("geociss.cli.info", "info", "Show the classes, history and metrics of a bundle."),
    "train": ("geociss.cli.train", "train", "Train the steps of a class-incremental scenario."),
    "predict": (
        "geociss.cli.predict",
        "predict",
        "Map rasters of any size into QGIS-ready GeoTIFFs.",
    ),
    "extend": ("geociss.cli.extend", "extend", "Add classes from new-class labels only."),
    "evaluate": ("geociss.cli.evaluate", "evaluate", "Per-class IoU, mIoU, confusion of a model."),
    "export": ("geociss.cli.export", "export", "Export a bundle (ONNX for QGIS Deepness)."),
}

# GDAL settings that make many small windowed reads fast (the ones torchgeo's own CLI sets);
# users may override them.
GDAL_DEFAULTS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_MAX_RAW_BLOCK_CACHE_SIZE": "200000000",
    "GDAL_SWATH_SIZE": "200000000",
    "VSI_CURL_CACHE_SIZE": "200000000",
}


RESUME_HINTS = {
    "train": "run the same command again to resume",
    "predict": "run the same command again to resume",
    "extend": "run it again to start over (with --work-dir it resumes)",
    "bench": "run the same command again to resume",
}
"""What the one-line message of an interrupted command suggests."""


def interrupted_line(signum: int, command: str | None) -> str:
    """The line printed when a signal stops ``command``.

    E.g. ``interrupted (SIGTERM): geociss train stopped; run the same command again to resume``.
    """
    from geociss.interrupts import signal_name

    name = f"geociss {command}" if command else "geociss"
    line = f"interrupted ({signal_name(signum)}): {name} stopped"
    hint = RESUME_HINTS.get(command or "")
    return f"{line}; {hint}" if hint else line


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command runs.

    Exit statuses: 0 success, 1 internal error (a bug: Python's traceback), 2 bad input or
    usage. Errors derived from :class:`geociss.errors.GeocissError` are user errors: one line on
    stderr, status 2, no traceback. SIGINT (Ctrl-C) and SIGTERM stop a command with one line
    (``interrupted (SIGTERM): ...``) and status 130 / 143 (``128 + signal``), whatever exception
    the signal caused on its way out (see :mod:`geociss.interrupts`).
    """

    def list_commands(self, ctx: click.Context) -> list[str]:  # noqa: D102
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:  # noqa: D102
        if cmd_name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[cmd_name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:  # noqa: D102
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:  # noqa: D102
        from geociss import interrupts
        from geociss.errors import GeocissError

        with interrupts.handling_signals():
            try:
                return super().invoke(ctx)
            except (Exception, KeyboardInterrupt, SystemExit, interrupts.Interrupted) as err:
                signum = interrupts.stopped_by(err)
                if signum is not None:  # whatever was raised, it is the signal's consequence
                    click.echo(interrupted_line(signum, ctx.invoked_subcommand), err=True)
                    ctx.exit(interrupts.exit_status(signum))
                if not isinstance(err, GeocissError):
                    raise
                click.echo(f"error: {err}", err=True)
                ctx.exit(2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geociss")
def cli() -> None:
    """geociss: class-incremental semantic segmentation of aerial imagery.

    Train a land-cover model, add new classes later from data labelled for the new classes
    only, and map GeoTIFFs of any size into QGIS-ready outputs.
    """
    for key, value in GDAL_DEFAULTS.items():
        os.environ.setdefault(key, value)


if __name__ == "__main__":  # pragma: no cover
    cli()
