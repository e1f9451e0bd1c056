import torch

from geociss.methods import get_method

from conformance import MethodConformance, prepare_step1


class TestFineTune(MethodConformance):
    method_name = "finetune"


class TestJoint(MethodConformance):
    method_name = "joint"


def test_finetune_never_uses_teacher_and_joint_is_single_step():
    method, _, _ = prepare_step1("finetune", {})
    assert not method.uses_teacher()
    assert get_method("joint").single_step and not get_method("finetune").single_step


def test_finetune_loss_is_plain_cross_entropy():
    method, student, _ = prepare_step1("finetune", {"ce_reduction": "all"})
    x = torch.randn(1, 3, 32, 32)
    mask = torch.full((1, 32, 32), 255)
    mask[0, :4, :4] = 3
    out = student(x)
    expected = (
        torch.nn.functional.cross_entropy(out.logits, mask, ignore_index=255, reduction="sum")
        / mask.numel()
    )
    assert torch.allclose(method.losses({"image": x, "mask": mask}, out, None)["ce"], expected)
