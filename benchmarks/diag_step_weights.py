"""How much a class weight steers each step's windows: share of draws from chips holding a class.

Run: python -m benchmarks.diag_step_weights [--task 4-1] [--weight 100] [--out diag-step-weights]

For each step of the cpu preset's scenario (sample scenes of the preset), the expected share
of window draws that come from chips holding car, and the mean share of car pixels in a drawn
chip, (a) with the car weight applied at every step (geociss before the fix) and (b) as
geociss draws now (the weight only where the step labels car). Draw probability is
proportional to the region weight (geociss.data.samplers.region_weights), so these shares are
exact expectations, not samples.
"""

import argparse
from pathlib import Path

import numpy as np

from geociss.bench import experiment, sample_scenes
from geociss.data.samplers import region_weights
from geociss.engine.data import step_weights
from geociss.engine.runner import ScenarioRunner


def shares(regions, weights, cls: int) -> tuple[float, float]:
    """(share of draws from regions holding ``cls``, mean share of ``cls`` pixels per draw)."""
    w = region_weights(regions, weights)
    hist = np.stack([r.hist for r in regions]).astype(float)
    holds = hist[:, cls] > 0
    frac = hist[:, cls] / np.maximum(hist.sum(1), 1)
    return float(w[holds].sum() / w.sum()), float((w * frac).sum() / w.sum())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="4-1")
    ap.add_argument("--weight", type=float, default=100.0)
    ap.add_argument("--out", default="diag-step-weights")
    args = ap.parse_args()
    out = Path(args.out)
    cfg = experiment("cpu", args.task, "finetune", sample_scenes("cpu", out / "sample"), out)
    cfg = cfg.model_copy(
        update={"data": cfg.data.model_copy(update={"class_weights": {"car": args.weight}})}
    )
    runner = ScenarioRunner(cfg, log=lambda m: None)
    data, scenario, schema = runner.experiment_data(), runner.train_scenario, runner.schema
    car = schema.class_id("car")
    print(f"| {args.task} step | regions | none | car ×{args.weight:g} everywhere | as drawn now |")
    print("| --- | ---: | --- | --- | --- |")
    for step in range(scenario.num_steps):
        regions = data.step_regions(scenario, step)
        now = step_weights(scenario, step, False, cfg.data.class_weights)  # as finetune draws
        cells = [
            shares(regions, w and {schema.class_id(k): v for k, v in w.items()}, car)
            for w in (None, cfg.data.class_weights, now)
        ]
        print(
            f"| {step} | {len(regions)} | "
            + " | ".join(
                f"{100 * a:.0f} % of draws, car {100 * b:.1f} % of pixels" for a, b in cells
            )
            + " |"
        )


if __name__ == "__main__":
    main()
