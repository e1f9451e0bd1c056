"""The background benchmark's cases: valid experiments, noisy copies, tables (no training)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's benchmarks/

from benchmarks import background_cases as cases
from benchmarks import bench_background as bb
from geociss.demo import DemoSettings, demo_scenes


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bg")
    demo_scenes(root / "sample", DemoSettings.of(True), log=lambda _: None)
    return root


@pytest.mark.parametrize("case", list(bb.CASES))
def test_every_case_is_a_valid_experiment_with_its_background(out: Path, case: str) -> None:
    cfg = bb.cell_config("mib", "keep-background", 3, out, case)
    schema = yaml.safe_load(Path(cfg.data.class_schema).read_text(encoding="utf-8"))
    assert schema["background"] == bb.CASES[case]["background"]
    assert bb.tracked(case) in [c for step in cfg.scenario.steps for c in step]
    steps = [list(s) for s in cfg.scenario.steps]
    assert steps == bb.CASES[case].get("steps", [list(bb.BASE), [bb.NEW]])
    assert bb.tracked(case) in steps[0]
    assert cfg.method.params["init_balanced"] == "keep-background"
    assert cfg.train.seed == 3
    assert cfg.name.endswith("" if case == "demo" else f"-{case}")
    if "model" in bb.CASES[case]:
        assert cfg.model.encoder == "tiny" and cfg.model.weights == "none"
    else:
        assert cfg.model.encoder == "efficientnet_lite0"


def test_case_names_do_not_share_run_folders(out: Path) -> None:
    names = {bb.cell_config("mib", r, 0, out, c).name for c in bb.CASES for r in bb.RULES}
    assert len(names) == len(bb.CASES) * len(bb.RULES)


def test_noisy_scenes_keep_geometry_and_labels_and_are_written_once(out: Path) -> None:
    folder = cases.noisy_scenes(out, 48.0)
    originals = sorted((out / "sample").rglob("*.tif"))
    assert len(originals) == len(sorted(folder.rglob("*.tif")))
    for src in originals:
        dst = folder / src.relative_to(out / "sample")
        with rasterio.open(src) as a, rasterio.open(dst) as b:
            assert (a.crs, a.transform, a.shape) == (b.crs, b.transform, b.shape)
            assert a.dtypes == b.dtypes
            pa, pb = a.read(), b.read()
        if "labels" in src.parts:
            assert np.array_equal(pa, pb)
        else:
            diff = pb.astype(np.float64) - pa
            assert 20 < diff.std() < 60  # σ = 48 before clipping to 0-255
    stamp = {p: p.stat().st_mtime_ns for p in (folder / "images").glob("*.tif")}
    cases.noisy_scenes(out, 48.0)
    assert stamp == {p: p.stat().st_mtime_ns for p in (folder / "images").glob("*.tif")}
    # a scene written again (as after an interruption) gets the same noise
    first = sorted((folder / "images").glob("*.tif"))[1]
    with rasterio.open(first) as ds:
        before = ds.read()
    first.unlink()
    cases.noisy_scenes(out, 48.0)
    with rasterio.open(first) as ds:
        assert np.array_equal(ds.read(), before)
    assert not list(folder.rglob("*.part"))


def _run(bg: float, other: float) -> dict:
    iou = {"impervious surfaces": bg, "building": other, "low vegetation": other, "tree": 0.5}
    return {"step0": {**iou, "impervious surfaces": 0.8}, "step1": iou, "kept": 0.9}


def test_table_gives_intervals_only_with_several_seeds() -> None:
    one = {("mib", r): {0: _run(0.4, 0.7)} for r in bb.RULES}
    text = bb.table(one, "demo")
    assert "| mib | MiB's rule | 1 | 80.0 | 40.0 | 0.50 | 90.0 |" in text
    assert "Paired differences" not in text
    three = {
        ("mib", "MiB's rule"): {s: _run(0.4 + s / 100, 0.7) for s in range(3)},
        ("mib", "keep-background"): {s: _run(0.6 + s / 100, 0.7) for s in range(3)},
    }
    text = bb.table(three, "demo")
    assert "Paired differences" in text
    assert "| mib | +20.0 [+20.0, +20.0] better |" in text


def test_implicit_background_cases_leave_out_the_unlearned_pixels() -> None:
    # rows: reference channel (0 = implicit background: car and clutter pixels), columns:
    # predicted; the background's row is left out, as those pixels are ignored elsewhere
    metrics = {
        "channels": [{"name": "background"}, {"name": "a"}, {"name": "b"}],
        "confusion": [[5, 1, 0], [2, 10, 3], [0, 1, 8]],
    }
    iou = bb.unlearned_left_out(metrics)
    assert set(iou) == {"a", "b"}
    assert iou["a"] == pytest.approx(10 / (10 + 5 + 1))  # FN: 2 + 3, FP: 1 (from b only)
    assert iou["b"] == pytest.approx(8 / (8 + 1 + 3))


def test_remedy_table_pairs_the_no_background_case_with_the_case_it_remedies() -> None:
    def runs(bg: float) -> dict:
        return {s: _run(bg + s / 100, 0.7) for s in range(3)}

    by_case = {
        "vegetation": {("mib", "MiB's rule"): runs(0.0)},
        "vegetation-no-background": {("mib", "MiB's rule"): runs(0.5)},
    }
    text = bb.remedy_table(by_case, "vegetation-no-background")
    assert "| mib: vegetation-no-background − vegetation |" in text
    assert "+50.0 [+50.0, +50.0] better" in text and "demo" not in text
