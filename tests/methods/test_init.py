import copy
import math

import pytest
import torch

from geociss.methods.init import balanced_init

from conformance import tiny_model


def grown(steps=(3,), n_new=2, seed=0):
    """A teacher with ``steps`` and its student grown by ``n_new`` channels, balanced init."""
    teacher = tiny_model(steps, seed=seed)
    with torch.no_grad():  # a trained-looking, non-zero background bias
        teacher.classifier.head(0).bias.add_(torch.randn(steps[0]))
    student = copy.deepcopy(teacher)
    student.add_step(n_new)
    balanced_init(student)
    return teacher.eval(), student.eval()


@pytest.mark.parametrize(("steps", "n_new"), [((3,), 2), ((3,), 1), ((3, 2), 3)])
def test_new_rows_copy_background_and_biases_shift(steps, n_new):
    teacher, student = grown(steps, n_new)
    w0 = teacher.classifier.head(0).weight[0]
    b0 = teacher.classifier.head(0).bias[0].item()
    new = student.classifier.head(-1)
    for k in range(n_new):
        assert torch.equal(new.weight[k], w0)
    shift = math.log(n_new + 1)
    assert new.bias.tolist() == pytest.approx([b0 - shift] * n_new, abs=1e-6)
    assert student.classifier.head(0).bias[0].item() == pytest.approx(b0 - shift, abs=1e-6)
    # every other old parameter is unchanged
    old_w, new_w = teacher.classifier.weight, student.classifier.weight[: teacher.num_classes]
    assert torch.equal(old_w, new_w)
    assert torch.equal(
        teacher.classifier.bias[1:], student.classifier.bias[1 : teacher.num_classes]
    )


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize(("steps", "n_new"), [((3,), 2), ((4, 2), 1), ((2, 1, 1), 4)])
def test_background_mass_is_preserved(seed, steps, n_new):
    """Property: p_new(bg) + Σ p_new(new) = p_old(bg), and old classes keep their probability."""
    teacher, student = grown(steps, n_new, seed)
    g = torch.Generator().manual_seed(100 + seed)
    x = torch.randn(2, 3, 16, 16, generator=g) * 2
    with torch.no_grad():
        p_old = torch.softmax(teacher(x).logits.double(), 1)
        p_new = torch.softmax(student(x).logits.double(), 1)
    c_old = teacher.num_classes
    merged = p_new[:, 0] + p_new[:, c_old:].sum(1)
    assert torch.allclose(merged, p_old[:, 0], atol=1e-5)
    assert torch.allclose(p_new[:, 1:c_old], p_old[:, 1:], atol=1e-5)
    # the mass is split evenly between background and each new class
    for k in range(c_old, c_old + n_new):
        assert torch.allclose(p_new[:, k], p_new[:, 0], atol=1e-6)


def test_softmax_property_on_random_classifier_features():
    """The same property on the classifier alone, for random features of any scale."""
    _, student = grown((3, 2), 3, seed=7)
    teacher = copy.deepcopy(student)
    teacher.classifier.heads = teacher.classifier.heads[:-1]
    with torch.no_grad():  # undo the bias shift on the teacher's copy
        teacher.classifier.head(0).bias[0] += math.log(4)
        for scale in (0.1, 1.0, 10.0):
            f = torch.randn(4, student.classifier.in_channels, 3, 3) * scale
            p_old = torch.softmax(teacher.classifier(f).double(), 1)
            p_new = torch.softmax(student.classifier(f).double(), 1)
            merged = p_new[:, 0] + p_new[:, 5:].sum(1)
            assert torch.allclose(merged, p_old[:, 0], atol=1e-6)


def test_single_step_model_is_refused():
    with pytest.raises(ValueError, match="at least two steps"):
        balanced_init(tiny_model((3,)))


def test_keep_background_starts_with_the_teachers_class_map():
    teacher = tiny_model((3,), seed=4)
    with torch.no_grad():
        teacher.classifier.head(0).bias.add_(torch.tensor([1.0, 0.0, 0.0]))
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(7)) * 2
    results = {}
    for keep in (False, True):
        student = copy.deepcopy(teacher)
        student.add_step(1)
        balanced_init(student, keep_background=keep)
        with torch.no_grad():
            results[keep] = (student.eval()(x).logits, student.classifier.head(0).bias[0].item())
    with torch.no_grad():
        z_t = teacher.eval()(x).logits
    p_t = torch.softmax(z_t.double(), 1)
    logits, bias = results[True]
    # the background bias is untouched, the new class sits log 2 below the background
    assert bias == pytest.approx(teacher.classifier.head(0).bias[0].item())
    assert torch.allclose(logits[:, 3] - logits[:, 0], torch.full_like(logits[:, 0], -math.log(2)))
    assert torch.equal(logits.argmax(1), z_t.argmax(1))
    # MiB's rule halves the background: pixels where it led by less than 2x flip to old classes
    mib_logits, _ = results[False]
    close = (p_t[:, 0] > p_t[:, 1:].max(1).values) & (p_t[:, 0] < 2 * p_t[:, 1:].max(1).values)
    assert close.any()
    flipped = mib_logits.argmax(1) != z_t.argmax(1)
    assert torch.equal(flipped, close)


def test_apply_init_rules():
    from geociss.methods.init import apply_init

    teacher = tiny_model((3,), seed=1)
    b0 = teacher.classifier.head(0).bias[0].item()
    for rule, bg in ((True, b0 - math.log(2)), ("keep-background", b0), (False, b0)):
        student = copy.deepcopy(teacher)
        student.add_step(1)
        before = student.classifier.head(-1).weight.clone()
        apply_init(student, rule)
        assert student.classifier.head(0).bias[0].item() == pytest.approx(bg, abs=1e-6)
        copied = torch.equal(
            student.classifier.head(-1).weight[0], teacher.classifier.head(0).weight[0]
        )
        assert copied == (rule is not False)
        if rule is False:
            assert torch.equal(student.classifier.head(-1).weight, before)
