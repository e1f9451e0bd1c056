"""Records of finished bench cells: fingerprints, reuse, staleness, damage, and a kill mid-write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest

from geociss import bench
from geociss.bench import BenchRow, experiment
from geociss.bench.records import ResultStore, cell_fingerprint, data_digest


def _data(folder: Path, payload: bytes = b"pixels") -> Path:
    """A data folder of the bench's layout with small files (the digest reads bytes only)."""
    for sub in ("images", "labels", "val/images", "val/labels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / sub / "scene_000.dat").write_bytes(payload + sub.encode())
    for schema in (folder / "classes.yaml", folder / "val" / "classes.yaml"):
        schema.write_text("classes: []\n")
    return folder


def _row(**kw) -> BenchRow:
    base = dict(task="4-1", method="mib", old=0.7, new=0.3, all=0.62, seed=1,
                per_class={"car": 0.3, "tree": None},
                retention=[{"step": 1, "class": "tree", "kept": 0.9, "teacher_pixels": 10,
                            "iou_before": 0.6, "iou_after": 0.5}])
    return BenchRow(**{**base, **kw})


def test_the_data_digest_follows_contents_not_file_times(tmp_path) -> None:
    a, b = _data(tmp_path / "a"), _data(tmp_path / "b")
    os.utime(b / "images" / "scene_000.dat", (1, 1))  # same bytes, other time
    assert data_digest(a) == data_digest(b)
    (b / "labels" / "scene_000.dat").write_bytes(b"pixelsLABELS")
    assert data_digest(a) != data_digest(b)
    c = _data(tmp_path / "c")
    (c / "images" / "scene_000.dat").rename(c / "images" / "scene_001.dat")
    assert data_digest(a) != data_digest(c)


def test_rasters_enter_the_digest_by_their_pixels_not_their_encoding(tmp_path) -> None:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    pixels = np.arange(3 * 64 * 64, dtype=np.uint8).reshape(3, 64, 64)

    def write(folder: Path, data: np.ndarray, **options) -> Path:
        (folder / "images").mkdir(parents=True)
        profile = dict(driver="GTiff", width=64, height=64, count=3, dtype="uint8",
                       crs="EPSG:32632", transform=from_origin(500000, 5800000, 0.1, 0.1))
        with rasterio.open(folder / "images" / "a.tif", "w", **profile, **options) as dst:
            dst.write(data)
        return folder

    plain = write(tmp_path / "plain", pixels)
    packed = write(tmp_path / "packed", pixels, compress="deflate", tiled=True, blockxsize=32,
                   blockysize=32)
    assert (plain / "images" / "a.tif").read_bytes() != (packed / "images" / "a.tif").read_bytes()
    assert data_digest(plain) == data_digest(packed)
    changed = pixels.copy()
    changed[0, 5, 5] += 1
    assert data_digest(write(tmp_path / "changed", changed)) != data_digest(plain)


def test_the_fingerprint_ignores_paths_and_hardware_but_not_what_decides_the_result(
    tmp_path,
) -> None:
    data = _data(tmp_path / "d")
    digest = data_digest(data)
    base = experiment("cpu", "4-1", "mib", data, tmp_path / "runs", seed=0)
    moved = experiment("cpu", "4-1", "mib", _data(tmp_path / "elsewhere"), tmp_path / "x", seed=0)
    assert cell_fingerprint(base, digest) == cell_fingerprint(moved, digest)
    gpu = base.model_copy(update={"train": base.train.model_copy(update={"accelerator": "gpu"})})
    assert cell_fingerprint(gpu, digest) == cell_fingerprint(base, digest)
    others = [
        experiment("cpu", "4-1", "mib", data, tmp_path / "runs", seed=1),
        experiment("cpu", "2-3", "mib", data, tmp_path / "runs", seed=0),
        experiment("cpu", "4-1", "idec-no-dada", data, tmp_path / "runs", seed=0),
        base.model_copy(update={"train": base.train.model_copy(update={"lr": 0.002})}),
    ]
    marks = {cell_fingerprint(c, digest) for c in others}
    assert len(marks) == 4 and cell_fingerprint(base, digest) not in marks
    assert cell_fingerprint(base, "0" * 16) != cell_fingerprint(base, digest)


def test_a_record_gives_back_its_row_without_costs_and_names_its_source(tmp_path) -> None:
    store = ResultStore(tmp_path / "rec", log=lambda m: None)
    row = _row(step_seconds=0.5, peak_mib=300.0, of_joint=0.9, step_vs_finetune=1.2)
    path = store.put("mib_cpu_4-1_s1", "abc", row)
    record = json.loads(path.read_text())
    assert record["fingerprint"] == "abc" and record["geociss"] and "recorded" in record
    assert record["torch"].split("+")[0].count(".") == 2
    assert record["cpu"] and record["threads"] >= 1
    assert "step_seconds" not in record["row"] and "of_joint" not in record["row"]
    back = store.get("mib_cpu_4-1_s1", "abc")
    assert back == _row()  # every result field, costs left to the report
    assert store.get("mib_cpu_4-2_s1", "abc") is None


def test_a_stale_or_damaged_record_is_reported_and_not_used(tmp_path) -> None:
    logs: list[str] = []
    store = ResultStore(tmp_path / "rec", log=logs.append)
    path = store.put("mib_cpu_4-1_s1", "abc", _row())
    assert store.get("mib_cpu_4-1_s1", "other") is None
    assert logs[-1] == (f"bench: the record {path} was written for another configuration or "
                        "data; the cell runs again")
    path.write_text(path.read_text()[:40])  # cut short
    assert store.get("mib_cpu_4-1_s1", "abc") is None
    assert logs[-1].startswith(f"bench: ignoring the unreadable record {path} (JSONDecodeError")
    assert len(logs) == 2


class _Diverging:
    """A runner whose every cell fails at once: a result row without training."""

    made: ClassVar[list[str]] = []

    def __init__(self, cfg, log, progress) -> None:
        _Diverging.made.append(cfg.name)

    def run(self):
        from geociss.errors import DivergedError

        raise DivergedError("loss is not finite")


def test_run_bench_takes_recorded_cells_and_records_what_it_runs(monkeypatch, tmp_path) -> None:
    import geociss.engine.runner as runner_module

    monkeypatch.setattr(runner_module, "ScenarioRunner", _Diverging)
    data, store = _data(tmp_path / "data"), ResultStore(tmp_path / "rec", log=lambda m: None)
    run = dict(data=data, seeds=[0, 1], measure_costs=False, store=store)
    _Diverging.made = []
    first = bench.run_bench(["mib"], ["4-1"], "cpu", tmp_path / "a", log=lambda m: None, **run)
    assert len(_Diverging.made) == 6 and len(list(store.folder.glob("*.json"))) == 6
    _Diverging.made, logs = [], []
    again = bench.run_bench(["mib"], ["4-1"], "cpu", tmp_path / "b", log=logs.append, **run)
    assert _Diverging.made == [] and [r.note for r in again] == [r.note for r in first]
    assert f"bench: recorded in {store.path('mib_cpu_4-1_s1')}; not run again" in logs
    # another hyper-parameter: every cell runs again and its record is replaced
    preset = {**bench.PRESETS["cpu"], "train": {**bench.PRESETS["cpu"]["train"], "lr": 0.002}}
    monkeypatch.setitem(bench.PRESETS, "cpu", preset)
    bench.run_bench(["mib"], ["4-1"], "cpu", tmp_path / "c", log=lambda m: None, **run)
    assert len(_Diverging.made) == 6
    _Diverging.made = []
    bench.run_bench(["mib"], ["4-1"], "cpu", tmp_path / "d", log=lambda m: None, **run)
    assert _Diverging.made == []


def test_collect_reads_recorded_cells_without_run_folders(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(bench, "sample_scenes", lambda preset, folder: _data(folder))
    out, store = tmp_path / "bench", ResultStore(tmp_path / "rec", log=lambda m: None)
    data = _data(out / "sample")
    cfg = experiment("cpu", "4-1", "mib", data, out / "runs", seed=2)
    store.put(cfg.name, cell_fingerprint(cfg, data_digest(data)), _row(seed=2))
    store.put("joint_cpu_4-1_s2", "stale", _row(method="joint", seed=2, all=0.7))
    rows = bench.collect(["mib"], ["4-1"], "cpu", out, [2], store=store)
    assert [(r.method, r.all) for r in rows] == [("mib", 0.62)]
    assert bench.collect(["mib"], ["4-1"], "cpu", out, [2]) == []  # without the store


_WRITER = """
import pathlib, sys, time
from pathlib import Path
from typing import ClassVar
from geociss.bench import BenchRow
from geociss.bench.records import ResultStore

def slow_write(self, text, encoding=None, errors=None, newline=None):  # a slow disk
    with open(self, "w", encoding=encoding) as f:
        for i in range(0, len(text), 65536):
            f.write(text[i:i + 65536])
            f.flush()
            time.sleep(0.01)
    return len(text)

pathlib.Path.write_text = slow_write

store = ResultStore(Path(sys.argv[1]))
pairs = [{"step": 1, "class": "c%d" % i, "kept": 0.5, "teacher_pixels": i,
          "iou_before": 0.5, "iou_after": 0.4} for i in range(60000)]
print("ready", flush=True)
for n in range(10**6):
    store.put("mib_cpu_4-1_s0", "fp%d" % n, BenchRow("4-1", "mib", 0.1, 0.2, 0.3,
              retention=pairs))
"""


@pytest.mark.parametrize("delay", [0.1, 0.25, 0.4, 0.7])
def test_a_writer_killed_mid_record_leaves_the_last_whole_record(tmp_path, delay) -> None:
    folder = tmp_path / "rec"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(folder)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    path = folder / "mib_cpu_4-1_s0.json"
    deadline = time.monotonic() + 60
    while not path.is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    record = json.loads(path.read_text())  # whole: it parses, and names the version it holds
    stored = ResultStore(folder).get("mib_cpu_4-1_s0", record["fingerprint"])
    assert stored is not None and len(stored.retention) == 60000
    assert [p.name for p in folder.glob("*.json")] == ["mib_cpu_4-1_s0.json"]


def test_bench_methods_records_in_the_repository_unless_told(monkeypatch, tmp_path) -> None:
    import benchmarks.bench_methods as bm

    stores: list = []
    monkeypatch.setattr(bm, "run_bench", lambda *a, **kw: stores.append(kw["store"]))
    for flags in ([], ["--records", str(tmp_path / "mine")], ["--no-records"]):
        monkeypatch.setattr(sys, "argv", ["bench_methods", "--out", str(tmp_path), "--no-report",
                                          *flags])
        bm.main()
    default, mine, none = stores
    assert default.folder == Path(bm.__file__).parent / "results" / "cpu"
    assert mine.folder == tmp_path / "mine" and none is None


_TINY = {
    "sample": {"tiles": 3, "size": 128, "seed": 0},
    "val_sample": {"tiles": 1, "seed": 1},
    "data": {"patch_size": 64, "batch_size": 4, "samples_per_epoch": 8, "num_workers": 0,
             "chip_size": 32, "class_weights": {"car": 10.0}, "eval_tile": 64,
             "eval_overlap": 8, "val_fraction": 0.25},
    "model": {"encoder": "tiny", "weights": "none", "aspp_channels": 16, "norm": "group",
              "norm_groups": 4},
    "train": {"epochs": 1, "epochs_incremental": 1, "lr": 0.01, "accelerator": "cpu"},
}


def test_real_cells_read_back_from_records_equal_what_the_runs_gave(monkeypatch, tmp_path) -> None:
    """Trains three real cells, then builds the rows from the records alone (no run folders)."""
    import shutil

    monkeypatch.setitem(bench.PRESETS, "tiny-test", _TINY)
    out, store = tmp_path / "bench", ResultStore(tmp_path / "rec", log=lambda m: None)
    ran = bench.run_bench(["mib"], ["4-1"], "tiny-test", out, log=lambda m: None,
                          measure_costs=False, store=store, seeds=[0])
    assert [r.method for r in ran] == ["finetune", "mib", "joint"] and ran[1].retention
    assert all(r.all is not None for r in ran)
    shutil.rmtree(out / "runs")
    back = bench.collect(["mib"], ["4-1"], "tiny-test", out, [0], store=store)
    for a, b in zip(back, ran, strict=True):
        assert (a.method, a.old, a.new, a.all, a.per_class, a.retention) == (
            b.method, b.old, b.new, b.all, b.per_class, b.retention)
    assert back[1].of_joint == pytest.approx(ran[1].all / ran[2].all)
    # the sample scenes written again (new files, new times) still match the records
    shutil.rmtree(out / "sample")
    assert len(bench.collect(["mib"], ["4-1"], "tiny-test", out, [0], store=store)) == 3


def test_a_run_says_how_many_cells_are_recorded(monkeypatch, tmp_path, capsys) -> None:
    import benchmarks.bench_methods as bm

    data = _data(tmp_path / "bench" / "sample")
    store = ResultStore(tmp_path / "rec", log=lambda m: None)
    for seed in (0, 1):  # two of the six cells of mib on 4-1 with seeds 0-2
        cfg = experiment("cpu", "4-1", "mib", data, tmp_path / "runs", seed=seed)
        store.put(cfg.name, cell_fingerprint(cfg, data_digest(data)), _row(seed=seed))
    store.put("joint_cpu_4-1_s0", "stale", _row(method="joint"))
    monkeypatch.setattr(bm, "run_bench", lambda *a, **kw: None)
    monkeypatch.setattr(sys, "argv", ["bench_methods", "--methods", "mib", "--out",
                                      str(tmp_path / "bench"), "--records", str(store.folder)])
    monkeypatch.setattr(bm, "report", lambda *a: "")
    monkeypatch.setattr(bm, "update_section", lambda name, text: None)
    bm.main()
    assert (f"bench: 2 of 9 cells recorded in {store.folder}; training the other 7"
            in capsys.readouterr().out)


def test_measured_costs_cover_every_method_and_are_kept_with_the_records(monkeypatch, tmp_path):
    import argparse

    import benchmarks.bench_methods as bm

    rows = [BenchRow("4-1", m, 0.7, 0.3, 0.6, seed=0) for m in ("finetune", "mib", "joint")]
    asked: list[list[str]] = []
    monkeypatch.setattr(bm, "collect", lambda *a, **kw: rows)
    monkeypatch.setattr(bm, "interleaved_costs", lambda specs, preset, rounds: asked.append(
        list(specs)) or {m: (0.5, 100.0) for m in specs})
    args = argparse.Namespace(preset="cpu", out=str(tmp_path / "bench"), measure_cost=True,
                              cost_rounds=2, records=str(tmp_path / "rec"), no_records=False)
    text = bm.report(args, ["mib", "idec"], ["4-1"], [0])
    assert asked == [["finetune", "mib", "idec"]]  # idec has no finished run yet
    saved = json.loads((tmp_path / "rec" / "step-costs.json").read_text())
    assert saved["rounds"] == 2 and set(saved["costs"]) == {"finetune", "mib", "idec"}
    # and where `geociss bench --report-only` looks for them
    assert json.loads((tmp_path / "bench" / "step-costs.json").read_text()) == saved
    assert "--measure-cost --cost-rounds 2" in text
    args.measure_cost, args.section = False, "methods-cpu-more"  # a later report reuses them
    assert "--seeds 0 --section methods-cpu-more --jobs 3`" in bm.report(
        args, ["mib", "idec"], ["4-1"], [0])
    (tmp_path / "rec" / "step-costs.json").unlink()  # the output folder's copy serves then
    assert "step costs reused" in bm.report(args, ["mib"], ["4-1"], [0])
    assert "step costs reused from `--measure-cost --cost-rounds 2`" in bm.report(
        args, ["mib", "idec"], ["4-1"], [0])


def test_only_divergence_is_a_result_other_errors_stop_the_bench(monkeypatch, tmp_path) -> None:
    """A locked run folder (another bench at work) must not be recorded as 'diverged'."""
    import geociss.engine.runner as runner_module
    from geociss.locks import LockedError

    class Locked:
        def __init__(self, cfg, log, progress) -> None:
            pass

        def run(self):
            raise LockedError(Path("runs/finetune_cpu_4-1_s0"), Path("runs/x.lock"), None)

    monkeypatch.setattr(runner_module, "ScenarioRunner", Locked)
    store = ResultStore(tmp_path / "rec", log=lambda m: None)
    with pytest.raises(LockedError):
        bench.run_bench(["mib"], ["4-1"], "cpu", tmp_path / "a", data=_data(tmp_path / "d"),
                        log=lambda m: None, measure_costs=False, store=store)
    assert not store.folder.exists() or not list(store.folder.glob("*.json"))


def test_bench_records_prints_every_seed_and_how_far_each_task_is(monkeypatch, tmp_path, capsys):
    from benchmarks import bench_records

    monkeypatch.setattr(bench, "sample_scenes", lambda preset, folder: _data(folder))
    out, store = tmp_path / "bench", ResultStore(tmp_path / "rec", log=lambda m: None)
    data = _data(out / "sample")
    for seed, car in ((0, 0.25), (2, 0.2)):
        cfg = experiment("cpu", "4-1", "mib", data, out / "runs", seed=seed)
        store.put(cfg.name, cell_fingerprint(cfg, data_digest(data)),
                  _row(seed=seed, per_class={"car": car}))
    bench_records.main(["--methods", "mib", "--tasks", "4-1,2-3", "--class", "car", "--out",
                        str(out), "--records", str(store.folder)])
    text = capsys.readouterr().out
    assert "4-1: 2 of 9 cells finished (car IoU, %)" in text
    assert "| mib | 25.0 | - | 20.0 |" in text and "2-3: 0 of 9 cells finished" in text
    bench_records.main(["--methods", "mib", "--tasks", "4-1", "--metric", "new", "--out",
                        str(out), "--records", str(store.folder)])
    assert "| mib | 30.0 | - | 30.0 |" in capsys.readouterr().out
