import math
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import yaml

from geociss.losses.ce import cross_entropy
from geociss.losses.pod import pod_distance
from geociss.losses.pseudo import EntropyHistogram, entropy_pseudo_labels
from geociss.methods import get_method

from conformance import MethodConformance, batch, make_method, prepare_step1, run_losses

CONFIG = Path(__file__).parents[2] / "configs" / "methods" / "plop.yaml"


def prepared_eval(params):
    """A step-1 PLOP with the student in eval mode (no dropout: deterministic terms)."""
    method, student, teacher = prepare_step1("plop", params)
    return method, student.eval(), teacher


class TestPLOP(MethodConformance):
    method_name = "plop"


class TestPLOPTrueMedianPostActivation(MethodConformance):
    method_name = "plop"
    params: ClassVar[dict] = {
        "pseudo_median": "true",
        "pod_stages": "post",
        "ce_reduction": "valid",
    }


def test_config_file_matches_the_defaults():
    spec = yaml.safe_load(CONFIG.read_text())["method"]
    cls = get_method(spec["name"])
    assert cls.Params.model_validate(spec["params"]) == cls.Params()
    assert cls.needs_prepass


def test_step0_is_plain_cross_entropy_without_features():
    method = make_method("plop", {}, 0)
    assert method.student_features() == set() and method.teacher_features() == set()
    assert not method.uses_teacher()


def test_features_requested_at_step1():
    method = make_method("plop", {}, 1)
    assert method.student_features() == {"stages_pre", "aspp", "logits_low"}
    assert method.teacher_features() == method.student_features()
    post = make_method("plop", {"pod_stages": "post", "pod_logits": False}, 1)
    assert post.student_features() == {"stages", "aspp"}


def test_new_classes_start_from_the_background():
    _, student, _ = prepare_step1("plop", {})
    bg = student.classifier.head(0).weight[0]
    assert all(torch.equal(row, bg) for row in student.classifier.head(-1).weight)


@pytest.mark.parametrize("median", ["repository", "true", "geociss-legacy"])
def test_prepass_thresholds_come_from_the_teacher_histogram(median):
    method, _, teacher = prepare_step1("plop", {"pseudo_median": median})
    hist = EntropyHistogram(3, 5)
    with torch.no_grad():
        for s in range(2):  # the batches prepare_step1 gave the pre-pass
            data = batch(5, range(3, 5), seed=s)
            hist.update(teacher(data["image"]).logits, data["mask"])
    assert hist.counts.sum() > 0
    torch.testing.assert_close(method.thresholds, hist.thresholds(median), equal_nan=True)


def test_losses_need_the_prepass():
    method = make_method("plop", {}, 1)
    _, student, teacher = prepare_step1("plop", {})
    with pytest.raises(RuntimeError, match="pre-pass"):
        run_losses(method, student, teacher, batch(5, range(3, 5)))


def test_terms_equal_their_definitions():
    method, student, teacher = prepared_eval({})
    data = batch(5, range(3, 5), seed=7)
    terms = run_losses(method, student, teacher, data)
    out = student(data["image"], features=method.student_features())
    with torch.no_grad():
        old = teacher(data["image"], features=method.teacher_features())
    pseudo = entropy_pseudo_labels(data["mask"], old.logits, method.thresholds, 5)
    weight = pseudo.factor[:, None, None].expand(data["mask"].shape)
    torch.testing.assert_close(
        terms["ce"], cross_entropy(out.logits, pseudo.target, "all", weight=weight)
    )
    pairs = [*zip(out.stages_pre, old.stages_pre, strict=True), (out.aspp, old.aspp)]
    pairs.append((out.logits_low, old.logits_low))
    weights = [0.01] * 5 + [0.0005]
    expected = (
        sum(
            w * math.sqrt(5 / 2) * pod_distance(s, t)
            for w, (s, t) in zip(weights, pairs, strict=True)
        )
        / 6
    )
    torch.testing.assert_close(terms["pod"], expected)


def test_pod_scales_with_its_factors_and_vanishes_when_off():
    data = batch(5, range(3, 5), seed=2)
    base, student, teacher = prepared_eval({})
    pod = run_losses(base, student, teacher, data)["pod"]

    def pod_with(params):
        method = make_method("plop", params, 1)
        method.thresholds = base.thresholds  # the same pre-pass result
        return run_losses(method, student, teacher, data).get("pod")

    torch.testing.assert_close(pod_with({"pod_factor": 0.02, "pod_logits_factor": 0.001}), 2 * pod)
    torch.testing.assert_close(pod, pod_with({"pod_schedule": False}) * math.sqrt(5 / 2))
    assert pod_with({"pod_factor": 0.0, "pod_logits_factor": 0.0}) is None


def test_bad_params_are_one_line_config_errors():
    from geociss.errors import ConfigError

    with pytest.raises(ConfigError, match="pod_scales"):
        make_method("plop", {"pod_scales": [0]}, 1)
    with pytest.raises(ConfigError, match="pseudo_median"):
        make_method("plop", {"pseudo_median": "mean"}, 1)
