"""``geociss extend``: add classes to a model from data labelled for the new classes only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geociss.cli.options import MODEL_NODATA_HELP


def split_list(text: str | None, option: str) -> list[str] | None:
    """``'a, b'`` → ``['a', 'b']`` (None stays None); an empty item is an error."""
    from geociss.errors import ConfigError

    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if any(not t for t in items):
        raise ConfigError(f"{option}: empty item in {text!r}; separate values with commas")
    return items


def parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``('lambda_kd=10', 'pod=local')`` → a dict with YAML-parsed values."""
    import yaml

    from geociss.errors import ConfigError

    out: dict[str, Any] = {}
    for text in pairs:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {text!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def _label_values(text: str | None) -> list[int] | None:
    from geociss.errors import ConfigError

    items = split_list(text, "--label-values")
    if items is None:
        return None
    try:
        return [int(v) for v in items]
    except ValueError:
        raise ConfigError(f"--label-values: {text!r} is not a list of integers") from None


def _request(opts: dict[str, Any]) -> Any:
    """Validate the options into an :class:`~geociss.engine.increment.ExtendRequest`."""
    from geociss.config.experiment import DataConfig, MethodConfig, TrainConfig
    from geociss.config.validation import validate_model
    from geociss.engine.assess import resolve_device
    from geociss.engine.increment import ExtendRequest

    data = {
        "images": opts["images"],
        "labels": opts["labels"],
        "val_fraction": opts["val_fraction"],
        "label_attribute": opts["label_attribute"],
        "num_workers": opts["num_workers"],
        "eval_tile": opts["eval_tile"],
        "eval_overlap": opts["eval_overlap"],
    }
    for key in ("patch_size", "batch_size", "samples_per_epoch", "nodata"):
        if opts[key] is not None:
            data[key] = opts[key]
    train: dict[str, Any] = {"seed": opts["seed"]}
    if opts["epochs"] is not None:
        train["epochs"] = train["epochs_incremental"] = opts["epochs"]
    if opts["lr"] is not None:
        train["lr_incremental"] = opts["lr"]
    device = opts["device"]
    resolve_device(device)
    train["accelerator"] = device
    names = split_list(opts["new_classes"], "--new-classes") or []
    return ExtendRequest(
        model=opts["model"],
        out=opts["out"],
        new_classes=names,
        data=validate_model(DataConfig, data, "extend options"),
        train=validate_model(TrainConfig, train, "extend options"),
        method=validate_model(
            MethodConfig,
            {"name": opts["method"], "params": parse_params(opts["params"])},
            "extend options",
        ),
        colors=split_list(opts["colors"], "--colors"),
        label_values=_label_values(opts["label_values"]),
        overwrite=opts["overwrite"],
        work_dir=opts["work_dir"],
        full_labels=opts["full_labels"],
    )


_PATH = click.Path(path_type=Path)


@click.command("extend")
@click.option("--model", required=True, type=_PATH, help="Step bundle to extend (not modified).")
@click.option("--images", required=True, type=_PATH, help="Folder of image GeoTIFFs.")
@click.option(
    "--labels",
    required=True,
    type=_PATH,
    help="Folder of label rasters (0 = anything else, 1..K = the new classes, 255 = ignore) or "
    "a polygon file whose class attribute holds new class names.",
)
@click.option("--new-classes", required=True, metavar="NAME[,NAME]", help="The new classes.")
@click.option("--colors", metavar="#RRGGBB[,...]", help="Colours of the new classes [auto].")
@click.option("--method", required=True, help="Incremental method: mib, plop, ilt, ucd, ...")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Method hyper-parameter (repeatable).",
)
@click.option("--epochs", type=int, help="Training epochs [30].")
@click.option("--lr", type=float, help="Learning rate [0.001].")
@click.option("--batch-size", type=int, help="Windows per batch [8].")
@click.option("--patch-size", type=int, help="Training window size in pixels [256].")
@click.option("--samples-per-epoch", type=int, help="Random windows per epoch [2000].")
@click.option(
    "--label-values", metavar="V[,V]", help="Raw label value of each new class, in order [1,2,...]."
)
@click.option(
    "--full-labels",
    is_flag=True,
    help="The label rasters hold every class (e.g. the original labels): --label-values "
    "names the new classes' values, the model's schema's ignore_values and 255 stay ignored, "
    "and every other value counts as background.",
)
@click.option(
    "--label-attribute",
    default="class",
    show_default=True,
    help="Class attribute of polygon labels.",
)
@click.option("--nodata", type=float, default=None, help=MODEL_NODATA_HELP)
@click.option(
    "--val-fraction",
    type=float,
    default=0.25,
    show_default=True,
    help="Share of tiles held out to evaluate the new classes.",
)
@click.option(
    "--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"])
)
@click.option("--out", required=True, type=_PATH, help="Extended bundle to write (.safetensors).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--num-workers", type=int, default=2, show_default=True, help="Data loader worker processes."
)
@click.option(
    "--eval-tile", type=int, default=512, show_default=True, help="Evaluation window size."
)
@click.option(
    "--eval-overlap", type=int, default=64, show_default=True, help="Overlap of evaluation windows."
)
@click.option(
    "--work-dir",
    type=_PATH,
    help="Keep logs and checkpoints here: run the same command again after an interruption "
    "and it continues inside the interrupted epoch [a temporary folder: no resume].",
)
@click.option(
    "--no-progress",
    is_flag=True,
    help="Hide the progress bar (on a terminal) or the progress lines (in a log file).",
)
def extend(**opts: Any) -> None:
    """Add new classes to a trained model without its old training data.

    The labels hold the NEW classes only: everything else (old classes included) is 0. The
    model learns the new classes with an incremental METHOD (the loaded model is the frozen
    teacher that keeps the old classes from being forgotten). Inputs are normalised with the
    model's own mean/std, never with statistics of the new images (the old weights expect the
    old scaling), and the model's bands are read (a model trained with data.bands [2,3,4]
    reads bands 2, 3 and 4 of the new images). The new classes are then scored against
    everything else on held-out tiles. The old classes cannot be scored without old labels (use
    `geociss evaluate`); instead a retention table shows, per old class, the share of the pixels
    the input model gives it (outside new-class labels) that the extended model still gives it,
    with a warning for a class below 50 %.
    """
    from rich.console import Console

    from geociss.engine.increment import extend_bundle
    from geociss.evaluation import retention_table, scores_table

    console = Console()
    req = _request(opts)
    result = extend_bundle(req, log=console.print, progress=not opts["no_progress"])
    bundle, scores = result.bundle, result.scores
    colors = [(128, 128, 128), *bundle.schema.colors[-(scores.num_channels - 1) :]]
    where = "held-out tiles" if result.held_out else "the training tiles (too few tiles)"
    console.print(
        scores_table(
            scores,
            colors=colors,
            title=f"new classes vs rest on {where} ({result.eval_tiles})",
            vs_rest=True,
        )
    )
    if result.retention is not None:
        console.print(
            retention_table(result.retention, title="old classes: kept from the input model")
        )
        for line in result.retention.warnings():
            console.print(f"[bold red]warning:[/bold red] {line}")
    console.print(
        "[yellow]old classes cannot be scored without their labels: the table above measures "
        "agreement with the input model, not accuracy; run `geociss evaluate` on a folder "
        "labelled for every class for their IoU[/yellow]"
    )
    console.print(
        f"wrote {result.path}: {len(bundle.channels)} classes in {len(bundle.steps)} steps "
        f"(see `geociss info {result.path}`)"
    )
