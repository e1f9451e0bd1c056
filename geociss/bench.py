"""The method × task benchmark on the sample scenes (or any data set the user points it at).

For each task, every method runs the whole scenario with the same data, model and schedule (step
0 is trained once per task and shared through the runner's step-0 cache); joint training is the
ceiling. The table reports old / new / all mIoU after the last step, all-mIoU as a fraction of
joint, and the seconds of one training step relative to fine-tuning (a micro-benchmark of the
method's forward + losses + backward on a fixed batch, so that data loading and evaluation do
not blur the method's own cost).

Method specs are registered names (``mib``) or names of method config fragments in
``configs/methods/`` (``idec-no-dada``), which set parameters.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
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
            # at lr 0.005 on features trained from scratch, ILT's 100 · feature MSE and PLOP's
            # POD grow the gradient norm ×10-×40 per step until the loss is inf within 3-6 steps
            # (docs/benchmarks.md); MiB's gradient norm stays at 1-2, so the clip only catches
            # blow-ups
            "gradient_clip": 5.0,
            "accelerator": "cpu",
        },
        # distillation weights for an encoder trained from scratch (METHODS.md §5.9). With the
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


def describe(preset: str) -> str:
    """One sentence stating a preset's data, model and schedule (for reports)."""
    p = PRESETS[preset]
    d, m, t = p["data"], p["model"], p["train"]
    weights = ", ".join(f"{k} ×{v:g}" for k, v in (d.get("class_weights") or {}).items())
    parts = [
        f"{m['encoder']} encoder (weights {m.get('weights', 'imagenet')}, output stride "
        f"{m.get('output_stride', 16)}) on {t.get('accelerator', 'auto')}",
        f"{p['sample']['tiles']} sample scenes of {p['sample']['size']} px "
        f"({d['val_fraction']:.0%} held out for validation)",
        f"{d['samples_per_epoch']} random {d['patch_size']}-px windows per epoch, batch "
        f"{d['batch_size']}" + (f", class-weighted sampling ({weights})" if weights else ""),
    ]
    if d.get("chip_size"):
        parts.append(f"each step trains on the {d['chip_size']}-px chips holding its classes")
    parts.append(
        f"{t['epochs']} epochs at step 0 and for joint (lr {t['lr']:g}), "
        f"{t.get('epochs_incremental', t['epochs'])} per incremental step "
        f"(lr {t.get('lr_incremental', 0.001):g}"
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


@dataclass
class BenchRow:
    """One method on one task."""

    task: str
    method: str
    old: float | None
    new: float | None
    all: float | None
    of_joint: float | None = None
    step_seconds: float | None = None
    step_vs_finetune: float | None = None
    peak_mib: float | None = None
    note: str = ""


def method_config(spec: str, configs: Path | None = None) -> dict[str, Any]:
    """``{name, params}`` of a method spec (registered name or config fragment name)."""
    from geociss.config.load import load_config
    from geociss.methods import get_method

    root = configs or Path(__file__).resolve().parents[1] / "configs"
    fragment = root / "methods" / f"{spec}.yaml"
    if fragment.is_file():
        return dict(load_config(fragment)["method"])
    get_method(spec)  # raises a clear error listing the registered names
    return {"name": spec, "params": {}}


def experiment(
    preset: str,
    task: str,
    spec: str,
    data: Path | None,
    out: Path,
    data_section: dict[str, Any] | None = None,
) -> Any:
    """The experiment config of one benchmark cell.

    The data are a folder with ``images/``, ``labels/`` and ``classes.yaml`` (``data``), or a
    ``data:`` section of an experiment config (``data_section``, e.g. ISPRS Potsdam read from
    its archives): its keys override the preset's data settings.
    """
    from geociss.config.experiment import ExperimentConfig

    p = copy.deepcopy(PRESETS[preset])
    if data_section is not None:
        p["data"].update(data_section)
    elif data is not None:
        p["data"].update(
            images=str(data / "images"),
            labels=str(data / "labels"),
            schema=str(data / "classes.yaml"),
        )
    else:
        raise ValueError("give the data folder or a data section")
    return ExperimentConfig.model_validate(
        {
            "name": f"{spec}_{preset}_{task}",
            "out": str(out),
            "data": p["data"],
            "model": p["model"],
            "scenario": {"task": task, "unlearned": ["clutter"], "setting": "overlap"},
            "method": _with_preset_params(method_config(spec), p.get("method_params", {})),
            "train": p["train"],
        }
    )


def _with_preset_params(cfg: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A method config with the preset's parameter overrides for that method applied."""
    extra = overrides.get(cfg["name"], {})
    return {**cfg, "params": {**cfg.get("params", {}), **extra}} if extra else cfg


def step_cost(spec: str, preset: str, repeats: int = 5) -> tuple[float, float]:
    """Median seconds and peak memory (MiB) of one training step of a method at step 1.

    Measured on a fixed batch with the 4-1 channels, in a fresh process so that the memory
    peak is the method's own: on CPU the growth of the process's peak resident set (VmHWM)
    over its size just before the first step, on CUDA ``torch.cuda.max_memory_allocated``.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_step_cost, spec, preset, repeats).result()


def _peak_rss_mib() -> float:
    """VmHWM of this process in MiB (Linux), or ru_maxrss elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _step_cost(spec: str, preset: str, repeats: int) -> tuple[float, float]:
    """Body of :func:`step_cost`, run in the child process."""
    import torch

    from geociss.engine.augment import AugmentConfig, BatchAugment
    from geociss.methods import get_method
    from geociss.methods.base import StepContext
    from geociss.models.config import ModelConfig
    from geociss.models.segmenter import SegmentationModel

    p = PRESETS[preset]
    cfg = method_config(spec)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    teacher = SegmentationModel(ModelConfig(**{**p["model"], "weights": "none"}), [4])
    teacher = teacher.to(device).eval().requires_grad_(False)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    student.add_step(1)
    student.to(device)
    method = get_method(cfg["name"]).from_config(cfg.get("params", {}), StepContext(1, (4, 1)))
    method.init_new_classifier(student, teacher)
    method.configure_model(student)
    method.to(device)
    size, b = p["data"]["patch_size"], p["data"]["batch_size"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, 3, size, size, generator=g).to(device)
    y = torch.randint(0, 5, (b, size, size), generator=g).to(device)
    if method.needs_prepass:
        method.prepass(teacher, [{"image": x, "mask": y}])
    opt = torch.optim.SGD([q for q in student.parameters() if q.requires_grad], lr=1e-4)
    aug = BatchAugment(AugmentConfig())
    before = _peak_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        xa, ya = aug(x, y, g)
        out = student(xa, features=method.student_features())
        old = None
        if method.uses_teacher():
            with torch.no_grad():
                old = teacher(xa, features=method.teacher_features())
        loss = sum(method.losses({"image": xa, "mask": ya}, out, old).values())
        opt.zero_grad()
        loss.backward()  # type: ignore[union-attr]
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = _peak_rss_mib() - before
    return float(sorted(times[1:])[len(times[1:]) // 2]), float(peak)


def run_bench(
    methods: Sequence[str],
    tasks: Sequence[str],
    preset: str,
    out: Path,
    data: Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = False,
    data_section: dict[str, Any] | None = None,
) -> list[BenchRow]:
    """Run every (task, method) cell (resumable: finished steps are skipped).

    Data: ``data_section`` (a config's ``data:`` mapping), else the folder ``data``, else
    sample scenes generated under ``out/sample`` with the preset's size.
    """
    from geociss.data.synthetic import generate_scenes
    from geociss.engine.runner import ScenarioRunner
    from geociss.errors import GeocissError

    if data is None and data_section is None:
        data = out / "sample"
        if not (data / "classes.yaml").is_file():
            generate_scenes(data, **PRESETS[preset]["sample"])
    methods = list(dict.fromkeys(["finetune", *methods, "joint"]))
    rows: list[BenchRow] = []
    costs = {m: step_cost(m, preset) for m in methods if m != "joint"}
    for task in tasks:
        for spec in methods:
            log(f"bench: {spec} on {task}")
            runner = ScenarioRunner(
                experiment(preset, task, spec, data, out / "runs", data_section),
                log=log,
                progress=progress,
            )
            try:
                scores = runner.run().last.scores
            except GeocissError as err:  # a diverging method is a result, not a crash
                log(f"bench: {spec} on {task} failed: {err}")
                rows.append(BenchRow(task, spec, None, None, None, note="diverged"))
                continue
            rows.append(
                BenchRow(
                    task,
                    spec,
                    scores.miou_old,
                    scores.miou_new,
                    scores.miou_all,
                    step_seconds=costs[spec][0] if spec in costs else None,
                    peak_mib=costs[spec][1] if spec in costs else None,
                )
            )
    _relative(rows)
    (out / "bench.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return rows


def collect(methods: Sequence[str], tasks: Sequence[str], preset: str, out: Path) -> list[BenchRow]:
    """Rows of the cells whose run folders are complete, read back from their last bundles.

    Serves a partial or interrupted benchmark: ``s/step`` is then the in-run wall time per
    training step of the incremental steps (data loading included), not the micro-benchmark.
    A started cell without a final bundle is reported as ``incomplete``.
    """
    from geociss.engine.bundle import StepBundle

    rows: list[BenchRow] = []
    for task in tasks:
        for spec in list(dict.fromkeys(["finetune", *methods, "joint"])):
            run = out / "runs" / f"{spec}_{preset}_{task}"
            steps = 1 if spec == "joint" else len(task.split("-"))
            last = run / f"step{steps - 1}" / "bundle.safetensors"
            if not last.is_file():
                if run.exists():
                    rows.append(BenchRow(task, spec, None, None, None, note="incomplete"))
                continue
            bundle = StepBundle.load(last)
            miou = bundle.steps[-1].metrics["miou"]
            seconds = sum(s.info.get("train_seconds", 0.0) for s in bundle.steps[1:])
            count = sum(s.info.get("train_steps", 0) for s in bundle.steps[1:])
            rows.append(
                BenchRow(
                    task,
                    spec,
                    miou["old"],
                    miou["new"],
                    miou["all"],
                    step_seconds=seconds / count if count else None,
                )
            )
    _relative(rows)
    return rows


def _relative(rows: list[BenchRow]) -> None:
    for task in {r.task for r in rows}:
        cell = {r.method: r for r in rows if r.task == task}
        joint, ft = cell.get("joint"), cell.get("finetune")
        for r in cell.values():
            if joint and joint.all and r.all is not None:
                r.of_joint = r.all / joint.all
            if ft and ft.step_seconds and r.step_seconds:
                r.step_vs_finetune = r.step_seconds / ft.step_seconds


def markdown(rows: Sequence[BenchRow]) -> str:
    """The results as a markdown table (mIoU in %)."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = [
        "| task | method | old | new | all | all / joint | s/step | vs fine-tune | peak MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.task} | {r.method}{f' ({r.note})' if r.note else ''} | "
            f"{pct(r.old)} | {pct(r.new)} | {pct(r.all)} | "
            f"{num(r.of_joint, '.2f')} | {num(r.step_seconds, '.3f')} | "
            f"{num(r.step_vs_finetune, '.2f')} | {num(r.peak_mib, '.0f')} |"
        )
    return "\n".join(lines)
