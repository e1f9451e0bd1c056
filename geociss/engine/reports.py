"""The files a scenario run writes next to its bundles: its config, per-step scores, history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geociss.evaluation import Scores, StepHistory
from geociss.io import atomic_write_text


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """``config.yaml``: the run's resolved configuration (JSON-able mapping), written atomically."""
    import yaml

    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    atomic_write_text(run_dir / "config.yaml", text)


def write_step_reports(step_dir: Path, step: int, scores: Scores) -> None:
    """``metrics.json``, ``metrics.csv`` and ``confusion.png`` of one step in ``step_dir``."""
    from geociss.evaluation import plot_confusion, write_scores_csv, write_scores_json

    write_scores_json(step_dir / "metrics.json", scores)
    write_scores_csv(step_dir / "metrics.csv", scores)
    plot_confusion(
        scores.confusion,
        list(scores.channel_names),
        step_dir / "confusion.png",
        title=f"step {step}",
    )


def write_history(run_dir: Path, history: StepHistory, title: str) -> None:
    """``history.json``, ``history.csv`` and ``history.png`` of a run in ``run_dir``."""
    from geociss.evaluation import plot_history, write_scores_csv, write_scores_json

    write_scores_json(run_dir / "history.json", history)
    write_scores_csv(run_dir / "history.csv", history)
    plot_history(history, run_dir / "history.png", title=title)


__all__ = ["write_config", "write_history", "write_step_reports"]
