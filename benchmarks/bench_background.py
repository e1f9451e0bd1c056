"""Does the background class survive an incremental step? MiB's initialisation vs keep-background.

Run: python -m benchmarks.bench_background            (the demo's scenario, seeds 0,1,2)
     python -m benchmarks.bench_background --methods mib,idec --seeds 0,1,2 --out bg-bench

The scenario is `geociss demo`'s: step 0 learns impervious surfaces (the ISPRS background class,
a real class), building and low vegetation on the ImageNet EfficientNet-Lite0 network; step 1
adds tree from tree-only labels (64 SGD steps at lr 0.001, frozen norms). Each method runs with
``init_balanced: true`` (MiB's rule) and ``init_balanced: keep-background``; runs of one seed
share step 0. The table gives per-class IoU after step 1 (mean ± sd over the seeds),
impervious surfaces after / at step 0, the label-free retention ("kept") of impervious
surfaces, and paired differences against MiB's rule; it is written to docs/benchmarks.md
(section ``background``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks._report import update_section
from geociss.bench import per_class_iou
from geociss.bench.stats import PairedDiff, Spread, paired_difference

BACKGROUND = "impervious surfaces"
OTHERS = ("building", "low vegetation")
NEW = "tree"
RULES = {"MiB's rule": True, "keep-background": "keep-background"}


def run_cell(method: str, rule: str, seed: int, out: Path) -> dict[str, Any]:
    """Train (or reuse) one run; return its step-0 and step-1 per-class IoU and retention."""
    from geociss.demo import DemoSettings, demo_config
    from geociss.engine.bundle import StepBundle
    from geociss.engine.runner import ScenarioRunner

    settings = DemoSettings.of(False)
    cfg = demo_config(out, method, settings, workers=0)
    slug = "keep" if RULES[rule] == "keep-background" else "mib-init"
    cfg = cfg.model_copy(
        update={
            "name": f"{method}-{slug}-s{seed}",
            "method": cfg.method.model_copy(
                update={"params": {**cfg.method.params, "init_balanced": RULES[rule]}}
            ),
            "train": cfg.train.model_copy(update={"seed": seed}),
        }
    )
    runner = ScenarioRunner(cfg, log=lambda _: None, progress=False)
    runner.run()
    bundle = StepBundle.load(runner.step_dir(1) / "bundle.safetensors")
    kept = {
        c["name"]: c["kept"] for c in bundle.steps[1].info.get("retention", {}).get("classes", [])
    }
    return {
        "step0": per_class_iou(bundle.steps[0].metrics),
        "step1": per_class_iou(bundle.steps[1].metrics),
        "kept": kept.get(BACKGROUND),
    }


def _pct(s: Spread) -> str:
    if s.mean is None:
        return "-"
    return f"{100 * s.mean:.1f} ± {100 * (s.sd or 0):.1f}"


def _diff(d: PairedDiff) -> str:
    if d.mean is None or d.low is None or d.high is None:
        return "-"
    return f"{100 * d.mean:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}] {d.verdict}"


def table(cells: dict[tuple[str, str], dict[int, dict[str, Any]]]) -> str:
    """Markdown: per-class IoU per (method, rule), then paired differences vs MiB's rule."""
    lines = [
        f"| method | init | seeds | {BACKGROUND} at step 0 | {BACKGROUND} after | after / "
        f"step 0 | kept (retention) | {' | '.join(OTHERS)} | {NEW} |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * (len(OTHERS) + 1),
    ]
    for (method, rule), seeds in cells.items():
        runs = list(seeds.values())

        def col(stage: str, name: str, runs: list[dict[str, Any]] = runs) -> str:
            return _pct(Spread.of([r[stage].get(name) for r in runs]))

        ratio = Spread.of(
            [
                r["step1"][BACKGROUND] / r["step0"][BACKGROUND]
                for r in runs
                if r["step0"][BACKGROUND]
            ]
        )
        lines.append(
            f"| {method} | {rule} | {len(runs)} | {col('step0', BACKGROUND)} | "
            f"{col('step1', BACKGROUND)} | {ratio.mean:.2f} | "
            f"{_pct(Spread.of([r['kept'] for r in runs]))} | "
            + " | ".join(col("step1", c) for c in (*OTHERS, NEW))
            + " |"
        )
    lines += [
        "",
        "Paired differences keep-background − MiB's rule (points of IoU, 95 % interval):",
        "",
    ]
    lines += [
        f"| method | {BACKGROUND} | {' | '.join(OTHERS)} | {NEW} |",
        "| --- | --- |" + " --- |" * (len(OTHERS) + 1),
    ]
    for method in dict.fromkeys(m for m, _ in cells):
        keep, mib = cells.get((method, "keep-background")), cells.get((method, "MiB's rule"))
        if not keep or not mib:
            continue
        parts = [
            _diff(
                paired_difference(
                    {s: r["step1"].get(c) for s, r in keep.items()},
                    {s: r["step1"].get(c) for s, r in mib.items()},
                )
            )
            for c in (BACKGROUND, *OTHERS, NEW)
        ]
        lines.append(f"| {method} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="mib,idec")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="bg-bench")
    args = ap.parse_args()
    out = Path(args.out)
    from geociss.demo import DemoSettings, demo_scenes

    demo_scenes(out / "sample", DemoSettings.of(False))
    start = time.time()
    cells: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        for method in args.methods.split(","):
            for rule in RULES:
                print(f"{method}, {rule}, seed {seed}", flush=True)
                cells.setdefault((method, rule), {})[seed] = run_cell(method, rule, seed, out)
    minutes = (time.time() - start) / 60
    command = f"python -m benchmarks.bench_background --methods {args.methods} --seeds {args.seeds}"
    text = (
        "## Does the background class survive an incremental step?\n\n"
        f"Command: `{command}` ({minutes:.0f} min on this machine). The demo's scenario "
        "(impervious surfaces, building, low vegetation at step 0; tree added from tree-only "
        "labels, 64 SGD steps at lr 0.001), new classes initialised by MiB's rule "
        "(`init_balanced: true`) or without lowering the background's bias "
        "(`init_balanced: keep-background`). IoU in % on the held-out scenes, mean ± sd over "
        "the seeds; kept = share of the step-0 model's impervious pixels that the extended "
        "model still calls impervious (the label-free retention report).\n\n" + table(cells)
    )
    update_section("background", text)
    print(text)


if __name__ == "__main__":
    main()
