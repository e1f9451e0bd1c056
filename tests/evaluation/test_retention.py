"""Old-class retention: the formulas on a hand-checked matrix, and the counting over tiles."""

import numpy as np
import pytest
import rasterio
import torch

from geociss.data.catalog import Catalog
from geociss.data.classes import ClassSchema
from geociss.engine.retention import NEW, agreement_over_tiles, scoring_lut, step_lut
from geociss.evaluation.retention import Retention
from geociss.models.segmenter import ModelOutput

from fakes import random_pair


def test_formulas_on_a_hand_checked_matrix():
    # rows: teacher's old class; columns: student's old 0, old 1, new 2
    a = np.array([[8, 1, 1], [0, 4, 0]])
    r = Retention.from_agreement(a, ["road", "roof"], threshold=0.9)
    road, roof = r.classes
    assert (road.teacher_pixels, road.student_pixels) == (10, 8)
    assert road.kept == pytest.approx(0.8) and road.to_new == pytest.approx(0.1)
    assert road.area_change == pytest.approx(8 / 10 - 1)
    assert (roof.teacher_pixels, roof.student_pixels) == (4, 5)
    assert roof.kept == 1.0 and roof.to_new == 0.0 and roof.area_change == pytest.approx(0.25)
    assert r.pixels == 14
    assert [c.name for c in r.collapsing()] == ["road"]
    (warning,) = r.warnings()
    assert "'road' keeps 80 %" in warning and "10 % went to the new classes" in warning
    assert Retention.from_dict(r.to_dict()) == r


def test_a_collapsing_real_background_class_says_what_to_do():
    # 'bare' plays background and loses 90 % of its pixels to the new class; 'water' loses
    # 60 % to 'bare': both collapse, only the background's warning names the remedy
    a = np.array([[1, 0, 9], [6, 4, 0]])
    r = Retention.from_agreement(a, ["bare", "water"], background="bare")
    bare, water = r.warnings()
    assert "'bare' keeps 10 %" in bare and "90 % went to the new classes" in bare
    assert "background: null" in bare and "plays background" in bare
    assert "'water' keeps 40 %" in water and "background" not in water
    assert Retention.from_dict(r.to_dict()) == r
    implicit = Retention.from_agreement(a, ["background", "water"])
    assert "background: null" not in implicit.warnings()[0]


def test_a_class_the_teacher_never_predicts_has_no_score():
    r = Retention.from_agreement(np.array([[3, 0, 0], [0, 0, 0]]), ["a", "b"])
    assert r.classes[1].kept is None and r.classes[1].area_change is None
    assert r.collapsing() == [] and "-" in r.lines()[-1]


def test_matrix_must_fit_the_names():
    with pytest.raises(ValueError):
        Retention.from_agreement(np.zeros((3, 2)), ["a", "b", "c"])


def test_step_lut_leaves_out_new_and_keeps_ignored():
    ev = np.full(256, 255, np.uint8)
    ev[:5] = [0, 1, 2, 255, 3]  # class 3 ignored (e.g. unlearned), channel 3 is new
    lut = step_lut(ev, [3])
    assert lut[:5].tolist() == [0, 0, 0, 255, NEW] and lut[255] == 255
    assert scoring_lut([2], [7])[[0, 2, 7, 255]].tolist() == [0, NEW, 255, 255]


class BandOracle(torch.nn.Module):
    """Predicts the class id written in one band of the (unnormalised) image."""

    def __init__(self, band: int, channels: int) -> None:
        super().__init__()
        self.band, self.channels = band, channels

    def forward(self, x):
        ids = x[:, self.band].round().long().clamp(0, self.channels - 1)
        return ModelOutput(
            logits=torch.nn.functional.one_hot(ids, self.channels).permute(0, 3, 1, 2).float()
        )


def test_agreement_counts_every_scored_pixel_once(tmp_path):
    schema = ClassSchema.preset("isprs")
    img, lbl = random_pair(tmp_path, "a", size=72, classes=6, seed=3)
    with rasterio.open(lbl) as src:
        label = src.read(1)
    rng = np.random.default_rng(0)
    teacher = rng.integers(0, 3, label.shape).astype(np.uint8)
    student = np.where(rng.random(label.shape) < 0.7, teacher, rng.integers(0, 5, label.shape))
    with rasterio.open(img, "r+") as dst:
        dst.write(teacher, 1)
        dst.write(student.astype(np.uint8), 2)
    cat = Catalog.scan(tmp_path / "images", tmp_path / "labels", schema, cache=False)
    lut = scoring_lut([4], [5])  # class 4 is labelled new, class 5 ignored
    got = agreement_over_tiles(
        BandOracle(1, 5),
        BandOracle(0, 3),
        lambda z: z.argmax(1),
        lambda z: z.argmax(1),
        cat.tiles,
        schema,
        lut,
        (3, 5),
        [0.0] * 3,
        [1.0] * 3,
        size=32,
        overlap=8,
        batch_size=3,
    )
    keep = label < 4
    want = np.zeros((3, 5), np.int64)
    np.add.at(want, (teacher[keep], student[keep]), 1)
    assert got.sum() == keep.sum() and np.array_equal(got, want)
