"""Benchmark presets: data, model and schedule of the ``small`` (CPU) and ``paper`` (GPU) runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

VAL_DIR = "val"
"""Subfolder of a data folder whose images/ and labels/ are the validation tiles."""

PRESETS: dict[str, dict[str, Any]] = {
    # the default: an ImageNet-pretrained EfficientNet-Lite0 (weights from a pip package, offline)
    # with a DeepLab-v3+ head, sized so that every method × the four IDEC tasks × 3 seeds fits
    # a 2-core CPU; the methods keep the papers' hyper-parameters
    "cpu": {
        # 12 training scenes and 4 held-out scenes of their own seed. With 8 scenes split by
        # the stems' hash, 4 scenes held 16 training cars while one held-out scene held a car
        # park with 83 % of the validation cars: joint car IoU then swung from 6 to 28 % with
        # the seed (docs/benchmarks.md)
        "sample": {"tiles": 12, "size": 640, "seed": 0},
        "val_sample": {"tiles": 4, "seed": 1},
        "data": {
            "patch_size": 128,
            "batch_size": 8,
            "samples_per_epoch": 512,
            "num_workers": 0,
            # 64-px chips under 128-px windows: a window may sit anywhere that holds its whole
            # chip (65² positions); with chips as large as the windows every window sat on the
            # chip grid (150 distinct windows in the 6 training scenes) and joint training
            # reached 58.8 % all-mIoU (car 16.9) instead of 67.7 (car 28.0), docs/benchmarks.md
            "chip_size": 64,
            # a chip's drawing weight is Σ w_c · pixels_c. Joint car IoU was limited by recall
            # (seed 0 at ×30: precision 88 %, recall 37 %); car ×100 instead of ×30: 47.1 %
            # instead of 33.3 (3 seeds, +13.8 each), all-mIoU 72.3 instead of 71.2; ×8: 15.2
            # (earlier split, seed 0)
            "class_weights": {"car": 100.0},
            "eval_tile": 320,
            "eval_overlap": 32,
            "val_fraction": 0.25,
            "normalization": "imagenet",
        },
        "model": {
            "encoder": "efficientnet_lite0",
            "weights": "imagenet",
            "decoder": "deeplabv3plus",
            "aspp_channels": 96,
            "decoder_low_channels": 32,
            "decoder_convs": 1,
        },
        "train": {
            "epochs": 10,
            "epochs_incremental": 3,
            # step 0 and joint: AdamW (SGD at the papers' lr 0.01 learns car to 10 % IoU in 384
            # steps, AdamW at 1e-3 to 31 %); steps >= 1: the papers' SGD, at 10× their lr (at
            # 0.001 no method learns car in 64 steps); see docs/benchmarks.md
            "optimizer": "adamw",
            "lr": 0.001,
            "lr_incremental": 0.01,
            # without both guards ILT's loss turns non-finite within 8-16 steps (docs)
            "freeze_norm_incremental": True,
            "gradient_clip": 5.0,
            "accelerator": "cpu",
        },
    },
    # the from-scratch ablation: the tiny encoder, trained from random weights
    "small": {
        "sample": {"tiles": 8, "size": 640, "seed": 0},
        "data": {
            "patch_size": 256,
            "batch_size": 8,
            "samples_per_epoch": 256,
            "num_workers": 1,
            # steps select 128-px chips holding their classes (IDEC selects 600-px patches of
            # 6000-px tiles): a 640-px scene holds a few cars, and whole-scene selection would
            # feed the car step mostly car-free windows
            "chip_size": 128,
            "class_weights": {"car": 8.0},
            "eval_tile": 320,
            "eval_overlap": 32,
            "val_fraction": 0.25,
        },
        "model": {
            "encoder": "tiny",
            "weights": "none",
            "aspp_channels": 64,
            "norm": "group",
            "norm_groups": 16,
        },
        "train": {
            "epochs": 10,
            "epochs_incremental": 4,
            "lr": 0.01,
            "lr_incremental": 0.005,
            "freeze_norm_incremental": True,
            # at lr 0.005 on features trained from scratch, ILT's 100 · feature MSE diverges
            # within 3 steps and PLOP's POD lifts the gradient norm to 100-300 (MiB: 2-28), see
            # docs/benchmarks.md and benchmarks/diag_incremental.py
            "gradient_clip": 5.0,
            "accelerator": "cpu",
        },
        # distillation weights for an encoder trained from scratch, not the papers'. With the
        # papers' weights (tuned on ImageNet features) on task 2-2-1: PLOP's POD at 0.01 collapses
        # at the car step (old/new mIoU 17.4/8.4, fine-tune 17.0/0); at 0.001 it gives 40.1/24.5.
        # ILT's 100 · encoder MSE pins the features (30.6/5.9); at 10: 35.8/17.2.
        "method_params": {
            "plop": {"pod_factor": 0.001, "pod_logits_factor": 0.00005},
            "ilt": {"feature_weight": 10.0},
        },
    },
    "paper": {
        "sample": {"tiles": 24, "size": 1536, "seed": 0},
        "data": {
            "patch_size": 512,
            "batch_size": 12,
            "samples_per_epoch": 2300,
            "num_workers": 8,
            "class_weights": {"car": 4.0},
            "eval_tile": 600,
            "eval_overlap": 64,
            "val_fraction": 0.25,
        },
        "model": {"encoder": "resnet101", "weights": "imagenet", "output_stride": 16},
        "train": {"epochs": 30, "lr": 0.01, "lr_incremental": 0.001, "precision": "auto"},
    },
}


def sample_scenes(preset: str, folder: Path) -> Path:
    """Generate a preset's sample scenes in ``folder`` (once) and return it.

    ``folder`` gets ``images/``, ``labels/`` and ``classes.yaml``; a preset with a
    ``val_sample`` also gets ``val/`` (the same layout): scenes of their own seed that
    :func:`geociss.bench.experiment` uses as the validation tiles.
    """
    from geociss.data.synthetic import generate_scenes

    p = PRESETS[preset]
    if not (folder / "classes.yaml").is_file():
        generate_scenes(folder, **p["sample"])
    val = p.get("val_sample")
    if val and not (folder / VAL_DIR / "classes.yaml").is_file():
        generate_scenes(folder / VAL_DIR, size=p["sample"]["size"], **val)
    return folder


def describe(preset: str) -> str:
    """One sentence stating a preset's data, model and schedule (for reports)."""
    p = PRESETS[preset]
    d, m, t = p["data"], p["model"], p["train"]
    weights = ", ".join(f"{k} ×{v:g}" for k, v in (d.get("class_weights") or {}).items())
    parts = [
        f"{m['encoder']} encoder (weights {m.get('weights', 'imagenet')}, output stride "
        f"{m.get('output_stride', 16)}, {m.get('decoder', 'deeplabv3')} head) on "
        f"{t.get('accelerator', 'auto')}",
        f"{p['sample']['tiles']} sample scenes of {p['sample']['size']} px "
        + (
            f"({p['val_sample']['tiles']} more, of seed {p['val_sample']['seed']}, held out "
            "for validation)"
            if p.get("val_sample")
            else f"({d['val_fraction']:.0%} held out for validation)"
        ),
        f"{d['samples_per_epoch']} random {d['patch_size']}-px windows per epoch, batch "
        f"{d['batch_size']}"
        + (f", class-weighted sampling ({weights})" if weights else "")
        + f", {d.get('normalization', 'bands')} input scaling",
    ]
    if d.get("chip_size"):
        parts.append(f"each step trains on the {d['chip_size']}-px chips holding its classes")
    parts.append(
        f"{t['epochs']} epochs at step 0 and for joint ({t.get('optimizer', 'sgd')}, lr "
        f"{t['lr']:g}), {t.get('epochs_incremental', t['epochs'])} per incremental step "
        f"({t.get('optimizer_incremental', 'sgd')}, lr {t.get('lr_incremental', 0.001):g}"
        + (", normalisation frozen" if t.get("freeze_norm_incremental") else "")
        + (f", gradient norm clipped at {t['gradient_clip']:g}" if t.get("gradient_clip") else "")
        + ")"
    )
    tuned = p.get("method_params", {})
    if tuned:
        parts.append(
            "distillation weights for a from-scratch encoder: "
            + ", ".join(
                f"{m} " + " ".join(f"{k} {v:g}" for k, v in kv.items()) for m, kv in tuned.items()
            )
        )
    return "Settings: " + "; ".join(parts) + "."


__all__ = ["PRESETS", "describe"]
