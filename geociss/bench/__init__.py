"""The method × task × seed benchmark on the sample scenes (or any data set a user points it at).

For each task and seed, every method runs the whole scenario with the same data, model and
schedule (step 0 is trained once per task and seed and shared through the runner's step-0
cache); joint training is the ceiling. Results per seed are :class:`BenchRow` s;
:mod:`geociss.bench.report` turns them into mean ± sd tables and paired comparisons. The
tables report old / new / all mIoU after the last step, all-mIoU as a fraction of joint, and
the seconds of one training step relative to fine-tuning (a micro-benchmark of the method's
forward + losses + backward on a fixed batch, so that data loading and evaluation do
not blur the method's own cost).

Method specs are registered names (``mib``) or names of method config fragments in
``configs/methods/`` (``idec-no-dada``), which set parameters.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from geociss.bench.cost import step_cost
from geociss.bench.presets import PRESETS, VAL_DIR, describe, sample_scenes
from geociss.bench.records import ResultStore, cell_fingerprint, data_digest
from geociss.bench.rows import per_class_iou, retention_pairs

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_TASKS",
    "IDEC_TASKS",
    "PRESETS",
    "BenchRow",
    "ResultStore",
    "collect",
    "describe",
    "experiment",
    "markdown",
    "method_config",
    "per_class_iou",
    "relative",
    "retention_pairs",
    "run_bench",
    "run_name",
    "sample_scenes",
    "step_cost",
    "task_list",
    "with_costs",
]

DEFAULT_METHODS = "ilt,mib,plop,ucd,dkd,idec,idec-no-dada,idec-no-arcl,idec-no-pseudo"
"""The methods a bench compares unless told: the six methods and the three IDEC ablations
(fine-tuning and joint training are always added)."""

IDEC_TASKS: tuple[str, ...] = ("4-1", "2-3", "2-2-1", "2-1-1-1")
"""The four ISPRS tasks of the IDEC paper (``--tasks all``)."""

DEFAULT_TASKS = "4-1"
"""The tasks a bench runs unless told: with the cpu preset, every method, the IDEC ablation and
3 seeds take about 90 minutes on 2 cores with ``--jobs 3`` on 4-1, and 5-7 hours on all four
IDEC tasks."""


def task_list(spec: str) -> list[str]:
    """The tasks of a ``--tasks`` value: comma-separated names, ``all`` for :data:`IDEC_TASKS`.

    Names keep their order and repeat once; an empty value is a :class:`ConfigError`.
    """
    from geociss.errors import ConfigError

    names: list[str] = []
    for name in (n.strip() for n in spec.split(",")):
        names.extend(IDEC_TASKS if name == "all" else [name] if name else [])
    if not names:
        raise ConfigError(f"--tasks names no task (got {spec!r}; e.g. 4-1 or all)")
    return list(dict.fromkeys(names))


@dataclass
class BenchRow:
    """One method on one task with one seed (per-class IoU of the final model by class name)."""

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
    seed: int = 0
    per_class: dict[str, float | None] = field(default_factory=dict)
    retention: list[dict[str, Any]] = field(default_factory=list)


def run_name(spec: str, preset: str, task: str, seed: int) -> str:
    """Folder name of one cell's run under ``<out>/runs``."""
    return f"{spec}_{preset}_{task}_s{seed}"


def method_config(spec: str, configs: Path | None = None) -> dict[str, Any]:
    """``{name, params}`` of a method spec (registered name or config fragment name)."""
    from geociss.config.load import load_config
    from geociss.methods import get_method

    root = configs or Path(__file__).resolve().parents[2] / "configs"
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
    seed: int = 0,
) -> Any:
    """The experiment config of one benchmark cell (``seed``: ``train.seed``).

    The data are a folder with ``images/``, ``labels/`` and ``classes.yaml`` (``data``; its
    ``val/images`` and ``val/labels``, when present, are the validation tiles), or a
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
        if (data / VAL_DIR / "images").is_dir():
            p["data"].update(
                val_images=str(data / VAL_DIR / "images"),
                val_labels=str(data / VAL_DIR / "labels"),
            )
    else:
        raise ValueError("give the data folder or a data section")
    return ExperimentConfig.model_validate(
        {
            "name": run_name(spec, preset, task, seed),
            "out": str(out),
            "data": p["data"],
            "model": p["model"],
            "scenario": {"task": task, "unlearned": ["clutter"], "setting": "overlap"},
            "method": _with_preset_params(method_config(spec), p.get("method_params", {})),
            "train": {**p["train"], "seed": seed},
        }
    )


def _with_preset_params(cfg: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A method config with the preset's parameter overrides for that method applied."""
    extra = overrides.get(cfg["name"], {})
    return {**cfg, "params": {**cfg.get("params", {}), **extra}} if extra else cfg


def run_bench(
    methods: Sequence[str],
    tasks: Sequence[str],
    preset: str,
    out: Path,
    data: Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = False,
    data_section: dict[str, Any] | None = None,
    seeds: Sequence[int] = (0,),
    measure_costs: bool = True,
    store: ResultStore | None = None,
) -> list[BenchRow]:
    """Run every (task, seed, method) cell (resumable: finished steps are skipped).

    Tasks come first, then seeds, so an interrupted run leaves whole tasks with every seed.
    A cell whose loss turns non-finite (:class:`~geociss.errors.DivergedError`) is a row
    noted ``diverged``; any other error (a locked run folder, bad data) stops the bench.
    Each cell's first log line says how far the bench is (``cell 4 of 33, 12 min so far``).
    Data: ``data_section`` (a config's ``data:`` mapping), else the folder ``data``, else
    sample scenes generated under ``out/sample`` with the preset's size. ``measure_costs``:
    measure each method's step cost first (:func:`step_cost`, a fresh process per method);
    without it the rows carry no step cost. ``store``: take the cells it has recorded for this
    configuration and data instead of running them, and record every cell that finishes
    (:mod:`geociss.bench.records`; needs a data folder, not a data section).
    """
    from geociss.engine.bundle import StepBundle
    from geociss.engine.runner import ScenarioRunner
    from geociss.errors import DivergedError
    from geociss.io import atomic_write_text

    if data is None and data_section is None:
        data = sample_scenes(preset, out / "sample")
    if store is not None and data is None:
        raise ValueError("a result store needs a data folder (its files are fingerprinted)")
    digest = data_digest(data) if store is not None and data is not None else ""
    methods = list(dict.fromkeys(["finetune", *methods, "joint"]))
    rows: list[BenchRow] = []
    costs = {m: step_cost(m, preset) for m in methods if m != "joint"} if measure_costs else {}
    cells, started = len(tasks) * len(seeds) * len(methods), time.monotonic()
    for task in tasks:
        for seed in seeds:
            for spec in methods:
                log(f"bench: {spec} on {task}, seed {seed} (cell {len(rows) + 1} of {cells}, "
                    f"{(time.monotonic() - started) / 60:.0f} min so far)")
                config = experiment(preset, task, spec, data, out / "runs", data_section, seed)
                mark = cell_fingerprint(config, digest) if store is not None else ""
                if store is not None and (kept := store.get(config.name, mark)) is not None:
                    log(f"bench: recorded in {store.path(config.name)}; not run again")
                    rows.append(kept)
                    continue
                runner = ScenarioRunner(config, log=log, progress=progress)
                try:
                    last = runner.run().last
                except DivergedError as err:  # a diverging method is a result, not a crash
                    log(f"bench: {spec} on {task} (seed {seed}) failed: {err}")
                    rows.append(BenchRow(task, spec, None, None, None, note="diverged", seed=seed))
                    if store is not None:
                        store.put(config.name, mark, rows[-1])
                    continue
                scores = last.scores
                final = runner.step_dir(runner.train_scenario.num_steps - 1) / "bundle.safetensors"
                rows.append(
                    BenchRow(
                        task,
                        spec,
                        scores.miou_old,
                        scores.miou_new,
                        scores.miou_all,
                        step_seconds=costs[spec][0] if spec in costs else None,
                        peak_mib=costs[spec][1] if spec in costs else None,
                        seed=seed,
                        per_class=per_class_iou(scores.to_dict()),
                        retention=retention_pairs(StepBundle.load(final)),
                    )
                )
                if store is not None:
                    store.put(config.name, mark, rows[-1])
                relative(rows)
                # whole or not at all: jobs of ``geociss bench --jobs`` write it side by side
                atomic_write_text(
                    out / "bench.json", json.dumps([asdict(r) for r in rows], indent=1)
                )
    return rows


def collect(
    methods: Sequence[str],
    tasks: Sequence[str],
    preset: str,
    out: Path,
    seeds: Sequence[int] = (0,),
    store: ResultStore | None = None,
) -> list[BenchRow]:
    """Rows of the finished cells, from records or from complete run folders.

    A cell recorded in ``store`` (when given) for this configuration and the data ``out/sample``
    (generated when missing, to fingerprint them) comes from its record; any other from the
    last bundle of its complete run folder.
    Serves a partial or interrupted benchmark: ``s/step`` is then the in-run wall time per
    training step of the incremental steps (data loading included), not the micro-benchmark.
    A started cell without a final bundle is reported as ``incomplete``.
    """
    from geociss.engine.bundle import StepBundle

    data = sample_scenes(preset, out / "sample") if store is not None else None
    digest = data_digest(data) if data is not None else ""
    rows: list[BenchRow] = []
    for task in tasks:
        for seed in seeds:
            for spec in list(dict.fromkeys(["finetune", *methods, "joint"])):
                name = run_name(spec, preset, task, seed)
                if data is not None and store is not None:
                    config = experiment(preset, task, spec, data, out / "runs", seed=seed)
                    if (kept := store.get(name, cell_fingerprint(config, digest))) is not None:
                        rows.append(kept)
                        continue
                run = out / "runs" / name
                steps = 1 if spec == "joint" else len(task.split("-"))
                last = run / f"step{steps - 1}" / "bundle.safetensors"
                if not last.is_file():
                    if run.exists():
                        rows.append(
                            BenchRow(task, spec, None, None, None, note="incomplete", seed=seed)
                        )
                    continue
                report = last.parent / "metrics.json"
                split = json.loads(report.read_text()) if report.is_file() else None
                rows.append(_row_from_bundle(StepBundle.load(last), task, spec, seed, split))
    relative(rows)
    return rows


def _row_from_bundle(
    bundle: Any, task: str, spec: str, seed: int, split: dict[str, Any] | None = None
) -> BenchRow:
    """A row from a run's final bundle; ``split``: the run's own step report (metrics.json).

    A joint or step-0 model shared through the step-0 cache stores the scores of the task that
    trained it; the run folder's report holds them with this task's old/new split.
    """
    metrics = split if split is not None else bundle.steps[-1].metrics
    miou = metrics["miou"]
    seconds = sum(s.info.get("train_seconds", 0.0) for s in bundle.steps[1:])
    count = sum(s.info.get("train_steps", 0) for s in bundle.steps[1:])
    return BenchRow(
        task,
        spec,
        miou["old"],
        miou["new"],
        miou["all"],
        step_seconds=seconds / count if count else None,
        seed=seed,
        per_class=per_class_iou(metrics),
        retention=retention_pairs(bundle),
    )


def with_costs(rows: list[BenchRow], costs: dict[str, tuple[float, float]]) -> None:
    """Set each row's step seconds and peak MiB from ``costs`` (by method), then the ratios."""
    for r in rows:
        r.step_seconds, r.peak_mib = costs.get(r.method, (None, None))
    relative(rows)


def relative(rows: list[BenchRow]) -> None:
    """Fill ``of_joint`` and ``step_vs_finetune`` of each row from its task-and-seed cell."""
    for task, seed in {(r.task, r.seed) for r in rows}:
        cell = {r.method: r for r in rows if r.task == task and r.seed == seed}
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
