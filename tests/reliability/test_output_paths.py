"""Output paths that cannot work: one line naming the path, exit 2, before any work is done."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from geociss.cli.main import cli
from geociss.errors import DataError
from geociss.io import atomic_write_text

from fakes import random_pair, tiny_isprs_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_isprs_bundle().save(tmp_path_factory.mktemp("bundle") / "step0.safetensors")


@pytest.fixture
def data(tmp_path):
    random_pair(tmp_path, "a", size=32)
    return tmp_path


def run(*args):
    return CliRunner().invoke(cli, [*map(str, args)], env={"COLUMNS": "200"})


def one_line_error(res, *texts):
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    for text in texts:
        assert text in lines[0], lines[0]


def test_predict_out_that_is_a_file(data, bundle):
    (data / "taken").write_text("x")
    res = run("predict", "--model", bundle, "--out", data / "taken", data / "images")
    one_line_error(res, f"{data / 'taken'}: is a file, not a folder; give --out a folder")
    res = run("predict", "--model", bundle, "--out", data / "taken" / "sub", data / "images")
    one_line_error(res, f"{data / 'taken'}: is a file, so --out")


def test_scan_json_that_is_a_folder(data):
    (data / "report").mkdir()
    res = run("scan", data / "images", data / "labels", "--json", data / "report")
    one_line_error(res, f"{data / 'report'}: is a folder, not a file; give --json a file name")


@pytest.fixture
def no_evaluation(monkeypatch):
    """Fail the test if the (long) evaluation starts."""
    import geociss.engine.assess

    def refuse(*_, **__):
        raise AssertionError("the evaluation ran before the output paths were checked")

    monkeypatch.setattr(geociss.engine.assess, "assess_bundle", refuse)


def test_evaluate_json_folder_is_refused_before_evaluating(data, bundle, no_evaluation):
    (data / "scores").mkdir()
    res = run("evaluate", "--model", bundle, "--images", data / "images", "--labels",
              data / "labels", "--json", data / "scores")
    one_line_error(res, f"{data / 'scores'}: is a folder, not a file; give --json a file name")
    res = run("evaluate", "--model", bundle, "--images", data / "images", "--labels",
              data / "labels", "--csv", data / "scores")
    one_line_error(res, "give --csv a file name")


def test_evaluate_plot_that_is_a_file(data, bundle, no_evaluation):
    (data / "plots").write_text("x")
    res = run("evaluate", "--model", bundle, "--images", data / "images", "--labels",
              data / "labels", "--plot", data / "plots")
    one_line_error(res, f"{data / 'plots'}: is a file, not a folder; give --plot a folder")
    (data / "figs" / "confusion.png").mkdir(parents=True)
    res = run("evaluate", "--model", bundle, "--images", data / "images", "--labels",
              data / "labels", "--plot", data / "figs")
    one_line_error(res, "confusion.png: is a folder, so --plot cannot write")


def test_evaluate_still_writes_good_outputs(data, bundle):
    res = run("evaluate", "--model", bundle, "--images", data / "images", "--labels",
              data / "labels", "--json", data / "new" / "s.json", "--plot", data / "new",
              "--no-progress")
    assert res.exit_code == 0, res.output
    assert (data / "new" / "s.json").is_file() and (data / "new" / "confusion.png").is_file()


def test_atomic_write_onto_a_folder_is_a_data_error(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match="is a folder, not a file"):
        atomic_write_text(tmp_path / "d", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temporary file left
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match="is a file, so"):
        atomic_write_text(tmp_path / "f" / "g.txt", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f"]
