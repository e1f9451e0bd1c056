"""The step hash follows what the data are, not where they lie; earlier hashes still count."""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.test_runner import config, scenes

from geociss.engine.bundle import StepBundle
from geociss.engine.bundle_files import STEP0_DIR
from geociss.engine.runner import ScenarioRunner


def _runner(cfg, logs: list[str] | None = None) -> ScenarioRunner:
    runner = ScenarioRunner(cfg, log=(logs.append if logs is not None else lambda m: None),
                            progress=False)
    runner.resolve_model()
    return runner


def _with_data(cfg, root: Path | str, schema: str | None = None):
    data = cfg.data.model_copy(update={"images": Path(root) / "images",
                                       "labels": Path(root) / "labels",
                                       **({"class_schema": schema} if schema else {})})
    return cfg.model_copy(update={"data": data})


def test_relative_absolute_and_moved_data_hash_alike(tmp_path, monkeypatch) -> None:
    root = scenes(tmp_path / "a")
    cfg = config(root)
    monkeypatch.chdir(tmp_path)
    relative = _runner(_with_data(cfg, "a"))
    absolute = _runner(cfg)
    assert relative.step_hash(0, None) == absolute.step_hash(0, None)
    assert relative.step_hash(1, "p") == absolute.step_hash(1, "p")
    moved = _runner(_with_data(cfg, shutil.copytree(root, tmp_path / "b")))
    assert moved.step_hash(1, "p") == absolute.step_hash(1, "p")
    # the hash as earlier versions wrote it held the paths
    assert relative.step_hash(0, None, paths=True) != absolute.step_hash(0, None, paths=True)
    assert absolute.step_hash(0, None, paths=True) != absolute.step_hash(0, None)


def test_a_schema_file_enters_by_its_content(tmp_path) -> None:
    root = scenes(tmp_path / "a")
    text = "classes:\n" + "".join(
        f"  - {{id: {i}, name: {n}, color: '#{i:02x}0000'}}\n"
        for i, n in enumerate(["impervious surfaces", "building", "low vegetation", "tree",
                               "car", "clutter"])
    )
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text(text)
    two.write_text(text)
    base = config(root)
    a, b = _runner(_with_data(base, root, str(one))), _runner(_with_data(base, root, str(two)))
    assert a.step_hash(0, None) == b.step_hash(0, None)
    two.write_text(text.replace("#050000", "#ff00ff"))
    assert _runner(_with_data(base, root, str(two))).step_hash(0, None) != a.step_hash(0, None)


def test_a_run_trained_with_absolute_paths_resumes_with_relative_ones(tmp_path, monkeypatch):
    root = scenes(tmp_path / "a")
    cfg = config(root)
    _runner(cfg).run()
    monkeypatch.chdir(tmp_path)
    logs: list[str] = []
    _runner(_with_data(cfg, "a"), logs).run()
    assert sum("up to date, skipped" in line for line in logs) == 2
    assert not any("learning" in line for line in logs)


def _stamp_legacy(runner: ScenarioRunner) -> list[str]:
    """Rewrite a finished run as an earlier version left it: hashes with the data paths."""
    legacy, out = None, []
    for step in range(runner.train_scenario.num_steps):
        legacy = runner.step_hash(step, legacy, paths=True)
        path = runner.step_dir(step) / "bundle.safetensors"
        bundle = StepBundle.load(path)
        bundle.steps[-1].info["config_hash"] = legacy
        bundle.save(path)
        out.append(legacy)
    return out


def test_bundles_and_step0_models_of_earlier_versions_are_taken(tmp_path) -> None:
    root = scenes(tmp_path / "a")
    first = _runner(config(root))
    first.run()
    legacy = _stamp_legacy(first)
    cache = first.config.out / STEP0_DIR
    (cache / first.step_hash(0, None)).rename(cache / legacy[0])
    logs: list[str] = []
    _runner(config(root), logs).run()
    assert sum("up to date, skipped" in line for line in logs) == 2
    other: list[str] = []
    _runner(config(root, method="mib"), other).run()  # another method: shares step 0
    assert any("reusing the shared step-0 model" in line and legacy[0] in line for line in other)
    assert sum("learning" in line for line in other) == 1  # step 1 only


def _rerun_after_fit(root: Path, marker_of) -> tuple[bool, str]:
    """Kill a run's step 0 after its fit (checkpoint, no bundle), stamp its checkpoint with
    ``marker_of(runner)``, run again: (was the checkpoint kept, the marker after)."""
    runner = _runner(config(root))
    runner.run()
    step0 = runner.step_dir(0)
    marker, last = step0 / "checkpoints" / "config_hash", step0 / "checkpoints" / "last.ckpt"
    prints = marker.read_text().split(" ")[1:]
    marker.write_text(" ".join([marker_of(runner), *prints]))
    shutil.rmtree(runner.run_dir / "step1")
    (step0 / "bundle.safetensors").unlink()
    shutil.rmtree(runner.config.out / STEP0_DIR)
    before = last.stat()
    _runner(config(root)).run()
    after = last.stat()
    kept = (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    return kept, marker.read_text().split(" ")[0]


def test_a_checkpoint_of_an_earlier_version_resumes(tmp_path) -> None:
    """A checkpoint that resumes is kept (all its steps done: nothing to train); one of
    another configuration is discarded and written anew."""
    root = scenes(tmp_path / "a")
    now = _runner(config(root)).step_hash(0, None)
    kept, stamped = _rerun_after_fit(root, lambda r: r.step_hash(0, None, paths=True))
    assert kept and stamped == now  # stamped anew with today's hash
    shutil.rmtree(root / "runs")
    kept, stamped = _rerun_after_fit(root, lambda r: "0123456789abcdef")
    assert not kept and stamped == now
