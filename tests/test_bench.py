"""The benchmark's bookkeeping (the training itself is covered by the runner tests)."""

import pytest

from geociss.bench import PRESETS, BenchRow, describe, markdown, method_config, relative, step_cost
from geociss.errors import ConfigError


def test_relative_columns_and_markdown():
    rows = [
        BenchRow("4-1", "finetune", 0.1, 0.5, 0.2, step_seconds=1.0),
        BenchRow("4-1", "mib", 0.4, 0.3, 0.38, step_seconds=1.5, peak_mib=312.4),
        BenchRow("4-1", "joint", 0.5, 0.6, 0.4),
        BenchRow("4-1", "ilt", None, None, None, note="diverged"),
    ]
    relative(rows)
    assert rows[1].of_joint == pytest.approx(0.95)
    assert rows[1].step_vs_finetune == pytest.approx(1.5)
    assert rows[3].of_joint is None
    table = markdown(rows)
    assert "| 4-1 | mib | 40.0 | 30.0 | 38.0 | 0.95 | 1.500 | 1.50 | 312 |" in table
    assert "| 4-1 | ilt (diverged) | - | - | - |" in table


def test_the_bench_command_prints_the_ablation_table_when_idec_variants_ran(monkeypatch, tmp_path):
    from click.testing import CliRunner

    import geociss.bench as bench
    from geociss.cli.main import cli

    rows = [
        BenchRow("4-1", method, old, new, (old + new) / 2, seed=seed)
        for seed in range(3)
        for method, old, new in (
            ("finetune", 0.1, 0.3), ("idec", 0.8, 0.3 + seed / 100),
            ("idec-no-dada", 0.7, 0.4 + seed / 100), ("joint", 0.8, 0.6),
        )
    ]
    monkeypatch.setattr(bench, "run_bench", lambda *a, **kw: rows)
    out = CliRunner().invoke(cli, ["bench", "--methods", "idec,idec-no-dada", "--out",
                                   str(tmp_path)], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    assert "vs idec: Δ old" in out.output and "-10.0 [-10.0, -10.0] worse" in out.output
    monkeypatch.setattr(bench, "run_bench", lambda *a, **kw: [r for r in rows
                                                             if r.method != "idec-no-dada"])
    out = CliRunner().invoke(cli, ["bench", "--out", str(tmp_path)], env={"COLUMNS": "250"})
    assert out.exit_code == 0 and "vs idec" not in out.output


def test_method_config_reads_fragments_and_names():
    ablation = method_config("idec-no-dada")
    assert ablation["name"] == "idec" and ablation["params"]["dada"] is False
    assert method_config("joint")["name"] == "joint"
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        method_config("nope")


def test_step_cost_measures_time_and_memory_in_a_fresh_process():
    seconds, peak = step_cost("mib", "small", repeats=1)
    assert 0 < seconds < 120
    # a batch of 8 × 256² with activations kept for backward needs tens of MiB at least
    assert 10 < peak < 8000


def test_describe_states_the_preset_settings():
    text = describe("small")
    assert "tiny encoder" in text and "128-px chips" in text and "car ×8" in text
    assert "gradient norm clipped at 5" in text
    assert "gradient" not in describe("paper")


def test_experiment_takes_a_data_section_over_the_preset(tmp_path):
    """`geociss bench --data-config configs/data/potsdam.yaml`: ISPRS from its archives."""
    from fakes_isprs import others, write_potsdam

    from geociss.bench import experiment
    from geociss.engine.data import ExperimentData

    root = write_potsdam(tmp_path, ("2_10", "2_11", "2_13"), modalities=("rgb",))
    section = {
        "dataset": "potsdam",
        "root": str(root),
        "modality": "rgb",
        "schema": "isprs-rgb",
        "chip_size": 32,
        "exclude_tiles": others("potsdam", ("2_10", "2_11", "2_13")),
    }
    cfg = experiment("small", "4-1", "mib", None, tmp_path / "runs", section)
    assert cfg.data.dataset == "potsdam" and cfg.data.chip_size == 32
    assert cfg.data.batch_size == 8  # the preset fills what the section leaves out
    assert cfg.method.name == "mib" and cfg.scenario.task == "4-1"
    from geociss.data.classes import ClassSchema

    data = ExperimentData.load(cfg.data, ClassSchema.load(cfg.data.class_schema))
    assert [t.stem for t in data.val_tiles] == ["top_potsdam_2_13"]
    with pytest.raises(ValueError, match="data folder or a data section"):
        experiment("small", "4-1", "mib", None, tmp_path / "runs")


def test_bench_cli_rejects_data_and_data_config_together(tmp_path):
    from click.testing import CliRunner

    from geociss.cli.main import cli

    cfg = tmp_path / "d.yaml"
    cfg.write_text("data:\n  images: a\n  labels: b\n")
    both = CliRunner().invoke(
        cli, ["bench", "--data", str(tmp_path), "--data-config", str(cfg), "--out", str(tmp_path)]
    )
    assert both.exit_code == 2 and "not both" in both.output
    empty = tmp_path / "e.yaml"
    empty.write_text("train:\n  epochs: 1\n")
    none = CliRunner().invoke(cli, ["bench", "--data-config", str(empty), "--out", str(tmp_path)])
    assert none.exit_code == 2 and "no data: section" in none.output


def test_preset_method_params_override_the_method_fragment(tmp_path):
    from geociss.bench import experiment

    plop = experiment("small", "4-1", "plop-median", tmp_path, tmp_path / "runs")
    assert plop.method.name == "plop"
    assert plop.method.params["pod_factor"] == 0.001  # the preset's weight
    assert plop.method.params["pseudo_bins"] == 1000  # the fragment's own setting survives
    assert experiment("small", "4-1", "ilt", tmp_path, tmp_path / "r").method.params[
        "feature_weight"
    ] == 10.0
    assert "mib" not in PRESETS["small"]["method_params"]
    assert "pod_factor 0.001" in describe("small")
    paper = experiment("paper", "4-1", "plop", tmp_path, tmp_path / "p")
    assert paper.method.params["pod_factor"] == 0.01  # the papers' weights


def test_bench_cli_rejects_bad_seeds_before_any_work(tmp_path):
    from click.testing import CliRunner

    from geociss.cli.main import cli

    bad = CliRunner().invoke(cli, ["bench", "--seeds", "0,x", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "--seeds must be comma-separated integers" in bad.output
    assert not (tmp_path / "sample").exists()


def test_seeded_cells_have_their_own_run_folders_and_train_seed(tmp_path):
    from geociss.bench import experiment

    a = experiment("cpu", "4-1", "mib", tmp_path, tmp_path / "runs", seed=0)
    b = experiment("cpu", "4-1", "mib", tmp_path, tmp_path / "runs", seed=2)
    assert (a.name, b.name) == ("mib_cpu_4-1_s0", "mib_cpu_4-1_s2")
    assert (a.train.seed, b.train.seed) == (0, 2)
    assert a.model.encoder == "efficientnet_lite0" and a.data.normalization == "imagenet"


def test_sample_scenes_hold_out_scenes_of_their_own_seed(tmp_path, monkeypatch):
    """The cpu preset validates on scenes generated apart, not on a hash split of one set."""
    import copy

    from geociss.bench import PRESETS, experiment, sample_scenes
    from geociss.data.classes import ClassSchema
    from geociss.engine.data import ExperimentData

    small = copy.deepcopy(PRESETS["cpu"])
    small["sample"] = {"tiles": 3, "size": 64, "seed": 0}
    small["val_sample"] = {"tiles": 2, "seed": 1}
    monkeypatch.setitem(PRESETS, "cpu", small)
    folder = sample_scenes("cpu", tmp_path / "sample")
    assert len(list((folder / "images").glob("*.tif"))) == 3
    assert len(list((folder / "val" / "images").glob("*.tif"))) == 2
    cfg = experiment("cpu", "4-1", "mib", folder, tmp_path / "runs")
    data = ExperimentData.load(cfg.data, ClassSchema.load(cfg.data.class_schema))
    assert [t.image.parent for t in data.val_tiles] == [folder / "val" / "images"] * 2
    assert len(data.train_tiles) == 3  # every generated training scene trains
    # the held-out scenes differ from the training scenes of the same index
    import rasterio

    with rasterio.open(folder / "images" / "scene_000.tif") as a, rasterio.open(
        folder / "val" / "images" / "scene_000.tif"
    ) as b:
        assert (a.read() != b.read()).any()
    assert "3 sample scenes of 64 px (2 more, of seed 1, held out" in describe("cpu")
    # a folder without val/ keeps the hash split of data.val_fraction
    plain = experiment("small", "4-1", "mib", tmp_path / "plain", tmp_path / "runs")
    assert plain.data.val_images is None


def test_collect_scores_a_shared_joint_model_with_the_tasks_own_split():
    """A joint model cached by 4-1 serves 2-3: old/new come from the run's own report."""
    from types import SimpleNamespace

    from geociss.bench import _row_from_bundle

    def metrics(old, new, old_ids):
        channels = [{"name": n, "iou": 0.5} for n in ("impervious surfaces", "building")]
        return {"miou": {"old": old, "new": new, "all": 0.7}, "channels": channels,
                "old_channels": old_ids}

    stored = metrics(0.8, 0.3, [0, 1, 2, 3])  # what 4-1 stored when it trained the model
    bundle = SimpleNamespace(steps=[SimpleNamespace(metrics=stored, info={})])
    row = _row_from_bundle(bundle, "2-3", "joint", 0, metrics(0.73, 0.69, [0, 1]))
    assert (row.old, row.new, row.all) == (0.73, 0.69, 0.7)
    assert _row_from_bundle(bundle, "4-1", "joint", 0).old == 0.8


def test_interleaved_costs_measure_every_method_each_round_and_take_medians(monkeypatch):
    from geociss.bench import cost

    calls = []
    values = iter([1.0, 2.0, 9.0, 2.2, 1.1, 2.1])  # round 1: ft, mib; round 2; round 3

    def fake(spec, preset, repeats):
        calls.append(spec)
        return next(values), float(len(calls))

    monkeypatch.setattr(cost, "step_cost", fake)
    out = cost.interleaved_costs(["finetune", "mib"], "cpu", rounds=3)
    assert calls == ["finetune", "mib"] * 3
    assert out["finetune"] == (1.1, 5.0) and out["mib"] == (2.1, 6.0)


def test_each_cell_says_how_far_the_bench_is(monkeypatch, tmp_path):
    import geociss.engine.runner as runner_module
    from geociss import bench
    from geociss.errors import DivergedError

    class Diverging:  # every cell fails at once: a result row, no training
        def __init__(self, cfg, log, progress):
            pass

        def run(self):
            raise DivergedError("loss is not finite")

    monkeypatch.setattr(runner_module, "ScenarioRunner", Diverging)
    monkeypatch.setattr(bench, "experiment", lambda *a: None)
    logs: list[str] = []
    rows = bench.run_bench(["mib"], ["4-1", "2-3"], "cpu", tmp_path, data=tmp_path,
                           log=logs.append, seeds=[0, 1], measure_costs=False)
    assert len(rows) == 12 and {r.note for r in rows} == {"diverged"}
    starts = [line for line in logs if line.startswith("bench: ") and "so far)" in line]
    assert starts[0] == "bench: finetune on 4-1, seed 0 (cell 1 of 12, 0 min so far)"
    assert starts[-1].startswith("bench: joint on 2-3, seed 1 (cell 12 of 12, ")
    assert "bench: mib on 4-1 (seed 1) failed: loss is not finite" in logs
