"""Markdown tables of a seeded benchmark: mean ± sd, paired comparisons, per-class IoU.

Inputs are :class:`~geociss.bench.BenchRow` s, one per (task, method, seed). Published ISPRS
Potsdam numbers (IDEC paper, Table 3) are set beside ours as fractions of joint training, the
only scale on which a CPU run on synthetic scenes and a GPU run on Potsdam can be set side by
side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from geociss.bench.stats import Spread, paired_difference, pearson, spearman

# IDEC (Zhao, Yuan, Shi, TPAMI 2023), Table 3, ISPRS Potsdam, all-mIoU % after the last step;
# ‡ in the paper: re-implemented by the IDEC authors with PLOP's code. Joint = "offline".
PUBLISHED_POTSDAM: dict[str, dict[str, float]] = {
    "finetune": {"4-1": 8.26, "2-3": 13.77, "2-2-1": 4.95, "2-1-1-1": 0.64},
    "ilt": {"4-1": 40.08, "2-3": 32.01, "2-2-1": 25.97, "2-1-1-1": 13.43},
    "mib": {"4-1": 61.47, "2-3": 57.27, "2-2-1": 50.57, "2-1-1-1": 50.99},
    "plop": {"4-1": 59.85, "2-3": 54.46, "2-2-1": 51.59, "2-1-1-1": 50.30},
    "idec": {"4-1": 69.39, "2-3": 61.01, "2-2-1": 58.70, "2-1-1-1": 58.03},
    "joint": {"4-1": 72.98, "2-3": 72.98, "2-2-1": 72.98, "2-1-1-1": 72.98},
}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _pm(s: Spread) -> str:
    if s.mean is None:
        return "-"
    return f"{100 * s.mean:.1f} ± {100 * s.sd:.1f}" if s.sd is not None else f"{100 * s.mean:.1f}"


def _cells(rows: Sequence[Any]) -> dict[tuple[str, str], list[Any]]:
    cells: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        cells.setdefault((r.task, r.method), []).append(r)
    return cells


def _by_seed(
    cells: dict[tuple[str, str], list[Any]], task: str, method: str, key: str = "all"
) -> dict[int, float | None]:
    """``{seed: row.<key>}`` of one cell (the input of a paired difference)."""
    return {r.seed: getattr(r, key) for r in cells.get((task, method), [])}


def _median(values: list[float]) -> float | None:
    xs = sorted(values)
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def summary_table(rows: Sequence[Any]) -> str:
    """Old / new / all mIoU (mean ± sd over seeds), all / joint, cost, published ratio."""
    lines = [
        "| task | method | seeds | old | new | all | all / joint | Potsdam all / joint "
        "(IDEC Table 3) | s/step vs fine-tune | peak MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (task, method), cell in _cells(rows).items():
        done = [r for r in cell if r.all is not None]
        ratio = Spread.of([r.of_joint for r in done])
        pub = PUBLISHED_POTSDAM.get(method, {}).get(task)
        joint_pub = PUBLISHED_POTSDAM["joint"].get(task)
        pub_ratio = f"{pub / joint_pub:.2f}" if pub and joint_pub else "-"
        speed = _median([r.step_vs_finetune for r in done if r.step_vs_finetune])
        peak = _median([r.peak_mib for r in done if r.peak_mib])
        notes = sorted({r.note for r in cell if r.note})
        name = method + (f" ({', '.join(notes)})" if notes else "")
        lines.append(
            f"| {task} | {name} | {len(done)} | {_pm(Spread.of([r.old for r in done]))} | "
            f"{_pm(Spread.of([r.new for r in done]))} | {_pm(Spread.of([r.all for r in done]))} | "
            f"{'-' if ratio.mean is None else f'{ratio.mean:.2f}'} | {pub_ratio} | "
            f"{'-' if speed is None else f'{speed:.2f}'} | "
            f"{'-' if peak is None else f'{peak:.0f}'} |"
        )
    return "\n".join(lines)


def comparisons(rows: Sequence[Any], against: Sequence[str] = ("mib", "finetune")) -> str:
    """Paired all-mIoU differences of every method against each of ``against``, with verdicts."""
    cells = _cells(rows)
    head = " | ".join(f"vs {a}: Δ all [95 % CI]" for a in against)
    lines = [f"| task | method | {head} |", "| --- | --- |" + " --- |" * len(against)]
    for task, method in cells:
        if method == "joint":
            continue
        parts = [
            ""
            if method == a
            else paired_difference(_by_seed(cells, task, method), _by_seed(cells, task, a)).show()
            for a in against
        ]
        lines.append(f"| {task} | {method} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def ablation_comparisons(rows: Sequence[Any], base: str = "idec") -> str:
    """Paired old / new / all-mIoU differences of each variant of ``base`` against ``base``.

    A variant is a method spec named ``<base>-<something>`` (``idec-no-dada``): the
    comparison an ablation asks for is against the full method with the same seeds, on old
    and new classes apart, since a part may trade one for the other. Empty when no variant ran.
    """
    cells = _cells(rows)
    lines = [
        f"| task | variant | vs {base}: Δ old [95 % CI] | Δ new | Δ all |",
        "| --- | --- | --- | --- | --- |",
    ]
    for task, method in cells:
        if not method.startswith(f"{base}-") or (task, base) not in cells:
            continue
        parts = [
            paired_difference(
                _by_seed(cells, task, method, k), _by_seed(cells, task, base, k)
            ).show()
            for k in ("old", "new", "all")
        ]
        lines.append(f"| {task} | {method} | " + " | ".join(parts) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def per_class_table(rows: Sequence[Any], classes: Sequence[str] | None = None) -> str:
    """Per-class IoU of the final model (mean over seeds), one row per task and method."""
    names: list[str] = list(classes or [])
    if not names:
        for r in rows:
            names += [c for c in r.per_class if c not in names]
    lines = [
        "| task | method | " + " | ".join(names) + " |",
        "| --- | --- |" + " ---: |" * len(names),
    ]

    def value(cell: list[Any], name: str) -> str:
        return _pct(Spread.of([r.per_class.get(name) for r in cell]).mean)

    for (task, method), cell in _cells(rows).items():
        done = [r for r in cell if r.all is not None]
        if done:
            lines.append(
                f"| {task} | {method} | " + " | ".join(value(done, c) for c in names) + " |"
            )
    return "\n".join(lines)


def retention_tracking(rows: Sequence[Any], threshold: float = 0.5) -> str:
    """How well the label-free retention ("kept") tracks the real IoU change of old classes.

    Over every (run, incremental step, old class) with teacher pixels and a non-zero IoU before
    the step: Pearson and Spearman correlation of ``kept`` with ``IoU after / IoU before``, and
    how often the warning (``kept < threshold``) agrees with a real loss of more than half the
    class's IoU. Empty when no row carries retention pairs.
    """
    pairs = [
        (p["kept"], p["iou_after"] / p["iou_before"])
        for r in rows
        for p in getattr(r, "retention", [])
        if p.get("kept") is not None and p.get("iou_before") and p.get("iou_after") is not None
    ]
    if not pairs:
        return ""
    kept, ratio = [k for k, _ in pairs], [q for _, q in pairs]

    def corr(v: float | None) -> str:
        return "-" if v is None else f"{v:+.2f}"

    warned = [q for k, q in pairs if k < threshold]
    lost = [k for k, q in pairs if q < 0.5]
    hits = sum(1 for k, q in pairs if k < threshold and q < 0.5)
    return "\n".join(
        [
            "| pairs (run × step × old class) | Pearson r | Spearman ρ | warned (kept < "
            f"{100 * threshold:.0f} %) that lost > half the IoU | lost > half the IoU that were "
            "warned |",
            "| ---: | ---: | ---: | ---: | ---: |",
            f"| {len(pairs)} | {corr(pearson(kept, ratio))} | {corr(spearman(kept, ratio))} | "
            f"{hits} / {len(warned)} | {hits} / {len(lost)} |",
        ]
    )


def retention_misses(rows: Sequence[Any], threshold: float = 0.5) -> str:
    """The real losses the retention warning missed, in one sentence (empty when none).

    A miss: an old class whose IoU fell below half of what it was before the step while
    ``kept`` stayed at ``threshold`` or above (the new model kept the class's old pixels but
    gave it many others too). Grouped by task, method and class, with the mean kept and ratio.
    """
    groups: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for r in rows:
        for p in getattr(r, "retention", []):
            if p.get("kept") is None or not p.get("iou_before") or p.get("iou_after") is None:
                continue
            ratio = p["iou_after"] / p["iou_before"]
            if ratio < 0.5 and p["kept"] >= threshold:
                groups.setdefault((r.task, r.method, p["class"]), []).append((p["kept"], ratio))
    parts = [
        f"{task} {method} {cls} ({len(v)}×: kept {sum(k for k, _ in v) / len(v):.2f}, IoU "
        f"after / before {sum(q for _, q in v) / len(v):.2f})"
        for (task, method, cls), v in groups.items()
    ]
    return ("Losses it did not warn about: " + "; ".join(parts) + ".") if parts else ""


__all__ = [
    "PUBLISHED_POTSDAM",
    "comparisons",
    "per_class_table",
    "retention_misses",
    "retention_tracking",
    "summary_table",
]
