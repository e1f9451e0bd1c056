"""Cost of one training step of a method: median seconds and peak memory, in a fresh process."""

from __future__ import annotations

import copy
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from geociss.bench.presets import PRESETS


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


def interleaved_costs(
    specs: Sequence[str], preset: str, rounds: int = 3, repeats: int = 5
) -> dict[str, tuple[float, float]]:
    """Median seconds and peak memory per method over ``rounds`` rounds of :func:`step_cost`.

    Every round measures every method once, in the same order, so that a change in the
    machine's load falls on all of them alike (a shared machine drifts over minutes).
    """
    seconds: dict[str, list[float]] = {s: [] for s in specs}
    peaks: dict[str, list[float]] = {s: [] for s in specs}
    for _ in range(rounds):
        for spec in specs:
            sec, peak = step_cost(spec, preset, repeats)
            seconds[spec].append(sec)
            peaks[spec].append(peak)
    return {s: (statistics.median(seconds[s]), max(peaks[s])) for s in specs}


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

    from geociss.bench import method_config
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


COSTS_FILE = "step-costs.json"
"""Step costs measured by ``bench_methods --measure-cost``, kept in the output folder."""


def save_costs(path: Path, costs: dict, preset: str, rounds: int) -> None:
    """Keep measured step costs (seconds, peak MiB per method) for later reports (atomic)."""
    record = {"preset": preset, "rounds": rounds, "measured": time.strftime("%Y-%m-%d"),
              "costs": {m: list(v) for m, v in costs.items()}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    tmp.replace(path)


def load_costs(path: Path, preset: str) -> tuple[dict[str, tuple[float, float]], dict | None]:
    """Step costs saved for ``preset`` by :func:`save_costs`, and their record.

    The record holds ``rounds`` and ``measured`` (the date); ``({}, None)`` when no costs were
    saved for ``preset``.
    """
    if not path.is_file():
        return {}, None
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("preset") != preset:
        return {}, None
    return {m: (v[0], v[1]) for m, v in record["costs"].items()}, record


__all__ = ["COSTS_FILE", "interleaved_costs", "load_costs", "save_costs", "step_cost"]
