"""``geociss info``: what a step bundle knows: classes, step history, metrics, model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def bundle_summary(bundle: Any) -> dict[str, Any]:
    """A JSON-ready description of a step bundle."""
    names = bundle.channel_names
    steps = []
    start = 0
    for t, record in enumerate(bundle.steps):
        n = len(record.channels)
        metrics = record.metrics or {}
        miou = metrics.get("miou", {})
        scope = metrics.get("scope")
        partial = bool(scope) and "vs rest" in str(scope)
        steps.append(
            {
                "step": t,
                "classes": names[start : start + n],
                "method": record.method,
                "miou_old": None if partial else miou.get("old"),
                "miou_new": miou.get("new"),
                # an extend step scores its new classes against "the rest" only: its mean over
                # the scored channels is not an all-class mIoU
                "miou_all": None if partial else miou.get("all"),
                "scope": scope,
                "retention": (record.info or {}).get("retention"),
            }
        )
        start += n
    return {
        "file": str(bundle.source) if bundle.source else None,
        "channels": names,
        "schema": bundle.schema.name,
        "background": bundle.schema.background_name,
        "encoder": bundle.model_config.encoder,
        "bands": bundle.bands,
        "gsd": bundle.gsd,
        "mean": bundle.mean,
        "std": bundle.std,
        "scaling": None if bundle.scaling is None else bundle.scaling.to_dict(),
        "created": bundle.created,
        "geociss_version": bundle.geociss_version,
        "weights_origin": bundle.weights_origin,
        "steps": steps,
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


@click.command("info")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(bundle: Path, as_json: bool) -> None:
    """Show the classes, step history and metrics stored in a step BUNDLE (.safetensors)."""
    from rich.console import Console
    from rich.table import Table

    from geociss.engine.bundle import StepBundle
    from geociss.evaluation import Retention, retention_table

    loaded = StepBundle.load(bundle)
    summary = bundle_summary(loaded)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    console = Console()
    console.print(
        f"[bold]{bundle}[/bold]: {len(summary['channels'])} classes, encoder "
        f"{summary['encoder']}, bands {', '.join(summary['bands']) or '-'}, GSD "
        f"{summary['gsd'] if summary['gsd'] is not None else '-'} (geociss "
        f"{summary['geociss_version']}, {summary['created']})"
    )
    if loaded.scaling is not None:
        console.print(f"input scaling: {loaded.scaling.describe()}")
    table = Table(title="class history")
    for col in ("step", "classes added", "method", "old mIoU", "new mIoU", "all mIoU"):
        table.add_column(col, justify="right" if "mIoU" in col else "left")
    for s in summary["steps"]:
        table.add_row(
            str(s["step"]),
            ", ".join(s["classes"]),
            s["method"] or "-",
            _pct(s["miou_old"]),
            _pct(s["miou_new"]),
            _pct(s["miou_all"]),
        )
    console.print(table)
    for s in summary["steps"]:
        if s["scope"]:
            console.print(f"step {s['step']} scored on: {s['scope']}")
    for s in summary["steps"]:
        if s["retention"]:
            retention = Retention.from_dict(s["retention"])
            console.print(retention_table(retention, title=f"step {s['step']}: old classes kept"))
            for line in retention.warnings():
                console.print(f"[bold red]warning:[/bold red] {line}")
    console.print(f"initial encoder weights: {describe_origin(summary['weights_origin'])}")


def describe_origin(origin: dict[str, Any] | None) -> str:
    """One line saying where a bundle's initial encoder weights came from."""
    if not origin:
        return "not recorded"
    source = origin.get("source")
    if source == "none":
        return "none (trained from random initialisation)"
    if source == "package":
        return (
            f"{origin.get('dataset', 'ImageNet')} from the pip package {origin.get('package')} "
            f"{origin.get('version') or ''} ({origin.get('file')}, sha256 "
            f"{str(origin.get('sha256', ''))[:16]}…)"
        )
    if source == "timm":
        return f"ImageNet, timm {origin.get('tag')}"
    if source == "file":
        return f"file {origin.get('path')} (sha256 {str(origin.get('sha256', ''))[:16]}…)"
    return ", ".join(f"{k} {v}" for k, v in origin.items())
