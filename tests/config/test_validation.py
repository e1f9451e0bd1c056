"""Validation errors: every problem, one line each, with the nearest key for unknown keys."""

from __future__ import annotations

import pytest
import yaml

from geociss.config.experiment import ExperimentConfig, load_experiment
from geociss.config.validation import MAX_PROBLEMS, validate_model
from geociss.errors import ConfigError

GOOD = {"data": {"images": "img", "labels": "lbl"}, "scenario": {"task": "4-1"}}


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_model(ExperimentConfig, data, "exp.yaml")
    return str(info.value).splitlines()


def test_every_problem_is_listed_with_the_file_and_key_path():
    data = {
        "data": {**GOOD["data"], "bandz": [1], "batch_size": 0},
        "scenario": {"task": "4-1"},
        "train": {"epochs": 0, "optimizer": "adam", "devices": "x"},
        "trian": {},
    }
    assert problems_of(data) == [
        "exp.yaml: 6 problems",
        "exp.yaml: data.batch_size: Input should be greater than or equal to 1 (got 0)",
        "exp.yaml: data.bandz: unknown key; did you mean 'bands'?",
        "exp.yaml: train.epochs: Input should be greater than or equal to 1 (got 0)",
        "exp.yaml: train.optimizer: Input should be 'sgd' or 'adamw' (got 'adam')",
        "exp.yaml: train.devices: Input should be a valid integer or 'auto' (got 'x')",
        "exp.yaml: trian: unknown key; did you mean 'train'?",
    ]


def test_one_problem_is_one_line_and_aliases_are_suggested():
    data = {"data": {**GOOD["data"], "shema": "isprs"}, "scenario": {"task": "4-1"}}
    assert problems_of(data) == ["exp.yaml: data.shema: unknown key; did you mean 'schema'?"]
    assert problems_of({"data": GOOD["data"]}) == ["exp.yaml: scenario: required key is missing"]


def test_unknown_key_without_a_near_match_lists_the_keys_of_a_small_section():
    (line,) = problems_of({**GOOD, "method": {"name": "mib", "zzz": 1}})
    assert line == "exp.yaml: method.zzz: unknown key; valid keys: name, params"
    (line,) = problems_of({**GOOD, "data": {**GOOD["data"], "qqqq": 1}})
    assert line == "exp.yaml: data.qqqq: unknown key (every key is listed in docs/configuration.md)"


def test_the_list_is_capped_at_a_screenful():
    data = {**GOOD, "train": {f"unknown_{i:02d}": 1 for i in range(MAX_PROBLEMS + 5)}}
    lines = problems_of(data)
    assert lines[0] == f"exp.yaml: {MAX_PROBLEMS + 5} problems"
    assert len(lines) == MAX_PROBLEMS + 2
    assert lines[-1] == "exp.yaml: ... and 5 more problem(s)"


def test_union_members_are_one_problem_at_the_key_the_user_wrote():
    data = {**GOOD, "scenario": {"steps": [["a", {}]]}}
    (line,) = problems_of(data)
    expected = "Input should be a valid integer or a valid string"
    assert line == f"exp.yaml: scenario.steps[0][1]: {expected}"


def test_load_experiment_names_the_file_and_method_params_get_suggestions(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "modle": {"encoder": "tiny"}}), encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}: modle: unknown key; did you mean 'model'\?$"):
        load_experiment(path)
    from geociss.methods import get_method

    with pytest.raises(ConfigError, match=r"method mib: params: kd_weigth: .*'kd_weight'"):
        get_method("mib").from_config({"kd_weigth": 10}, None)  # type: ignore[arg-type]
