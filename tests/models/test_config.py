"""ModelConfig validation and import cost."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from geociss.models.config import ModelConfig


def test_defaults_are_the_paper_network():
    cfg = ModelConfig()
    assert cfg.encoder == "resnet101" and cfg.output_stride == 16
    assert cfg.aspp_channels == 256 and cfg.effective_dilations == (6, 12, 18)
    assert cfg.dropout == pytest.approx(0.1)


def test_output_stride_8_doubles_dilations():
    assert ModelConfig(output_stride=8).effective_dilations == (12, 24, 36)


@pytest.mark.parametrize(
    "bad",
    [
        {"output_stride": 32},
        {"norm": "layer"},
        {"norm": "group", "aspp_channels": 30, "norm_groups": 8},
        {"aspp_dilations": [6, 0, 18]},
        {"in_channels": 0},
        {"dropout": 1.0},
        {"unknown_key": 1},
    ],
)
def test_invalid_configs_are_rejected(bad):
    with pytest.raises(ValidationError):
        ModelConfig(**bad)


def test_config_import_does_not_import_torch():
    code = "import sys, geociss.models.config, geociss.models; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
