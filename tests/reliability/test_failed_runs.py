"""What a failed run leaves behind: predict's partials of a bad input, a run named '..'."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from geociss.cli.main import cli
from geociss.config.experiment import load_experiment
from geociss.engine.runner import ScenarioRunner
from geociss.errors import ConfigError

from fakes import random_pair, tiny_isprs_bundle, write_tif


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_isprs_bundle().save(tmp_path_factory.mktemp("bundle") / "step0.safetensors")


def test_a_bad_input_leaves_no_partial_and_no_sidecar(tmp_path, bundle):
    image = np.random.default_rng(0).integers(0, 256, (3, 128, 128), dtype=np.uint8)
    bad = write_tif(tmp_path / "in" / "bad.tif", image)
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # truncated
    write_tif(tmp_path / "in" / "good.tif", image)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["predict", "--model", str(bundle), "--out", str(out),
                                   str(tmp_path / "in"), "--tile", "64", "--overlap", "16",
                                   "--workers", "0", "--confidence"], env={"COLUMNS": "300"})
    assert res.exit_code == 2, res.output
    assert "bad.tif: cannot read (corrupt or truncated file?)" in res.output
    left = sorted(p.name for p in out.iterdir())
    assert not [n for n in left if n.startswith("bad")], left
    assert "good_classes.tif" in left and "good.predict.json" in left


def experiment(tmp_path, name: str) -> str:
    random_pair(tmp_path / "data", "a", size=32)
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: "{name}"
        out: {tmp_path / "work" / "runs"}
        data: {{images: {tmp_path / "data" / "images"}, labels: {tmp_path / "data" / "labels"}}}
        scenario: {{task: 2-3, unlearned: [clutter]}}
        """))
    return str(path)


@pytest.mark.parametrize("name", ["..", ".", "..."])
def test_a_run_name_of_dots_is_refused(tmp_path, name):
    config = experiment(tmp_path, name)
    with pytest.raises(ConfigError, match="name"):  # the config's name pattern refuses it
        load_experiment(config)
    valid = load_experiment(experiment(tmp_path / "ok", "ok")).model_copy(update={"name": name})
    with pytest.raises(ConfigError, match="is not a usable run name"):  # and so does the runner
        ScenarioRunner(valid)
    res = CliRunner().invoke(cli, ["train", config, "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "name" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "work").exists()  # nothing written, in out or above it
    assert not (tmp_path / "ok" / "work").exists()


def test_a_run_name_with_dots_and_more_is_fine(tmp_path):
    runner = ScenarioRunner(load_experiment(experiment(tmp_path, "v1..2")))
    assert runner.run_dir == tmp_path / "work" / "runs" / "v1..2"
