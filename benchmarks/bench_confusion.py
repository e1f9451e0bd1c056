"""Confusion-matrix update speed on CPU: geociss ConfusionAccumulator vs torchmetrics.

Run: python -m benchmarks.bench_confusion   (writes the "confusion" section of docs/benchmarks.md)
"""

from __future__ import annotations

import platform
import time

import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from benchmarks._report import update_section
from geociss.evaluation import ConfusionAccumulator

CASES = [(6, 8, 256), (6, 4, 512), (21, 4, 512)]  # classes, batch, tile side
REPEATS = 20


def best_ms(metric, pred, target) -> float:
    metric.update(pred, target)
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        metric.update(pred, target)
        times.append(time.perf_counter() - t0)
    return 1000.0 * min(times)


def main() -> None:
    torch.manual_seed(0)
    rows = []
    for c, b, side in CASES:
        target = torch.randint(0, c, (b, side, side))
        target[torch.rand(target.shape) < 0.05] = 255
        pred = torch.randint(0, c, (b, side, side))
        ours = ConfusionAccumulator(c)
        tm_checked = MulticlassConfusionMatrix(c, ignore_index=255)
        tm_fast = MulticlassConfusionMatrix(c, ignore_index=255, validate_args=False)
        t_ours = best_ms(ours, pred, target)
        t_chk = best_ms(tm_checked, pred, target)
        t_fast = best_ms(tm_fast, pred, target)
        ours.reset()
        tm_fast.reset()
        ours.update(pred, target)
        tm_fast.update(pred, target)
        assert (ours.compute() == tm_fast.compute().numpy()).all()
        mpix = b * side * side / 1e6
        rows.append(
            f"| {c} | {b}×{side}² ({mpix:.2f} Mpx) | {t_ours:.2f} | {t_fast:.2f} | {t_chk:.2f} "
            f"| {t_fast / t_ours:.1f}× |"
        )
    md = "\n".join(
        [
            "## Confusion-matrix update (CPU)",
            "",
            "`python -m benchmarks.bench_confusion` — best of "
            f"{REPEATS} `update()` calls, ms; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}. "
            "Identical counts checked.",
            "",
            "| classes | batch | geociss ConfusionAccumulator | torchmetrics (validate_args=False) "
            "| torchmetrics (default) | speed-up vs torchmetrics fast |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
        ]
    )
    update_section("confusion", md)
    print(md)


if __name__ == "__main__":
    main()
