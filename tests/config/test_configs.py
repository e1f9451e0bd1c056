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


def test_there_are_experiments_for_every_task():
    names = {p.stem for p in EXPERIMENTS}
    for task in ("4-1", "2-3", "2-2-1", "2-1-1-1"):
        assert f"finetune_tiny_sample-{task}_overlap" in names
        assert f"joint_resnet101_potsdam-{task}_overlap" in names
        assert f"joint_resnet101_vaihingen-{task}_overlap" in names


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
