import numpy as np
import pytest

from geociss.data.classes import IGNORE_INDEX, ClassSchema
from geociss.data.records import Region, Window
from geociss.data.scenarios import Scenario, ScenarioConfig, parse_task
from geociss.errors import ConfigError

ISPRS = ClassSchema.preset("isprs")
IMP, BLD, LOW, TREE, CAR, CLU = range(6)


def isprs(task: str, **kw) -> Scenario:
    return Scenario.from_config({"task": task, "unlearned": ["clutter"], **kw}, ISPRS)


def voc_like() -> ClassSchema:
    classes = [{"id": 0, "name": "background", "color": "#000000"}]
    classes += [{"id": i, "name": f"c{i}", "color": f"#0000{i:02x}"} for i in range(1, 21)]
    return ClassSchema.from_dict({"background": "background", "classes": classes})


def no_bg_schema() -> ClassSchema:
    names = ["water", "forest", "field", "road"]
    return ClassSchema.from_dict(
        {"classes": [{"id": i, "name": n, "color": f"#10{i:02x}20"} for i, n in enumerate(names)]}
    )


@pytest.mark.parametrize(
    ("task", "n", "counts"),
    [
        ("4-1", 5, [4, 1]),
        ("2-3", 5, [2, 3]),
        ("2-2-1", 5, [2, 2, 1]),
        ("2-1-1-1", 5, [2, 1, 1, 1]),
        ("2-1", 5, [2, 1, 1, 1]),  # IDEC's name for 2-1-1-1
        ("15-5s", 20, [15, 1, 1, 1, 1, 1]),
        ("10-1", 20, [10] + [1] * 10),
        ("5-3", 20, [5, 3, 3, 3, 3, 3]),
        ("offline", 5, [5]),
        ("joint", 5, [5]),
    ],
)
def test_parse_task(task, n, counts):
    assert parse_task(task, n) == counts


@pytest.mark.parametrize("task", ["4-2", "3-3-3", "abc", "4_1", "0-5", "2-2s-1", "4"])
def test_parse_task_errors(task):
    with pytest.raises(ConfigError, match="scenario.task"):
        parse_task(task, 5)


def test_isprs_idec_tasks():
    s = isprs("4-1")
    assert s.steps == [[IMP, BLD, LOW, TREE], [CAR]]
    assert s.channels == [IMP, BLD, LOW, TREE, CAR]
    assert s.classes_per_step == [4, 1]
    assert s.seen_channels(0) == 4 and s.seen_channels(1) == 5
    assert list(s.new_channels(1)) == [4]
    assert isprs("2-1").steps == [[IMP, BLD], [LOW], [TREE], [CAR]]
    assert isprs("2-2-1").steps == [[IMP, BLD], [LOW, TREE], [CAR]]
    assert isprs("2-3").classes_per_step == [2, 3]


def test_train_lut_background_shift():
    s = isprs("2-2-1")
    lut = s.train_lut(1)
    # new classes keep their channel, old/future/unlearned classes become background, 255 kept
    assert lut[LOW] == 2 and lut[TREE] == 3
    assert lut[BLD] == 0 and lut[IMP] == 0 and lut[CAR] == 0 and lut[CLU] == 0
    assert lut[IGNORE_INDEX] == IGNORE_INDEX
    step0 = s.train_lut(0)
    assert step0[IMP] == 0 and step0[BLD] == 1 and step0[LOW] == 0
    keep = s.train_lut(2, keep_old=True)
    assert [keep[c] for c in (IMP, BLD, LOW, TREE, CAR)] == [0, 1, 2, 3, 4]


def test_eval_lut_conventions():
    s = isprs("2-2-1")
    lut = s.eval_lut(1)
    assert [lut[c] for c in (IMP, BLD, LOW, TREE)] == [0, 1, 2, 3]
    assert lut[CAR] == IGNORE_INDEX  # future class ignored
    assert lut[CLU] == IGNORE_INDEX  # unlearned class ignored when the background is real
    bgfuture = isprs("2-2-1", future="background").eval_lut(1)
    assert bgfuture[CAR] == 0
    assert list(s.eval_lut(2)[:5]) == [0, 1, 2, 3, 4]


def test_lut_applied_to_label_array():
    s = isprs("4-1")
    labels = np.array([[IMP, BLD, CAR], [CLU, 255, TREE]], dtype=np.uint8)
    assert s.train_lut(1)[labels].tolist() == [[0, 0, 4], [0, 255, 0]]
    assert s.eval_lut(1)[labels].tolist() == [[0, 1, 4], [255, 255, 3]]


def test_voc_convention_background_not_counted():
    schema = voc_like()
    s = Scenario.from_config({"task": "15-5", "count_background": False}, schema)
    assert s.classes_per_step == [16, 5]
    assert s.steps[0][0] == 0 and s.channels[:3] == [0, 1, 2]
    with pytest.raises(ConfigError, match="covers 20 classes but 21"):
        Scenario.from_config({"task": "15-5"}, schema)
    assert Scenario.from_config({"task": "15-5s", "count_background": False}, schema).num_steps == 6


def test_implicit_background_channel():
    s = Scenario.from_config({"task": "2-1-1"}, no_bg_schema())
    assert s.channels == [None, 0, 1, 2, 3]
    assert s.channel_names[0] == "background"
    assert s.classes_per_step == [3, 1, 1]
    assert s.train_lut(1)[2] == 3 and s.train_lut(1)[0] == 0
    assert s.eval_lut(0)[2] == 255  # future class ignored


def test_explicit_steps_and_class_order():
    s = Scenario.from_config(
        {
            "steps": [["impervious surfaces", "tree"], ["car", "building"], ["low vegetation"]],
            "unlearned": ["clutter"],
        },
        ISPRS,
    )
    assert s.channels == [IMP, TREE, CAR, BLD, LOW]
    lut = s.train_lut(1)
    assert lut[CAR] == 2 and lut[BLD] == 3 and lut[TREE] == 0
    ordered = isprs(
        "4-1", order=["impervious surfaces", "car", "tree", "building", "low vegetation"]
    )
    assert ordered.steps == [[IMP, CAR, TREE, BLD], [LOW]]


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"task": "3-2"}, "covers 5 classes but 6"),  # clutter not declared unlearned
        ({"task": "4-1", "steps": [[0]]}, "exactly one"),
        (
            {
                "steps": [
                    ["building", "low vegetation", "tree", "clutter"],
                    ["impervious surfaces", "car"],
                ]
            },
            "must be learned at step 0",
        ),
        (
            {"steps": [["impervious surfaces", "car"], ["car"]], "unlearned": []},
            "more than one step",
        ),
        ({"steps": [["impervious surfaces"]], "unlearned": ["clutter"]}, "in no step"),
        ({"task": "4-1", "unlearned": ["pond"]}, "no class 'pond'"),
        ({"task": "4-1", "setting": "sideways"}, "setting"),
        ({"task": "4-1", "bogus": 1}, "bogus"),
    ],
)
def test_config_errors(config, match):
    with pytest.raises(ConfigError, match=match):
        Scenario.from_config(config, ISPRS)


def region(classes: dict[int, int]) -> Region:
    hist = np.zeros(6, dtype=np.int64)
    for c, n in classes.items():
        hist[c] = n
    return Region(Window(0, 0, 0, 8, 8), hist, 0)


def test_overlap_and_disjoint_selection():
    regions = [
        region({IMP: 10, BLD: 5}),  # 0: base classes only
        region({IMP: 10, LOW: 3}),  # 1: step-1 class
        region({LOW: 3, CAR: 2}),  # 2: step-1 class + future class
        region({CAR: 4, CLU: 5}),  # 3: step-2 class + unlearned
        region({IMP: 64}),  # 4: background only
    ]
    over = isprs("2-2-1")
    disj = isprs("2-2-1", setting="disjoint")

    def pick(s, t):
        return [i for i, r in enumerate(regions) if s.selects(r.hist, t)]

    assert pick(over, 0) == [0]  # the background class never drives selection
    assert pick(over, 1) == [1, 2]
    assert pick(disj, 1) == [1]  # region 2 holds a future class (car)
    assert pick(over, 2) == [2, 3] and pick(disj, 2) == [2, 3]
    assert len(over.select(regions, 1)) == 2
    strict = isprs("2-2-1", min_pixels=3)
    assert pick(strict, 2) == [3]


def test_offline_single_step():
    s = isprs("offline")
    assert s.num_steps == 1 and s.classes_per_step == [5]
    assert s.selects(region({IMP: 3}).hist, 0)


def test_step_out_of_range_and_describe():
    s = isprs("4-1")
    with pytest.raises(ConfigError, match="steps 0..1"):
        s.train_lut(2)
    d = s.to_dict()
    assert d["steps"][1] == ["car"] and d["background"] == "impervious surfaces"
    assert "4-1" in repr(s)


def test_scenario_config_model_defaults():
    cfg = ScenarioConfig(task="4-1")
    assert cfg.setting == "overlap" and cfg.future == "ignore" and cfg.count_background
