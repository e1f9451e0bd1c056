"""``predict`` killed while publishing, or resumed over a damaged partial: nothing is lost.

The kills are real: a ``geociss predict`` subprocess sends itself SIGKILL at a named point
(``GEOCISS_TEST_KILL_AT``, :mod:`geociss.faults`); the damaged partial is really truncated.
Every rerun is compared with an uninterrupted run of the same input.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from geociss.cli.main import cli
from geociss.inference.model import LoadedModel, PredictOptions
from geociss.inference.run import predict_many

from fakes import tiny_isprs_bundle, write_tif

ARGS = ["--tile", "64", "--overlap", "16", "--workers", "0", "--confidence"]
OUTPUTS = ("in_classes.tif", "in_confidence.tif")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A bundle, an input of 1100 × 96 pixels (three block rows) and an uninterrupted run."""
    root = tmp_path_factory.mktemp("predict")
    bundle = tiny_isprs_bundle().save(root / "model.safetensors")
    rng = np.random.default_rng(0)
    image = write_tif(root / "in.tif", rng.integers(0, 256, (3, 1100, 96), dtype=np.uint8))
    res = cli_predict(bundle, root / "reference", image)
    assert res.exit_code == 0, res.output
    return bundle, image, root / "reference"


def cli_predict(bundle, out, image):
    return CliRunner().invoke(
        cli, ["predict", "--model", str(bundle), "--out", str(out), str(image), *ARGS],
        env={"COLUMNS": "300"},
    )  # fmt: skip


def killed_predict(bundle, out, image, point):
    """``geociss predict`` in a subprocess that kills itself at ``point``."""
    env = {**os.environ, "GEOCISS_TEST_KILL_AT": point, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "geociss", "predict", "--model", str(bundle), "--out", str(out),
           str(image), *ARGS]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def rerun(bundle, out, image):
    """The same run in this process (as the CLI sets it up); returns its one result."""
    opts = PredictOptions(tile=64, overlap=16, workers=0, confidence=True)
    (result,) = predict_many([image], LoadedModel.from_bundle(bundle), opts, out)
    return result


def assert_same_outputs(out, reference):
    for name in OUTPUTS:
        with rasterio.open(out / name) as a, rasterio.open(reference / name) as b:
            assert np.array_equal(a.read(), b.read()), name
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert json.loads((out / "in.predict.json").read_text())["state"] == "done"
    assert not list(out.glob("*.partial")), sorted(p.name for p in out.iterdir())
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_stale_temporaries_of_a_killed_publish_are_removed(setup, tmp_path):
    bundle, image, reference = setup
    out = tmp_path / "out"
    killed_predict(bundle, out, image, "predict:copied:classes")
    stale = [p for p in out.iterdir() if p.name.startswith(".in_classes.tif.")]
    assert [p.name.endswith(".tif.part") for p in stale] == [True], stale
    # GDAL's overview temporary of a COG copy killed half-way has this form
    (out / f"{stale[0].name}.ovr.tmp").write_bytes(b"\0" * 100)
    others = [out / ".other_classes.tif.abcdefgh.tif.part", out / ".in_classes.tif.mine"]
    for path in others:  # another input's temporary, and a file that is not ours: kept
        path.write_bytes(b"x")

    result = rerun(bundle, out, image)
    assert result.status == "written" and result.tiles == 0  # nothing computed again
    for path in others:
        path.unlink()
    assert_same_outputs(out, reference)


def test_a_kill_between_two_published_outputs_recomputes_nothing(setup, tmp_path):
    bundle, image, reference = setup
    out = tmp_path / "out"
    killed_predict(bundle, out, image, "predict:published:classes")
    assert (out / "in_classes.tif").is_file() and not (out / "in_confidence.tif").exists()

    result = rerun(bundle, out, image)
    assert result.status == "written" and result.tiles == 0, result
    assert_same_outputs(out, reference)


def interrupt_after_first_block_row(bundle, out, image):
    """Run in this process until the first block row is on disk, then stop (as a kill)."""

    class Stop(Exception):
        pass

    from geociss.inference.run import predict_one

    def stop(row):
        raise Stop

    model = LoadedModel.from_bundle(bundle)
    opts = PredictOptions(tile=64, overlap=16, workers=0, confidence=True)
    with pytest.raises(Stop):
        predict_one(image, model, model.predictor(opts), opts, out, 4, on_flush=stop)
    assert json.loads((out / "in.predict.json").read_text())["parts"] != {}


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_a_truncated_partial_is_discarded_and_recomputed(setup, tmp_path, keep):
    bundle, image, reference = setup
    out = tmp_path / "out"
    interrupt_after_first_block_row(bundle, out, image)
    partial = out / "in_classes.tif.partial"
    data = partial.read_bytes()
    partial.write_bytes(data[: int(len(data) * keep)])  # a full disk, a crash during a write

    res = cli_predict(bundle, out, image)
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1, res.output
    assert warnings[0].startswith(f"warning: {partial}: cannot be read (")
    assert warnings[0].endswith("); discarded, its tiles are computed again")
    assert_same_outputs(out, reference)
