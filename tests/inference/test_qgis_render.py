"""docs/render_qgis.py draws a tiny prediction's outputs with real QGIS into a PNG.

The script runs under Debian's /usr/bin/python3 (it cannot import geociss); the test skips, as
``test_qgis.py`` does, when that Python cannot import ``qgis.core``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_qgis import SYSTEM_PYTHON, _env, _qgis_available
from tiny_nets import conv_net, image, loaded

from geociss.inference.model import PredictOptions
from geociss.inference.run import predict_many

from fakes import write_tif

pytestmark = pytest.mark.qgis

SCRIPT = Path(__file__).parents[2] / "docs" / "render_qgis.py"


def test_render_script_draws_the_styled_outputs(tmp_path):
    ok, reason = _qgis_available()
    if not ok:
        pytest.skip(reason)
    scene = write_tif(tmp_path / "scene.tif", image(160, 160, seed=1))
    model = loaded(conv_net())
    opts = PredictOptions(tile=64, overlap=32, batch_size=4, workers=0, vector=True)
    predict_many([scene], model, opts, tmp_path / "out")
    png = tmp_path / "picture.png"
    run = subprocess.run(
        [SYSTEM_PYTHON, str(SCRIPT), str(tmp_path / "out"), "--out", str(png)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"rendered scene to {png}" in run.stdout
    legend = ", ".join(
        f"{name} {color}"
        for name, color in zip(model.style.names, model.style.hex_colors, strict=True)
    )
    assert f"legend   {legend}" in run.stdout
    assert "paletted" in run.stdout and "categorizedSymbol" in run.stdout
    with Image.open(png) as picture:
        pixels = np.asarray(picture.convert("RGB")).reshape(-1, 3)
    assert picture.size == (1200, 483)
    assert len(np.unique(pixels, axis=0)) > 20  # image, classes, legend: not a blank canvas
