import pytest
import torch

from geociss.config.experiment import TrainConfig
from geociss.engine.task import IncrementalStep
from geociss.errors import DivergedError

from conformance import make_method, tiny_model


def test_non_finite_loss_stops_the_step_with_a_clear_message():
    method = make_method("finetune", {}, 0)
    method.losses = lambda batch, out, old: {"ce": torch.tensor(float("nan"))}
    step = IncrementalStep(tiny_model(), None, method, TrainConfig(), [0.0] * 3, [1.0] * 3)
    batch = {"image": torch.rand(2, 3, 32, 32), "mask": torch.zeros(2, 32, 32, dtype=torch.long)}
    with pytest.raises(DivergedError, match=r"loss became non-finite \(ce\)"):
        step.training_step(batch, 0)


def test_teacher_stays_in_eval_mode_when_the_step_trains():
    method = make_method("mib", {}, 1)
    step = IncrementalStep(
        tiny_model([3, 2]), tiny_model([3]), method, TrainConfig(), [0.0] * 3, [1.0] * 3
    )
    step.train()
    assert step.model.training and not step.teacher.training
    assert not any(p.requires_grad for p in step.teacher.parameters())


@pytest.mark.parametrize(("step_index", "expected"), [(0, torch.optim.AdamW), (1, torch.optim.SGD)])
def test_adamw_is_used_at_step_0_only(step_index, expected):
    method = make_method("finetune", {}, step_index)
    model = tiny_model([3] if step_index == 0 else [3, 2])
    cfg = TrainConfig(optimizer="adamw", lr=0.002, lr_incremental=0.0005)
    step = IncrementalStep(model, None, method, cfg, [0.0] * 3, [1.0] * 3, step=step_index)
    step.trainer = type("T", (), {"estimated_stepping_batches": 10})()
    opt = step.configure_optimizers()["optimizer"]
    assert type(opt) is expected
    assert opt.param_groups[0]["lr"] == pytest.approx(0.002 if step_index == 0 else 0.0005)


@pytest.mark.filterwarnings("ignore:.*reference is not registered on the model")
def test_raw_loader_batches_train_as_the_float_path():
    """uint8 image + nodata mask + uint8 labels (the workers' batch) = float32 with NaN + int64."""
    gen = torch.Generator().manual_seed(0)
    raw = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=gen)
    nodata = torch.zeros(2, 32, 32, dtype=torch.bool)
    nodata[0, :5, 3:20] = True
    mask = torch.randint(0, 3, (2, 32, 32), dtype=torch.uint8, generator=gen)
    mask[nodata] = 255
    floats = raw.float()
    floats[nodata.unsqueeze(1).expand_as(floats)] = float("nan")
    losses = []
    for batch in (
        {"image": floats, "mask": mask.long()},
        {"image": raw, "nodata": nodata, "mask": mask},
    ):
        torch.manual_seed(7)
        method = make_method("finetune", {}, 0)
        step = IncrementalStep(tiny_model(), None, method, TrainConfig(), [120.0] * 3, [60.0] * 3)
        x = step.normalise(batch["image"], batch.get("nodata"))
        losses.append((x, step.training_step(batch, 0).detach()))
    assert torch.equal(losses[0][0], losses[1][0]) and (losses[1][0][0, :, :5, 3:20] == 0).all()
    assert torch.equal(losses[0][1], losses[1][1])
