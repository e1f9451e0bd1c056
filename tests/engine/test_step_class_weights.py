"""Class-aware sampling weights apply only at the steps whose labels show the class.

In a 4-1 scenario car is background at step 0: its pixels are not known there in a real run,
so a car weight must not steer step 0's windows (it did: with car ×100, 55 % of the windows of
the cpu benchmark's 4-1 step 0 came from chips holding cars, 10 % without).
"""

from __future__ import annotations

import numpy as np
import pytest
from reliability.test_step0_cache import config, scenes

from geociss.data.classes import ClassSchema
from geociss.data.records import Region, Window
from geociss.data.samplers import region_weights
from geociss.data.scenarios import Scenario
from geociss.engine.data import StepDataModule, step_class_weights, step_sampling
from geociss.engine.runner import ScenarioRunner
from geociss.errors import ConfigError

ISPRS = ClassSchema.preset("isprs")
CAR = ISPRS.class_id("car")


def scenario(task: str) -> Scenario:
    return Scenario.from_config({"task": task, "unlearned": ["clutter"]}, ISPRS)


def test_labelled_classes_are_the_steps_own_or_every_one_so_far_with_keep_old():
    s = scenario("4-1")
    assert s.labelled_classes(0) == [0, 1, 2, 3]
    assert s.labelled_classes(1) == [CAR]
    assert s.labelled_classes(1, keep_old=True) == [0, 1, 2, 3, CAR]
    # the training look-up table agrees: car is background (0) at step 0, its channel at step 1
    assert s.train_lut(0)[CAR] == 0 and s.train_lut(1)[CAR] == s.channel_of(CAR)


def test_a_weight_applies_only_where_its_class_is_labelled():
    w = {"car": 100.0, "building": 2.0}
    s = scenario("4-1")
    assert step_class_weights(w, ISPRS, s.labelled_classes(0)) == {"building": 2.0}
    assert step_class_weights(w, ISPRS, s.labelled_classes(1)) == {"car": 100.0}
    assert step_class_weights(w, ISPRS, None) == w  # every class labelled (joint, extend)
    assert step_class_weights({"car": 100.0}, ISPRS, s.labelled_classes(0)) is None
    assert step_class_weights(None, ISPRS, [0]) is None
    with pytest.raises(ConfigError):
        step_class_weights({"cars": 1.0}, ISPRS, [0])  # a misspelt class still fails


def test_step_zero_does_not_draw_car_chips_more_often(tmp_path):
    # two chips: one with building only, one with building and a few car pixels
    plain = np.zeros(6, np.int64)
    plain[1] = 100
    cars = plain.copy()
    cars[CAR] = 20
    regions = [Region(Window(0, 0, 0, 10, 10), plain, 0), Region(Window(0, 0, 10, 10, 10), cars, 0)]
    s = scenario("4-1")
    from geociss.config.experiment import DataConfig

    cfg = DataConfig(images=str(tmp_path), labels=str(tmp_path), class_weights={"car": 100.0})
    lut = s.train_lut(0)
    cfg0, dropped0 = step_sampling(cfg, s, 0, keep_old=False)
    cfg1, dropped1 = step_sampling(cfg, s, 1, keep_old=False)
    assert (dropped0, dropped1) == (["car"], [])
    assert cfg.class_weights == {"car": 100.0}  # the experiment's settings are left as they were
    step0 = StepDataModule([], ISPRS, regions, lut, cfg0, 0)
    step1 = StepDataModule([], ISPRS, regions, lut, cfg1, 0)
    assert step0.class_weights() is None
    assert region_weights(regions, step0.class_weights()).tolist() == [100.0, 120.0]
    assert region_weights(regions, step1.class_weights()).tolist() == [100.0, 2100.0]


def test_the_step_hash_holds_the_weights_that_apply(tmp_path):
    root = scenes(tmp_path)

    def runner(weights, method="finetune"):
        cfg = config(root, method)
        data = cfg.data.model_copy(update={"class_weights": weights})
        return ScenarioRunner(cfg.model_copy(update={"data": data}), log=lambda _: None)

    plain, car = runner(None), runner({"car": 100.0})
    # step 0 of 4-1 does not label car: the same step-0 model, shared through the cache
    assert car.step_hash(0, None) == plain.step_hash(0, None)
    # the car step does: another model
    assert car.step_hash(1, "p") != plain.step_hash(1, "p")
    assert runner({"car": 30.0}).step_hash(1, "p") != car.step_hash(1, "p")
    # joint training labels every class: the weight applies
    joint_plain, joint_car = runner(None, "joint"), runner({"car": 100.0}, "joint")
    assert joint_car.step_hash(0, None) != joint_plain.step_hash(0, None)


def test_the_run_says_which_weights_a_step_leaves_out(tmp_path, monkeypatch):
    from geociss.engine import runner as runner_module

    root = scenes(tmp_path)
    cfg = config(root)
    cfg = cfg.model_copy(
        update={"data": cfg.data.model_copy(update={"class_weights": {"car": 9.0}})}
    )
    given: list = []  # the weights each step's data module draws with
    prepare = runner_module.prepare_step

    def spy(student, teacher, method, data, train, **kw):
        module, dm = prepare(student, teacher, method, data, train, **kw)
        given.append(dm.class_weights())
        return module, dm

    monkeypatch.setattr(runner_module, "prepare_step", spy)
    logs: list[str] = []
    ScenarioRunner(cfg, log=logs.append, progress=False).run()
    assert given == [None, {CAR: 9.0}]
    assert (
        "step 0: sampling weights of car not applied (not labelled at this step: background there)"
        in logs
    )
    assert not any(line.startswith("step 1: sampling weights") for line in logs)


def test_the_diagnostic_shares_are_the_expectations_of_the_region_weights():
    from benchmarks.diag_step_weights import shares

    plain = np.zeros(6, np.int64)
    plain[1] = 100
    cars = plain.copy()
    cars[CAR] = 20
    regions = [Region(Window(0, 0, 0, 10, 10), plain, 0), Region(Window(0, 0, 10, 10, 10), cars, 0)]
    draws, pixels = shares(regions, None, CAR)  # weights 100 and 120
    assert draws == pytest.approx(120 / 220) and pixels == pytest.approx(20 / 220)
    draws, pixels = shares(regions, {CAR: 100.0}, CAR)  # weights 100 and 2100
    assert draws == pytest.approx(2100 / 2200)
    assert pixels == pytest.approx(2100 * (20 / 120) / 2200)
