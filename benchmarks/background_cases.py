"""The background benchmark's cases: what each changes in the demo's scenario, and its runs.

Each case names the class that plays background (None: the schema has no background class and
an implicit channel takes the classes not learned yet), and optionally the class whose
survival it measures, other steps, a network preset, a shorter step 0 or pixel noise. A cell
is one (method, initialisation rule, seed, case) run of ``geociss demo``'s experiment.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

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
    """The demo's scenes (training and held-out) with Gaussian pixel noise, written once.

    Each scene's noise is seeded by its path, so a folder finished after an interruption holds
    the same pixels as one written in one go; a scene is written under a temporary name that is
    no ``.tif`` and renamed when complete.
    """
    import zlib

    import numpy as np
    import rasterio

    sample, folder = out / "sample", out / f"sample-noise{sigma:g}"
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
        rng = np.random.default_rng(zlib.crc32(rel.as_posix().encode()))
        noisy = np.clip(pixels + rng.normal(0.0, sigma, pixels.shape), 0, 255).astype(np.uint8)
        tmp = dst.with_name(dst.name + ".part")
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
