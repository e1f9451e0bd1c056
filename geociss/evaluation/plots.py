"""PNG plots of evaluation results (matplotlib).

matplotlib is imported inside the functions, and figures are drawn on an explicit Agg canvas
(``matplotlib.figure.Figure`` + ``FigureCanvasAgg``) without pyplot, so plotting works headless
and never switches the backend of a notebook or GUI session. PNGs are written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from geociss.evaluation.history import StepHistory
from geociss.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Normalize = Literal["true", "pred", "all"] | None
"""Confusion normalisation: by true class (rows), by prediction (columns), by total, or counts."""

ANNOTATE_MAX = 12
"""Cells carry their values when the matrix has at most this many classes."""


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def step_label(step: int, names: Sequence[str], max_names: int = 3) -> str:
    """Axis label of a step: ``"step 1 (+car)"``; over ``max_names`` names: ``"+5 classes"``."""
    added = ", ".join(names) if len(names) <= max_names else f"{len(names)} classes"
    return f"step {step} (+{added})" if names else f"step {step}"


def plot_history(history: StepHistory, path: str | Path, title: str | None = None) -> None:
    """Plot the old / new / all mIoU (percent) after each step as lines with markers.

    Undefined values (e.g. "new" at step 0) leave a gap. Raises ValueError on an empty history.

    Args:
        history: the per-step scores.
        path: output PNG.
        title: figure title (default: the method name).
    """
    if not history.records:
        raise ValueError("cannot plot an empty step history")
    x = np.arange(len(history.records))
    labels = [step_label(r.step, r.class_names) for r in history.records]
    fig = _new_figure(max(5.0, 1.6 * len(x) + 2.0), 4.0)
    ax = fig.add_subplot()
    series = (("old", "o", "miou_old"), ("new", "s", "miou_new"), ("all", "D", "miou_all"))
    for name, marker, attr in series:
        values = [getattr(r.scores, attr) for r in history.records]
        y = np.array([np.nan if v is None else 100.0 * v for v in values], dtype=float)
        ax.plot(x, y, marker=marker, label=name)
    ax.set_xticks(
        x, labels, rotation=15 if len(x) > 3 else 0, ha="right" if len(x) > 3 else "center"
    )
    ax.set_ylim(0, 100)
    ax.set_ylabel("mIoU (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    ax.set_title(title if title is not None else (history.method or "mIoU per step"))
    _save_png(fig, path)


def normalize_confusion(cm: np.ndarray, normalize: Normalize = "true") -> np.ndarray:
    """Normalise a confusion matrix; rows / columns with no pixel stay 0.

    Raises:
        ValueError: unknown ``normalize`` value or a non-square matrix.
    """
    arr = np.asarray(cm, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {arr.shape}")
    if normalize is None:
        return arr
    if normalize == "true":
        den = arr.sum(axis=1, keepdims=True)
    elif normalize == "pred":
        den = arr.sum(axis=0, keepdims=True)
    elif normalize == "all":
        den = np.full((1, 1), arr.sum())
    else:
        raise ValueError(f"normalize must be 'true', 'pred', 'all' or None, got {normalize!r}")
    return np.divide(arr, den, out=np.zeros_like(arr), where=den > 0)


def plot_confusion(
    cm: np.ndarray | Any,
    names: Sequence[str],
    path: str | Path,
    normalize: Normalize = "true",
    title: str | None = None,
) -> None:
    """Plot a confusion matrix (rows = ground truth) as a heat map with class names.

    Args:
        cm: ``(C, C)`` counts.
        names: ``C`` class names.
        path: output PNG.
        normalize: ``"true"`` (rows sum to 1, default), ``"pred"``, ``"all"`` or None (counts).
        title: figure title.

    Raises:
        ValueError: the names do not match the matrix size, or a bad ``normalize``.
    """
    values = normalize_confusion(cm, normalize)
    c = values.shape[0]
    if len(names) != c:
        raise ValueError(f"{len(names)} names for a {c}x{c} confusion matrix")
    side = min(max(4.0, 0.55 * c + 2.5), 30.0)
    fig = _new_figure(side + 1.0, side)
    ax = fig.add_subplot()
    vmax = 1.0 if normalize is not None else max(float(values.max()), 1.0)
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(c)
    ax.set_xticks(ticks, list(names), rotation=45, ha="right")
    ax.set_yticks(ticks, list(names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if c <= ANNOTATE_MAX:
        for i in range(c):
            for j in range(c):
                v = values[i, j]
                text = f"{v:.2f}" if normalize is not None else f"{int(v)}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if v > 0.5 * vmax else "black",
                )
    ax.set_title(title if title is not None else f"confusion (normalised: {normalize})")
    _save_png(fig, path)
