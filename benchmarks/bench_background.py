"""Does the background class survive an incremental step? MiB's initialisation vs keep-background.

Run: python -m benchmarks.bench_background            (the demo's scenario, seeds 0,1,2)
     python -m benchmarks.bench_background --methods mib --cases vegetation,\
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
import dataclasses
import time
from pathlib import Path
from typing import Any

from benchmarks._report import update_section
from geociss.bench import per_class_iou
from geociss.bench.stats import PairedDiff, Spread, paired_difference

BASE = ("impervious surfaces", "building", "low vegetation")
NEW = "tree"
RULES = {"MiB's rule": True, "keep-background": "keep-background"}
CASES: dict[str, dict[str, Any]] = {
    # the demo as it ships: impervious surfaces plays background (the ISPRS convention)
    "demo": {"background": "impervious surfaces"},
    # low vegetation plays background: at step 0 the tree pixels are labelled with it (what a
    # step's labels call "anything else"), and the class added later, tree, looks like it
    "vegetation": {"background": "low vegetation"},
    # step 0 trained one epoch instead of 4: a weak step-0 model
    "weak": {"background": "impervious surfaces", "epochs": 1},
    # the remedy for the vegetation case: no background class in the schema, so low vegetation
    # is an ordinary class and an implicit background channel takes the pixels of classes not
    # learned yet (tree at step 0, car and clutter at every step); the same runs are the demo's
    # scenario without a background class
    "vegetation-no-background": {
        "background": None, "tracked": "low vegetation", "rules": ["MiB's rule"],
        "remedy_of": ["vegetation", "demo"],
    },
    "clutter-no-background": {
        "background": None,
        "tracked": "clutter",
        "rules": ["MiB's rule"],
        "remedy_of": ["clutter"],
        "steps": [["clutter", "impervious surfaces", "building", "tree"], ["low vegetation"]],
        "unlearned": ["car"],
    },
    # the demo's scenario on the from-scratch network of the small preset (a weak step 0)
    "from-scratch": {"background": "impervious surfaces", "model": "small"},
    # the demo's scenes under strong pixel noise (σ = 48 grey levels): classes overlap, and a
    # well-trained step-0 model's background leads the other classes by small margins
    "noisy": {"background": "impervious surfaces", "noise": 48.0},
    # clutter (bare soil, sand, gravel, ponds: 3 % of the pixels) plays background and low
    # vegetation comes later: the step-0 labels call low vegetation clutter, so the step-0
    # background is mostly grass, and the class added later looks like bare soil
    "clutter": {
        "background": "clutter",
        "steps": [["clutter", "impervious surfaces", "building", "tree"], ["low vegetation"]],
        "unlearned": ["car"],
    },
}


def case_schema(out: Path, case: str) -> Path:
    """The sample's class schema with the case's background class."""
    import yaml

    sample = out / "sample" / "classes.yaml"
    if CASES[case]["background"] == schema_background(sample):
        return sample
    schema = yaml.safe_load(sample.read_text(encoding="utf-8"))
    schema["background"] = CASES[case]["background"]
    path = out / f"classes-{case}.yaml"
    path.write_text(yaml.safe_dump(schema, sort_keys=False), encoding="utf-8")
    return path


def noisy_scenes(out: Path, sigma: float) -> Path:
    """The demo's scenes (training and held-out) with Gaussian pixel noise, written once."""
    import numpy as np
    import rasterio

    sample, folder = out / "sample", out / f"sample-noise{sigma:g}"
    rng = np.random.default_rng(0)
    for src in sorted(sample.rglob("*.tif")):
        rel = src.relative_to(sample)
        dst = folder / rel
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel.parts[-2] == "labels":
            dst.symlink_to(src.resolve())
            continue
        with rasterio.open(src) as ds:
            profile, pixels = ds.profile, ds.read().astype(np.float32)
        noisy = np.clip(pixels + rng.normal(0.0, sigma, pixels.shape), 0, 255).astype(np.uint8)
        tmp = dst.with_suffix(".tmp.tif")
        with rasterio.open(tmp, "w", **profile) as ds:
            ds.write(noisy)
        tmp.replace(dst)
    return folder


def schema_background(path: Path) -> str | None:
    """The background class named by a schema file (None: no background class)."""
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))["background"]


def tracked(case: str) -> str:
    """The class whose survival the case measures: its background, or the class it names."""
    return str(CASES[case].get("tracked") or CASES[case]["background"])


def case_data(out: Path, case: str) -> dict[str, Any]:
    """The data fields of the case: its schema, and its scenes where they differ."""
    fields: dict[str, Any] = {"class_schema": str(case_schema(out, case))}
    if "noise" in CASES[case]:
        folder = noisy_scenes(out, CASES[case]["noise"])
        for name, sub in (("images", "images"), ("labels", "labels")):
            fields[name] = folder / sub
            fields[f"val_{name}"] = folder / "val" / sub
    return fields


def case_scenario(scenario: Any, case: str) -> Any:
    """The demo's steps, or the case's steps and unlearned classes."""
    if "steps" not in CASES[case]:
        return scenario
    fields = {"steps": CASES[case]["steps"], "unlearned": CASES[case]["unlearned"]}
    return type(scenario).model_validate({**scenario.model_dump(), **fields})


def case_model(model: Any, case: str) -> Any:
    """The demo's network, or the network of the preset the case names."""
    from geociss.bench.presets import PRESETS

    preset = CASES[case].get("model")
    return model if preset is None else type(model).model_validate(PRESETS[preset]["model"])


def cell_config(method: str, rule: str, seed: int, out: Path, case: str = "demo") -> Any:
    """The validated experiment of one cell (writes the case's schema and scenes if needed)."""
    from geociss.demo import DemoSettings, demo_config

    settings = DemoSettings.of(False)
    if "epochs" in CASES[case]:
        settings = dataclasses.replace(settings, epochs=CASES[case]["epochs"])
    cfg = demo_config(out, method, settings, workers=0)
    slug = "keep" if RULES[rule] == "keep-background" else "mib-init"
    cfg = cfg.model_copy(
        update={
            "name": f"{method}-{slug}-s{seed}" + ("" if case == "demo" else f"-{case}"),
            "method": cfg.method.model_copy(
                update={"params": {**cfg.method.params, "init_balanced": RULES[rule]}}
            ),
            "train": cfg.train.model_copy(update={"seed": seed}),
            "data": cfg.data.model_copy(update=case_data(out, case)),
            "scenario": case_scenario(cfg.scenario, case),
            "model": case_model(cfg.model, case),
        }
    )
    return type(cfg).model_validate(cfg.model_dump())


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
