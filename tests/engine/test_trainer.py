"""The Lightning trainer the engine builds from a TrainConfig."""

import pytest
import torch

from geociss.config.experiment import TrainConfig
from geociss.config.validation import validate_model
from geociss.engine.trainer import build_trainer
from geociss.errors import ConfigError


def test_gradient_clip_is_off_by_default_and_passed_as_a_norm(tmp_path):
    plain = build_trainer(TrainConfig(accelerator="cpu"), tmp_path / "a", 1, progress=False)
    assert plain.gradient_clip_val is None
    clipped = build_trainer(
        TrainConfig(accelerator="cpu", gradient_clip=2.5), tmp_path / "b", 1, progress=False
    )
    assert clipped.gradient_clip_val == 2.5
    assert clipped.gradient_clip_algorithm == "norm"


def test_gradient_clip_bounds_the_update_of_a_real_fit(tmp_path):
    """One SGD step with lr 1 and clip 1e-3 moves the weights by at most 1e-3 in norm."""
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(4))

        def training_step(self, batch, _):
            return ((self.w - 1000.0) ** 2).sum()

        def configure_optimizers(self):
            return torch.optim.SGD([self.w], lr=1.0)

    model = Tiny()
    trainer = build_trainer(
        TrainConfig(accelerator="cpu", gradient_clip=1e-3), tmp_path, 1, progress=False
    )
    loader = torch.utils.data.DataLoader(torch.zeros(1, 1), batch_size=1)
    trainer.fit(model, train_dataloaders=loader)
    assert 0 < torch.linalg.vector_norm(model.w.detach()) <= 1e-3 + 1e-9


def test_gradient_clip_must_be_positive():
    with pytest.raises(ConfigError, match="gradient_clip"):
        validate_model(TrainConfig, {"gradient_clip": 0}, "train")
