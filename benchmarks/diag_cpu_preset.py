"""The evidence behind the cpu preset's schedule: one scenario run per variant, scores printed.

Run: python -m benchmarks.diag_cpu_preset joint        (step 0 of joint training: optimiser,
                                                        input scaling, car sampling weight)
     python -m benchmarks.diag_cpu_preset incremental  (task 4-1, step 1: learning rate,
                                                        optimiser, epochs, norm/clip guards)

Each variant is the cpu preset (geociss.bench.presets) with the named overrides; step 0 of the
incremental variants is the preset's own and is shared through the step-0 cache. Results are
printed as one line per variant and seed: seconds, old / new / all mIoU and per-class IoU (%).
With ``--seeds 0,1,2 --against NAME`` every variant also gets its paired difference against the
variant NAME over the seeds (all-mIoU and each class, 95 % interval), e.g.

    OMP_NUM_THREADS=1 python -m benchmarks.diag_cpu_preset joint --only "car ×100" \
        --seeds 0,1,2 --against "adamw lr 0.001, car ×30, 10 epochs, clip 5 (preset ×30)"

Runs of the same variant, seed and thread count give the same model; compare like with like.
"""

import argparse
import time
from pathlib import Path
from typing import Any

from geociss.bench import experiment, per_class_iou, sample_scenes

NO_CLIP = {"gradient_clip": None}
C30 = {"class_weights": {"car": 30.0}}  # the car weight of every variant before "car ×100"
JOINT: dict[str, dict[str, Any]] = {
    "sgd lr 0.01, car ×4, per-band scaling": {
        "train": {"optimizer": "sgd", "lr": 0.01, "epochs": 6, **NO_CLIP},
        "data": {"class_weights": {"car": 4.0}, "normalization": "bands"},
    },
    "sgd lr 0.01, car ×4, imagenet scaling": {
        "train": {"optimizer": "sgd", "lr": 0.01, "epochs": 6, **NO_CLIP},
        "data": {"class_weights": {"car": 4.0}},
    },
    "sgd lr 0.01, car ×30": {
        "train": {"optimizer": "sgd", "lr": 0.01, "epochs": 6, **NO_CLIP},
        "data": C30,
    },
    "adamw lr 0.001, car ×30, 6 epochs": {"train": {"epochs": 6, **NO_CLIP}, "data": C30},
    "adamw lr 0.001, car ×30, 10 epochs": {"train": NO_CLIP, "data": C30},
    "adamw lr 0.001, car ×30, 10 epochs, clip 5, 128-px chips": {
        "data": {"chip_size": 128, **C30},
    },
    "adamw lr 0.001, car ×30, 10 epochs, clip 5, 64-px chips": {"data": {"chip_size": 64, **C30}},
    "adamw lr 0.001, car ×8, 10 epochs, clip 5, 64-px chips": {
        "data": {"chip_size": 64, "class_weights": {"car": 8.0}},
    },
    "adamw lr 0.001, car ×30, 10 epochs, 64-px chips": {
        "data": {"chip_size": 64, **C30},
        "train": NO_CLIP,
    },
    "adamw lr 0.001, car ×30, 10 epochs, clip 5 (preset ×30)": {"data": C30},
    # context: a 128-px window inside a 300-px grey roof cannot tell roof from car park
    "192-px windows, 96-px chips": {"data": {"patch_size": 192, "chip_size": 96, **C30}},
    "20 epochs": {"train": {"epochs": 20}, "data": C30},
    # joint car IoU is limited by recall (seed 0: precision 88 %, recall 37 %)
    "car ×100": {"data": {"class_weights": {"car": 100.0}}},
}
INCREMENTAL: dict[str, dict[str, Any]] = {
    "sgd 0.001, 1 epoch, norms trained, no clip": {
        "train": {
            "lr_incremental": 0.001,
            "epochs_incremental": 1,
            "freeze_norm_incremental": False,
            "gradient_clip": None,
        },
    },
    "sgd 0.001, 1 epoch": {"train": {"lr_incremental": 0.001, "epochs_incremental": 1}},
    "sgd 0.01, 1 epoch": {"train": {"epochs_incremental": 1}},
    "adamw 0.001, 1 epoch": {
        "train": {
            "optimizer_incremental": "adamw",
            "lr_incremental": 0.001,
            "epochs_incremental": 1,
        },
    },
    "sgd 0.01, 3 epochs (preset)": {},
}


Result = dict[str, float | None]
"""One run's scores: ``all`` (all-mIoU) and the per-class IoU of :data:`CLASSES` (fractions)."""


def run(
    kind: str, name: str, overrides: dict[str, Any], method: str, out: Path, seed: int = 0
) -> tuple[str, Result | None]:
    """One variant's scenario run: its table line and its scores (None when it failed)."""
    from geociss.engine.runner import ScenarioRunner
    from geociss.errors import GeocissError

    task = "4-1"
    cfg = experiment(
        "cpu", task, method, out / "sample", out / "runs" / _slug(f"{name} s{seed}"), seed=seed
    )
    cfg = cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update=overrides.get("data", {})),
            "train": cfg.train.model_copy(update=overrides.get("train", {})),
        }
    )
    if kind == "incremental":  # share the preset's step 0
        cache = out / "runs" / "step0-cache"
        cache.mkdir(parents=True, exist_ok=True)
        link = cfg.out / ".step0"
        cfg.out.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(cache.resolve())
    start = time.time()
    try:
        scores = ScenarioRunner(cfg, log=lambda m: None).run().last.scores
    except GeocissError as err:
        return f"| {name} | {method} | s{seed} | failed: {err} |", None
    classes = per_class_iou(scores.to_dict())
    line = (
        f"| {name} | {method} | s{seed} | {time.time() - start:.0f} | {_pct(scores.miou_old)} / "
        f"{_pct(scores.miou_new)} / {_pct(scores.miou_all)} | "
        + " | ".join(_pct(classes.get(c)) for c in CLASSES)
        + " |"
    )
    return line, {"all": scores.miou_all, **{c: classes.get(c) for c in CLASSES}}


CLASSES = ["impervious surfaces", "building", "low vegetation", "tree", "car"]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def paired_summary(results: dict[tuple[str, str], dict[int, Result]], against: str) -> list[str]:
    """Each variant against the variant ``against`` (same method), paired over seeds.

    One table line per variant and method: the mean of all-mIoU and of each class's IoU, and
    the paired difference with its 95 % interval (:func:`geociss.bench.stats.paired_difference`).
    """
    from geociss.bench.stats import paired_difference

    keys = ["all", *CLASSES]
    lines = [
        f"| variant | method | vs {against}: "
        + " | ".join(f"{k} Δ [95 % CI]" for k in keys)
        + " |",
        "| --- | --- |" + " --- |" * len(keys),
    ]
    for (name, method), by_seed in results.items():
        base = results.get((against, method))
        if name == against or base is None:
            continue
        parts = [
            paired_difference(
                {s: r[k] for s, r in by_seed.items()}, {s: r[k] for s, r in base.items()}
            ).show(verdict=False)
            for k in keys
        ]
        lines.append(f"| {name} | {method} | " + " | ".join(parts) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["joint", "incremental"])
    ap.add_argument("--methods", default="finetune,mib,ilt", help="incremental only")
    ap.add_argument("--out", default="diag-cpu-preset")
    ap.add_argument("--only", default="", help="run only the variants whose name contains this")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    ap.add_argument(
        "--against",
        default="",
        help="a variant name: after the runs, print every other variant's paired difference "
        "against it over the seeds (it runs even when --only leaves it out)",
    )
    args = ap.parse_args()
    out = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = JOINT if args.kind == "joint" else INCREMENTAL
    if args.against and args.against not in variants:
        ap.error(f"--against: no {args.kind} variant named {args.against!r}")
    sample_scenes("cpu", out / "sample")
    print("| variant | method | seed | s | old / new / all | " + " | ".join(CLASSES) + " |")
    print("| --- | --- | --- | ---: | --- |" + " ---: |" * len(CLASSES))
    methods = ["joint"] if args.kind == "joint" else args.methods.split(",")
    results: dict[tuple[str, str], dict[int, Result]] = {}
    for name, overrides in variants.items():
        if args.only not in name and name != args.against:
            continue
        for method in methods:
            for seed in seeds:
                line, scores = run(args.kind, name, overrides, method, out, seed)
                print(line, flush=True)
                if scores is not None:
                    results.setdefault((name, method), {})[seed] = scores
    if args.against:
        print()
        print("\n".join(paired_summary(results, args.against)))


if __name__ == "__main__":
    main()
