"""Official ISPRS distributions through the config, the catalogue, the sampler and ``scan``."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from fakes_isprs import others, write_potsdam, write_vaihingen
from torch.utils.data import DataLoader

from geociss.cli.main import cli
from geociss.config.experiment import DataConfig, ExperimentConfig
from geociss.data.classes import ClassSchema
from geociss.data.dataset import Collate, WindowDataset
from geociss.data.scenarios import Scenario
from geociss.engine.data import ExperimentData
from geociss.errors import ConfigError

RGB = ClassSchema.preset("isprs-rgb")
KEEP = ("2_10", "2_11", "2_13")


def data_config(**kw) -> DataConfig:
    base = {"schema": "isprs-rgb", "chip_size": 32, "patch_size": 24, "batch_size": 4,
            "samples_per_epoch": 8, "num_workers": 0}
    return DataConfig.model_validate({**base, **kw})


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "folder"])
def test_experiment_data_trains_on_official_train_and_validates_on_test(tmp_path, zipped):
    root = write_potsdam(tmp_path, KEEP, zipped=zipped, modalities=("irrg",))
    cfg = data_config(dataset="potsdam", root=root, modality="irrg",
                      exclude_tiles=others("potsdam", KEEP))
    data = ExperimentData.load(cfg, RGB)
    assert [t.stem for t in data.train.tiles] == ["top_potsdam_2_10", "top_potsdam_2_11"]
    assert data.train_tiles == [0, 1]
    assert [t.stem for t in data.val_tiles] == ["top_potsdam_2_13"]
    assert len(data.regions()) == 2 * 4  # 64 px tiles in 32 px chips
    assert len(data.mean) == 3

    # the step's regions go through the ordinary sampler and loader and yield a batch
    from geociss.data.samplers import RandomWindowSampler

    scenario = Scenario.from_config({"task": "4-1", "unlearned": ["clutter"]}, RGB)
    regions = data.step_regions(scenario, 1)
    sampler = RandomWindowSampler(regions, cfg.patch_size, cfg.samples_per_epoch, seed=0,
                                  tiles=data.train.tiles)
    loader = DataLoader(WindowDataset(data.train.tiles, RGB), batch_size=4, sampler=sampler,
                        collate_fn=Collate(scenario.train_lut(1)))
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 24, 24) and batch["image"].dtype == torch.uint8
    assert batch["mask"].shape == (4, 24, 24)
    assert set(batch["mask"].unique().tolist()) <= {0, 4, 255}  # step 1: car, rest background
    assert batch["crs"][0] is not None


def test_train_holdout_split_and_vaihingen_in_pixel_space(tmp_path):
    root = write_vaihingen(tmp_path, ("1", "3", "5"))
    cfg = data_config(dataset="vaihingen", root=root, split="train-holdout", val_fraction=0.4,
                      exclude_tiles=others("vaihingen", ("1", "3", "5")))
    data = ExperimentData.load(cfg, RGB)
    assert len(data.train.tiles) == 3 and 1 <= len(data.val_tiles) <= 2
    assert len(data.train_tiles) + len(data.val_tiles) == 3
    assert all(t.crs is None for t in data.train.tiles)
    window = data.regions()[0].window
    sample = WindowDataset(data.train.tiles, RGB)[window]
    assert sample["crs"] is None and sample["image"].shape[0] == 3


def test_data_config_validation():
    ok = data_config(dataset="potsdam", root="data/potsdam")
    assert ok.images is None and ok.split == "official" and ok.modality is None
    cases = [
        ({}, "give data.images and data.labels, or data.dataset and root"),
        ({"dataset": "potsdam"}, "data.dataset needs data.root"),
        ({"dataset": "potsdam", "root": "r", "images": "i"}, "remove data.images"),
        ({"dataset": "paris", "root": "r"}, "unknown ISPRS dataset 'paris'"),
        ({"dataset": "vaihingen", "root": "r", "modality": "rgb"}, "choose one of: irrg"),
        ({"dataset": "potsdam", "root": "r", "exclude_tiles": ["1_1"]}, "1_1 is not a tile"),
        ({"dataset": "potsdam", "root": "r", "split": "val"}, "split"),
    ]
    for kw, message in cases:
        with pytest.raises(ValueError, match=message):
            data_config(**kw)


def test_experiment_config_with_dataset_loads(tmp_path):
    cfg = ExperimentConfig.model_validate({
        "data": {"dataset": "vaihingen", "root": str(tmp_path), "exclude_tiles": [1, "3"]},
        "scenario": {"task": "2-3", "unlearned": ["clutter"]},
    })
    assert cfg.data.exclude_tiles == [1, "3"] and cfg.data.dataset == "vaihingen"


def test_scan_cli_on_official_archives(tmp_path):
    root = write_potsdam(tmp_path, KEEP, modalities=("rgbir",))
    out = tmp_path / "summary.json"
    args = ["scan", str(root), "--dataset", "potsdam", "--modality", "rgbir", "--split", "test",
            "--exclude-tiles", ",".join(others("potsdam", KEEP)), "--chip-size", "32",
            "--json", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "ISPRS Potsdam, rgbir, official test split" in res.output
    assert "4_Ortho_RGBIR.zip" in res.output and "EPSG:32633" in res.output
    summary = json.loads(out.read_text())
    assert summary["tiles"] == 1 and summary["bands"] == 4 and summary["regions"] == 4
    assert [c["name"] for c in summary["classes"]][4] == "car"


def test_scan_cli_errors_are_one_line(tmp_path):
    root = write_potsdam(tmp_path, KEEP, modalities=("rgb",))
    res = CliRunner().invoke(cli, ["scan", str(root), "--dataset", "potsdam"])
    assert res.exit_code == 2
    line = res.output.strip()
    assert "\n" not in line and "no top_potsdam_2_12_RGB.tif" in line
    assert "2_Ortho_RGB.zip" in line
    res = CliRunner().invoke(cli, ["scan", str(root), str(root), "--dataset", "potsdam"])
    assert res.exit_code == 2 and "give only the dataset folder" in res.output


def test_scan_cli_notes_the_bad_tile(tmp_path):
    from geociss.data.isprs import get_dataset

    root = write_potsdam(tmp_path, get_dataset("potsdam").train, zipped=False,
                         modalities=("rgb",), size=16)
    res = CliRunner().invoke(cli, ["scan", str(root), "--dataset", "potsdam", "--no-cache"])
    assert res.exit_code == 0, res.output
    assert "note: ISPRS Potsdam tile 4_12 left out" in res.output
    assert "23" in res.output


def test_official_catalog_is_cached(tmp_path, monkeypatch):
    from geociss.data import tile_scan
    from geociss.data.isprs import official_catalog

    root = write_potsdam(tmp_path, KEEP, modalities=("rgb",))
    kw = {"exclude": others("potsdam", KEEP)}
    first, _ = official_catalog("potsdam", root, RGB, "train", **kw)

    def boom(*args, **kwargs):
        raise AssertionError("rescanned an unchanged archive")

    monkeypatch.setattr(tile_scan, "scan_tile", boom)
    again, _ = official_catalog("potsdam", root, RGB, "train", **kw)
    assert [t.stem for t in again] == [t.stem for t in first]
    assert [t.hist.tolist() for t in again] == [t.hist.tolist() for t in first]
    with pytest.raises(ConfigError, match="unknown split"):
        official_catalog("potsdam", root, RGB, "val", **kw)  # type: ignore[arg-type]


def test_data_nodata_reaches_the_official_catalogues(tmp_path):
    """data.nodata applies to official tiles without a nodata tag, train and test alike."""
    root = write_potsdam(tmp_path, KEEP, zipped=True, modalities=("irrg",))
    base = {"dataset": "potsdam", "root": root, "modality": "irrg",
            "exclude_tiles": others("potsdam", KEEP)}
    plain = ExperimentData.load(data_config(**base), RGB)
    assert all(t.nodata is None for t in [*plain.train.tiles, *plain.val_tiles])
    tagged = ExperimentData.load(data_config(**base, nodata=0), RGB)
    assert all(t.nodata == 0 for t in [*tagged.train.tiles, *tagged.val_tiles])
    again = ExperimentData.load(data_config(**base), RGB)  # its own cache entry, not the other's
    assert all(t.nodata is None for t in again.train.tiles)
