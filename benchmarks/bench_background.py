"""Does the background class survive an incremental step? MiB's initialisation vs keep-background.

Run: python -m benchmarks.bench_background            (the demo's scenario, seeds 0,1,2)
     python -m benchmarks.bench_background --methods mib,idec --cases vegetation,\
         vegetation-no-background,demo --section background-cases   (the collapse and its remedy)
     python -m benchmarks.bench_background --methods mib --seeds 0 --cases weak,from-scratch,\
         noisy,clutter,clutter-no-background --section background-search  (the search for it)

The scenario is `geociss demo`'s: step 0 learns impervious surfaces (the ISPRS background class,
a real class), building and low vegetation on the ImageNet EfficientNet-Lite0 network; step 1
adds tree from tree-only labels (64 SGD steps at lr 0.001, frozen norms). The other cases (see
``CASES``) change the background class and the steps, the network or the imagery, each to make
the background class more likely to be lost. Each method runs with ``init_balanced: true``
(MiB's rule) and ``init_balanced: keep-background``; runs of one seed and case share step 0.
The table gives per-class IoU after step 1 (mean ± sd over the seeds), the background after /
at step 0, its label-free retention ("kept"), and paired differences against MiB's rule; it is
written to docs/benchmarks.md (section ``background``, or ``background-cases`` for the cases).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks._report import update_section
from benchmarks.background_cases import BASE, CASES, NEW, RULES, cell_config, tracked
from geociss.bench import per_class_iou
from geociss.bench.stats import PairedDiff, Spread, paired_difference


def run_cell(method: str, rule: str, seed: int, out: Path, case: str = "demo") -> dict[str, Any]:
    """Train (or reuse) one run; return its step-0 and step-1 per-class IoU and retention."""
    from geociss.engine.bundle import StepBundle
    from geociss.engine.runner import ScenarioRunner

    cfg = cell_config(method, rule, seed, out, case)
    runner = ScenarioRunner(cfg, log=lambda _: None, progress=False)
    runner.run()
    bundle = StepBundle.load(runner.step_dir(1) / "bundle.safetensors")
    kept = {
        c["name"]: c["kept"] for c in bundle.steps[1].info.get("retention", {}).get("classes", [])
    }
    score = per_class_iou if CASES[case]["background"] else unlearned_left_out
    return {
        "step0": score(bundle.steps[0].metrics),
        "step1": score(bundle.steps[1].metrics),
        "kept": kept.get(tracked(case)),
    }


def unlearned_left_out(metrics: dict[str, Any]) -> dict[str, float | None]:
    """Per-class IoU of a model with an implicit background, scored like the other cases.

    With an implicit background, evaluation labels the pixels of classes no step learns (car,
    clutter) background; where a real class plays background they are ignored. Leaving out the
    background's row of the confusion matrix scores both on the same pixels.
    """
    import numpy as np

    confusion = np.asarray(metrics["confusion"], dtype=np.float64)
    confusion[0, :] = 0.0
    tp = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
    names = [c["name"] for c in metrics["channels"]]
    return {
        name: (float(tp[k] / union[k]) if union[k] else None)
        for k, name in enumerate(names)
        if k > 0
    }


def _pct(s: Spread) -> str:
    if s.mean is None:
        return "-"
    if s.sd is None:  # one seed
        return f"{100 * s.mean:.1f}"
    return f"{100 * s.mean:.1f} ± {100 * s.sd:.1f}"


def _diff(d: PairedDiff) -> str:
    if d.mean is None or d.low is None or d.high is None:
        return "-"
    return f"{100 * d.mean:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}] {d.verdict}"


def table(cells: dict[tuple[str, str], dict[int, dict[str, Any]]], case: str) -> str:
    """Markdown: per-class IoU per (method, rule), then paired differences vs MiB's rule."""
    background = tracked(case)
    base, (new,) = CASES[case].get("steps", [BASE, [NEW]])
    others = tuple(c for c in base if c != background)
    lines = [
        f"| method | init | seeds | {background} at step 0 | {background} after | after / "
        f"step 0 | kept (retention) | {' | '.join(others)} | {new} |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * (len(others) + 1),
    ]
    for (method, rule), seeds in cells.items():
        runs = list(seeds.values())

        def col(stage: str, name: str, runs: list[dict[str, Any]] = runs) -> str:
            return _pct(Spread.of([r[stage].get(name) for r in runs]))

        ratio = Spread.of(
            [
                r["step1"][background] / r["step0"][background]
                for r in runs
                if r["step0"][background]
            ]
        )
        lines.append(
            f"| {method} | {rule} | {len(runs)} | {col('step0', background)} | "
            f"{col('step1', background)} | {ratio.mean:.2f} | "
            f"{_pct(Spread.of([r['kept'] for r in runs]))} | "
            + " | ".join(col("step1", c) for c in (*others, new))
            + " |"
        )
    if max(len(seeds) for seeds in cells.values()) < 2 or len(cells) < 2:  # nothing to pair
        return "\n".join(lines)
    lines += [
        "",
        "Paired differences keep-background − MiB's rule (points of IoU, 95 % interval):",
        "",
    ]
    lines += [
        f"| method | {background} | {' | '.join(others)} | {new} |",
        "| --- | --- |" + " --- |" * (len(others) + 1),
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
            for c in (background, *others, new)
        ]
        lines.append(f"| {method} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def remedy_table(by_case: dict[str, Any], remedy: str) -> str:
    """Paired differences, per class, of a no-background case against the cases it remedies
    (MiB's rule in both, same seeds; every class of the final model)."""
    rule = "MiB's rule"
    lines: list[str] = []
    for base in CASES[remedy]["remedy_of"]:
        if base not in by_case:
            continue
        for (method, r), runs in by_case[remedy].items():
            others = by_case[base].get((method, rule))
            if r != rule or not others or len(runs) < 2:  # no interval from one seed
                continue
            shared = next(iter(others.values()))["step1"]
            names = [c for c in next(iter(runs.values()))["step1"] if c in shared]
            if not lines:
                lines = [f"Paired differences `{remedy}` − the case it remedies ({method}, "
                         f"{rule}; points of IoU after the step, 95 % interval):", ""]
            lines += [f"| {method}: {remedy} − {base} | " + " | ".join(names) + " |",
                      "| --- |" + " --- |" * len(names)]
            diffs = [
                _diff(paired_difference({s: x["step1"].get(c) for s, x in runs.items()},
                                        {s: x["step1"].get(c) for s, x in others.items()}))
                for c in names
            ]
            lines += ["| Δ | " + " | ".join(diffs) + " |", ""]
    return "\n".join(lines).rstrip()


def describe_case(case: str) -> str:
    """One line: what the case changes in the demo's scenario."""
    c = CASES[case]
    steps = " → ".join(" + ".join(step) for step in c.get("steps", [BASE, [NEW]]))
    extra = []
    if "model" in c:
        extra.append(f"network of the `{c['model']}` preset (from random weights)")
    if "epochs" in c:
        extra.append(f"step 0 trained {c['epochs']} epoch(s) instead of 4")
    if "noise" in c:
        extra.append(f"Gaussian pixel noise σ = {c['noise']:g} on every scene")
    return (
        f"**Case `{case}`**: background class {c['background'] or 'none (implicit channel)'}; "
        f"steps {steps}"
        + ("; " + ", ".join(extra) if extra else "")
        + "."
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="mib,idec")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--cases", default="demo", help=f"comma-separated, of {', '.join(CASES)}")
    ap.add_argument("--out", default="bg-bench")
    ap.add_argument("--section", default=None,
                    help="docs section (default: background, or background-cases with --cases)")
    args = ap.parse_args()
    out = Path(args.out)
    cases = args.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"bench_background: unknown case(s) {unknown}; known: {list(CASES)}")
    from geociss.demo import DemoSettings, demo_scenes

    demo_scenes(out / "sample", DemoSettings.of(False))
    start = time.time()
    tables: list[str] = []
    by_case: dict[str, dict[tuple[str, str], dict[int, dict[str, Any]]]] = {}
    for case in cases:
        cells: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
        for seed in (int(s) for s in args.seeds.split(",")):
            for method in args.methods.split(","):
                for rule in CASES[case].get("rules", RULES):
                    print(f"{case}: {method}, {rule}, seed {seed}", flush=True)
                    cells.setdefault((method, rule), {})[seed] = run_cell(
                        method, rule, seed, out, case
                    )
        tables.append(describe_case(case) + "\n\n" + table(cells, case))
        by_case[case] = cells
    tables += [remedy_table(by_case, case) for case in cases if CASES[case].get("remedy_of")]
    minutes = (time.time() - start) / 60
    took = (
        f"{minutes:.0f} min on this machine" if minutes >= 1 else "finished runs reused"
    )
    command = (
        f"python -m benchmarks.bench_background --methods {args.methods} --seeds {args.seeds}"
        + ("" if cases == ["demo"] else f" --cases {args.cases}")
        + (f" --section {args.section}" if args.section else "")
    )
    text = (
        "## Does the background class survive an incremental step?"
        + ("" if cases == ["demo"] else f" Cases: {', '.join(cases)}")
        + f"\n\nCommand: `{command}` ({took}). The demo's scenario "
        "(step-0 classes on the ImageNet EfficientNet-Lite0 network, 4 epochs of AdamW; the new "
        "class added from labels of it alone, 64 SGD steps at lr 0.001), new classes "
        "initialised by MiB's rule (`init_balanced: true`) or without lowering the background's "
        "bias (`init_balanced: keep-background`). IoU in % on the held-out scenes, mean ± sd over "
        "the seeds; kept = share of the step-0 model's pixels of the tracked class (the "
        "background, or the class that would play it) that the extended model still gives it "
        "(the label-free retention report). Cases without a background class are scored on the "
        "same pixels as the others: the pixels of classes no step learns, which their "
        "evaluation calls background, are left out, as they are where a real class plays "
        "background.\n\n"
        + "\n\n".join(tables)
    )
    section = args.section or ("background" if cases == ["demo"] else "background-cases")
    update_section(section, text)
    print(text)


if __name__ == "__main__":
    main()
