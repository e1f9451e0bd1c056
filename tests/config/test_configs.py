"""Every shipped config file validates, names a registered method and a valid scenario."""

from pathlib import Path

import pytest

from geociss.config.experiment import load_experiment
from geociss.config.load import load_config
from geociss.data.classes import ClassSchema
from geociss.data.scenarios import Scenario
from geociss.methods import get_method

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXPERIMENTS = sorted((CONFIGS / "experiments").glob("*.yaml"))


TASKS = ("4-1", "2-3", "2-2-1", "2-1-1-1")
METHODS = ("finetune", "joint", "ilt", "mib", "plop", "ucd", "dkd", "idec")


def test_there_are_experiments_for_every_task():
    names = {p.stem for p in EXPERIMENTS}
    for task in TASKS:
        assert f"finetune_tiny_sample-{task}_overlap" in names
        for method in METHODS:
            for dataset in ("potsdam", "vaihingen"):
                assert f"{method}_resnet101_{dataset}-{task}_overlap" in names


@pytest.mark.parametrize("dataset", ["potsdam", "vaihingen"])
def test_isprs_experiments_read_the_official_archives_with_the_idec_protocol(dataset):
    for task in TASKS:
        for method in METHODS:
            cfg = load_experiment(
                CONFIGS / "experiments" / f"{method}_resnet101_{dataset}-{task}_overlap.yaml"
            )
            assert (cfg.data.dataset, cfg.data.split, cfg.data.class_schema) == (
                dataset, "official", "isprs-rgb"
            )
            assert (cfg.data.chip_size, cfg.data.eval_tile, cfg.data.eval_overlap) == (600, 600, 0)
            assert cfg.method.name == method and cfg.scenario.task == task
            assert cfg.scenario.unlearned == ["clutter"]


def test_full_tile_protocol_fragment_layers_on_an_experiment(tmp_path):
    exp = tmp_path / "full.yaml"
    exp.write_text(
        f"include: [{CONFIGS}/experiments/mib_resnet101_vaihingen-2-3_overlap.yaml, "
        f"{CONFIGS}/protocols/full-tile.yaml]\n"
    )
    cfg = load_experiment(exp)
    assert (cfg.data.eval_tile, cfg.data.eval_overlap, cfg.data.chip_size) == (1024, 256, 600)
    assert cfg.method.name == "mib" and cfg.data.dataset == "vaihingen"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_validates(path):
    cfg = load_experiment(path)
    assert cfg.name == path.stem
    method = get_method(cfg.method.name)
    method.Params.model_validate(cfg.method.params)
    scen = Scenario.from_config(cfg.scenario, ClassSchema.preset("isprs"))
    assert scen.num_steps == len(cfg.scenario.task.split("-"))


@pytest.mark.parametrize("path", sorted((CONFIGS / "methods").glob("*.yaml")), ids=lambda p: p.stem)
def test_method_fragment_validates(path):
    cfg = load_config(path)["method"]
    get_method(cfg["name"]).Params.model_validate(cfg.get("params", {}))


@pytest.mark.parametrize("path", sorted((CONFIGS / "models").glob("*.yaml")), ids=lambda p: p.stem)
def test_model_fragments_validate_and_name_a_registered_encoder(path):
    from geociss.models.config import ModelConfig
    from geociss.models.encoders import ENCODERS

    cfg = ModelConfig.model_validate(load_config(path)["model"])
    assert cfg.encoder in ENCODERS
