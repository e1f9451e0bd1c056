"""The evidence behind the cpu preset's schedule: one scenario run per variant, scores printed.

Run: python -m benchmarks.diag_cpu_preset joint        (step 0 of joint training: optimiser,
                                                        input scaling, car sampling weight)
     python -m benchmarks.diag_cpu_preset incremental  (task 4-1, step 1: learning rate,
                                                        optimiser, epochs, norm/clip guards)

Each variant is the cpu preset (geociss.bench.presets) with the named overrides; step 0 of the
incremental variants is the preset's own and is shared through the step-0 cache. Results are
printed as one line per variant: seconds, old / new / all mIoU and per-class IoU (%).
"""

import argparse
import time
from pathlib import Path
from typing import Any

from geociss.bench import experiment, per_class_iou, sample_scenes

NO_CLIP = {"gradient_clip": None}
JOINT: dict[str, dict[str, Any]] = {
    "sgd lr 0.01, car ×4, per-band scaling": {
        "train": {"optimizer": "sgd", "lr": 0.01, "epochs": 6, **NO_CLIP},
        "data": {"class_weights": {"car": 4.0}, "normalization": "bands"},
    },
    "sgd lr 0.01, car ×4, imagenet scaling": {
        "train": {"optimizer": "sgd", "lr": 0.01, "epochs": 6, **NO_CLIP},
        "data": {"class_weights": {"car": 4.0}},
    },
    "sgd lr 0.01, car ×30": {"train": {"optimizer": "sgd", "lr": 0.01, "epochs": 6, **NO_CLIP}},
    "adamw lr 0.001, car ×30, 6 epochs": {"train": {"epochs": 6, **NO_CLIP}},
    "adamw lr 0.001, car ×30, 10 epochs": {"train": NO_CLIP},
    "adamw lr 0.001, car ×30, 10 epochs, clip 5, 128-px chips": {"data": {"chip_size": 128}},
    "adamw lr 0.001, car ×30, 10 epochs, clip 5, 64-px chips": {"data": {"chip_size": 64}},
    "adamw lr 0.001, car ×8, 10 epochs, clip 5, 64-px chips": {
        "data": {"chip_size": 64, "class_weights": {"car": 8.0}},
    },
    "adamw lr 0.001, car ×30, 10 epochs, 64-px chips": {
        "data": {"chip_size": 64}, "train": NO_CLIP,
    },
    "adamw lr 0.001, car ×30, 10 epochs, clip 5 (preset)": {},
    # context: a 128-px window inside a 300-px grey roof cannot tell roof from car park
    "192-px windows, 96-px chips": {"data": {"patch_size": 192, "chip_size": 96}},
    "20 epochs": {"train": {"epochs": 20}},
    # joint car IoU is limited by recall (seed 0: precision 88 %, recall 37 %)
    "car ×100": {"data": {"class_weights": {"car": 100.0}}},
}
INCREMENTAL: dict[str, dict[str, Any]] = {
    "sgd 0.001, 1 epoch, norms trained, no clip": {
        "train": {"lr_incremental": 0.001, "epochs_incremental": 1,
                  "freeze_norm_incremental": False, "gradient_clip": None},
    },
    "sgd 0.001, 1 epoch": {"train": {"lr_incremental": 0.001, "epochs_incremental": 1}},
    "sgd 0.01, 1 epoch": {"train": {"epochs_incremental": 1}},
    "adamw 0.001, 1 epoch": {
        "train": {"optimizer_incremental": "adamw", "lr_incremental": 0.001,
                  "epochs_incremental": 1},
    },
    "sgd 0.01, 3 epochs (preset)": {},
}


def run(
    kind: str, name: str, overrides: dict[str, Any], method: str, out: Path, seed: int = 0
) -> str:
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
        return f"| {name} | {method} | failed: {err} |"
    classes = per_class_iou(scores.to_dict())

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    return (
        f"| {name} | {method} | {time.time() - start:.0f} | {pct(scores.miou_old)} / "
        f"{pct(scores.miou_new)} / {pct(scores.miou_all)} | "
        + " | ".join(pct(classes.get(c)) for c in CLASSES)
        + " |"
    )


CLASSES = ["impervious surfaces", "building", "low vegetation", "tree", "car"]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["joint", "incremental"])
    ap.add_argument("--methods", default="finetune,mib,ilt", help="incremental only")
    ap.add_argument("--out", default="diag-cpu-preset")
    ap.add_argument("--only", default="", help="run only the variants whose name contains this")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    sample_scenes("cpu", out / "sample")
    print("| variant | method | s | old / new / all | " + " | ".join(CLASSES) + " |")
    print("| --- | --- | ---: | --- |" + " ---: |" * len(CLASSES))
    variants = JOINT if args.kind == "joint" else INCREMENTAL
    methods = ["joint"] if args.kind == "joint" else args.methods.split(",")
    for name, overrides in variants.items():
        if args.only not in name:
            continue
        for method in methods:
            print(run(args.kind, name, overrides, method, out, args.seed), flush=True)


if __name__ == "__main__":
    main()
