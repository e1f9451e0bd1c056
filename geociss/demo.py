"""``geociss demo``: the whole story on the embedded sample scenes, in minutes on a CPU.

1. write ISPRS-like sample scenes (GeoTIFFs in a projected CRS, palette labels);
2. train step 0 on the base classes (impervious surfaces, building, low vegetation) with an
   ImageNet-pretrained EfficientNet-Lite0 + DeepLab-v3+ (weights from a pip package, offline);
3. add the class "tree" from data labelled for trees only, once with plain fine-tuning and once
   with a class-incremental method (MiB by default): the shared step 0 is trained once;
4. print old / new / all mIoU side by side (fine-tuning forgets the old classes);
5. map a held-out scene (generated apart, with its own seed) with the incremental model into a
   styled GeoTIFF (+ QGIS style);
6. say where everything is and how to open it in QGIS.

Cars and clutter are left out (background in the training labels, as ISPRS clutter is in IDEC's
protocol, and not scored). IDEC's 4-1 story (adding car) does not fit the demo's 3 minutes: with
the pretrained encoder, an incremental step of 64 SGD steps taught no method car (IoU 0.0 for
fine-tuning, MiB and ILT at learning rates 0.001 and 0.01, SGD or AdamW); the cpu benchmark's
4-1 needs a 640-step step 0 on 12 scenes and 192 SGD steps for MiB to reach about 24 % car IoU
(docs/benchmarks.md), several times the demo's budget. A tree-only step shows forgetting and
its remedy in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geociss.bench.presets import PRESETS, VAL_DIR
from geociss.config.experiment import ExperimentConfig

BASE_CLASSES = ("impervious surfaces", "building", "low vegetation")
"""What step 0 learns (impervious surfaces plays the background, as in the ISPRS tasks)."""
NEW_CLASS = "tree"
"""The class added at step 1 from data labelled for it alone."""
LEFT_OUT = ("car", "clutter")
"""Classes no step learns (background in training labels, ignored in the scores)."""
RUN_SUFFIX = "add-tree"
"""Run folders are ``runs/<method>-add-tree``."""


@dataclass(frozen=True)
class DemoSettings:
    """Size of the demo: ``full`` (under 3 minutes on 2 cores) or ``quick`` (tests).

    ``tiles`` training scenes (seed 0) and ``val_tiles`` held-out scenes of their own seed (1).
    """

    tiles: int
    val_tiles: int
    size: int
    patch: int
    samples: int
    epochs: int
    epochs_incremental: int
    batch: int

    @staticmethod
    def of(quick: bool) -> DemoSettings:
        """The quick or the full settings."""
        if quick:
            return DemoSettings(
                tiles=4, val_tiles=1, size=256, patch=64, samples=16, epochs=1,
                epochs_incremental=1, batch=4,
            )
        return DemoSettings(
            tiles=6, val_tiles=2, size=512, patch=128, samples=512, epochs=4,
            epochs_incremental=1, batch=8,
        )


MODEL: dict[str, Any] = PRESETS["cpu"]["model"]
"""The demo's network, the cpu benchmark preset's: ImageNet EfficientNet-Lite0 (pip package,
offline) + DeepLab-v3+ head."""


def demo_config(out: Path, method: str, s: DemoSettings, workers: int) -> ExperimentConfig:
    """The experiment of one demo run (base classes, then ``tree``; pretrained encoder, CPU)."""
    sample = out / "sample"
    return ExperimentConfig.model_validate(
        {
            "name": f"{method}-{RUN_SUFFIX}",
            "out": str(out / "runs"),
            "data": {
                "images": str(sample / "images"),
                "labels": str(sample / "labels"),
                "schema": str(sample / "classes.yaml"),
                "val_images": str(sample / VAL_DIR / "images"),
                "val_labels": str(sample / VAL_DIR / "labels"),
                "patch_size": s.patch,
                "batch_size": s.batch,
                "samples_per_epoch": s.samples,
                "num_workers": workers,
                "eval_tile": 256,
                "eval_overlap": 32,
                "normalization": "imagenet",
                "chip_size": s.patch,
            },
            "model": MODEL,
            "scenario": {
                "steps": [list(BASE_CLASSES), [NEW_CLASS]],
                "unlearned": list(LEFT_OUT),
                "setting": "overlap",
            },
            "method": {"name": method},
            "train": {
                "epochs": s.epochs,
                "epochs_incremental": s.epochs_incremental,
                "optimizer": "adamw",
                "lr": 0.001,
                "lr_incremental": 0.001,
                "freeze_norm_incremental": True,
                "gradient_clip": 5.0,
                "accelerator": "cpu",
            },
        }
    )


def demo_scenes(sample: Path, s: DemoSettings, log: Callable[[Any], None] = print) -> Path:
    """Write the demo's scenes once: ``sample/`` (training, seed 0) and ``sample/val/`` (seed 1).

    Returns:
        ``sample``, which then holds ``images/``, ``labels/``, ``classes.yaml`` and ``val/``.
    """
    from geociss.data.synthetic import generate_scenes

    if not (sample / "classes.yaml").is_file():
        log(f"writing {s.tiles} sample scenes of {s.size} px to {sample}")
        generate_scenes(sample, tiles=s.tiles, size=s.size, seed=0)
    if not (sample / VAL_DIR / "classes.yaml").is_file():
        log(f"writing {s.val_tiles} held-out scene(s) to {sample / VAL_DIR}")
        generate_scenes(sample / VAL_DIR, tiles=s.val_tiles, size=s.size, seed=1)
    return sample


def run_demo(
    out: Path,
    method: str = "mib",
    quick: bool = False,
    workers: int = 2,
    log: Callable[[Any], None] = print,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the demo; return the final scores per method and the output paths."""
    from geociss.engine.runner import ScenarioRunner

    s = DemoSettings.of(quick)
    demo_scenes(out / "sample", s, log)
    results: dict[str, Any] = {}
    runners = {}
    for name in ("finetune", method):
        runner = ScenarioRunner(demo_config(out, name, s, workers), log=log, progress=progress)
        history = runner.run()
        results[name] = history.last.scores
        runners[name] = runner
    outputs = _map_a_scene(runners[method], out, log)
    return {"scores": results, "runs": {k: r.run_dir for k, r in runners.items()}, "maps": outputs}


def _map_a_scene(runner: Any, out: Path, log: Callable[[Any], None]) -> list[Path]:
    """Map a validation scene with the incremental model: styled COG, QML, confidence."""
    from geociss.inference.model import LoadedModel, PredictOptions
    from geociss.inference.run import predict_many

    data = runner.experiment_data()
    scene = data.val_tiles[0].image
    bundle = runner.step_dir(runner.train_scenario.num_steps - 1) / "bundle.safetensors"
    log(f"mapping {scene.name} with {bundle}")
    opts = PredictOptions(tile=256, overlap=64, batch_size=4, confidence=True, workers=0)
    results = predict_many([scene], LoadedModel.from_bundle(bundle), opts, out / "maps")
    return [Path(p) for r in results for p in r.outputs if p.endswith(".tif")]


def comparison_rows(scores: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(method, old, new, all) mIoU in percent, for the demo's table."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    return [(m, pct(sc.miou_old), pct(sc.miou_new), pct(sc.miou_all)) for m, sc in scores.items()]
