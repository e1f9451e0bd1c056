"""Many inputs, resume, skip, bad inputs, TTA, batch sizing, dry-run and ranks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_nets import conv_net, image, loaded, read

from geociss.errors import ConfigError
from geociss.inference.dryrun import dry_run
from geociss.inference.model import PredictOptions
from geociss.inference.predictor import (
    CPU_BATCH,
    Predictor,
    auto_batch_size,
    probe_batch_size,
    resolve_batch_size,
)
from geociss.inference.run import predict_many, predict_one

from fakes import write_tif

OPTS = {"tile": 64, "overlap": 32, "batch_size": 4, "workers": 0}


class Interrupted(Exception):
    pass


def _run(tmp_path, inputs, model, **opts):
    return predict_many(inputs, model, PredictOptions(**{**OPTS, **opts}), tmp_path / "out")


def test_resume_after_interruption_gives_identical_bytes(tmp_path):
    src = write_tif(tmp_path / "tall.tif", image(1100, 64, seed=2))
    model = loaded(conv_net())
    opts = PredictOptions(**OPTS, confidence=True)
    once = predict_one(src, model, model.predictor(opts), opts, tmp_path / "once", 4)
    assert once.status == "written"

    out = tmp_path / "resumed"
    flushes = []

    def stop_after_first(row):
        flushes.append(row)
        raise Interrupted

    with pytest.raises(Interrupted):
        predict_one(src, model, model.predictor(opts), opts, out, 4, on_flush=stop_after_first)
    assert flushes == [512]
    sidecar = json.loads((out / "tall.predict.json").read_text())
    assert sidecar["state"] == "running" and list(sidecar["parts"].values()) == [512]
    assert (out / "tall_classes.tif.partial").is_file() and not (out / "tall_classes.tif").exists()

    again = predict_one(src, model, model.predictor(opts), opts, out, 4)
    assert again.status == "written" and again.tiles < once.tiles
    for name in ("tall_classes.tif", "tall_confidence.tif"):
        assert (out / name).read_bytes() == (tmp_path / "once" / name).read_bytes(), name
    assert not list(out.glob("*.partial"))
    assert json.loads((out / "tall.predict.json").read_text())["state"] == "done"


def test_finished_inputs_are_skipped_unless_settings_change(tmp_path):
    src = write_tif(tmp_path / "a.tif", image(90, 70))
    model = loaded(conv_net())
    assert [r.status for r in _run(tmp_path, [src], model)] == ["written"]
    first = (tmp_path / "out" / "a_classes.tif").stat().st_mtime_ns
    assert [r.status for r in _run(tmp_path, [src], model)] == ["skipped"]
    assert (tmp_path / "out" / "a_classes.tif").stat().st_mtime_ns == first
    assert [r.status for r in _run(tmp_path, [src], model, tta="flip")] == ["written"]
    other = loaded(conv_net(seed=5), key="other")
    assert [r.status for r in _run(tmp_path, [src], other, tta="flip")] == ["written"]


def test_one_bad_input_does_not_stop_the_others(tmp_path):
    good = [write_tif(tmp_path / "in" / f"g{i}.tif", image(60, 70, seed=i)) for i in range(2)]
    write_tif(tmp_path / "in" / "twoband.tif", image(60, 70, bands=2))
    (tmp_path / "in" / "broken.tif").write_bytes(b"II*\x00not a tiff")
    (tmp_path / "empty").mkdir()
    inputs = [tmp_path / "in", tmp_path / "missing.tif", tmp_path / "empty",
              str(tmp_path / "nothing*.tif")]
    results = _run(tmp_path, inputs, loaded(conv_net()))
    status = {r.input.split("/")[-1]: (r.status, r.message) for r in results}
    assert status["g0.tif"][0] == status["g1.tif"][0] == "written"
    assert "model expects 3" in status["twoband.tif"][1]
    assert status["twoband.tif"][1].startswith(str(tmp_path / "in" / "twoband.tif"))
    assert status["broken.tif"][0] == "failed" and "broken.tif" in status["broken.tif"][1]
    assert "input not found" in status["missing.tif"][1]
    assert "no .tif" in status["empty"][1] and "no file matches" in status["nothing*.tif"][1]
    for path in good:
        assert (tmp_path / "out" / f"{path.stem}_classes.tif").is_file()
    assert all("\n" not in r.message for r in results)


def test_d4_tta_makes_the_prediction_rotation_equivariant():
    net = conv_net(depth=2)
    x = torch.from_numpy(image(64, 64).astype(np.float32))[None]
    plain = Predictor(net, tta="none")
    d4 = Predictor(net, tta="d4")
    rot = torch.rot90(x, 1, dims=(-2, -1))
    assert not torch.allclose(plain(rot), torch.rot90(plain(x), 1, dims=(-2, -1)), atol=1e-3)
    assert torch.allclose(d4(rot), torch.rot90(d4(x), 1, dims=(-2, -1)), atol=1e-5)
    flipped = torch.flip(x, dims=(-1,))
    assert torch.allclose(d4(flipped), torch.flip(d4(x), dims=(-1,)), atol=1e-5)
    # a model that is already equivariant (a 1x1 conv) is unchanged by TTA
    point = torch.nn.Conv2d(3, 4, 1).eval()
    assert torch.allclose(Predictor(point, tta="d4")(x), Predictor(point)(x), atol=1e-6)


def test_d4_tta_on_a_raster_commutes_with_rotating_the_raster(tmp_path):
    img = image(150, 150, seed=4)
    a = write_tif(tmp_path / "a.tif", img)
    b = write_tif(tmp_path / "b.tif", np.ascontiguousarray(np.rot90(img, 1, axes=(1, 2))))
    _run(tmp_path, [a, b], loaded(conv_net(depth=2)), tta="d4", confidence=True)
    out = tmp_path / "out"
    ca, cb = read(out / "a_confidence.tif"), read(out / "b_confidence.tif")
    assert np.abs(np.rot90(ca, 1).astype(int) - cb).max() <= 1
    classes_a, classes_b = read(out / "a_classes.tif"), read(out / "b_classes.tif")
    assert (np.rot90(classes_a, 1) == classes_b).mean() > 0.999


def test_batch_probe_doubles_then_backs_off():
    def fake(limit_ok, oom_at):
        def attempt(batch):
            if batch >= oom_at:
                raise torch.OutOfMemoryError("fake")
            return 0.5 if batch <= limit_ok else 0.1
        return attempt

    assert probe_batch_size(fake(limit_ok=1000, oom_at=64)) == 32  # OOM at 64 -> 32
    assert probe_batch_size(fake(limit_ok=8, oom_at=10_000)) == 8  # <20 % free at 16 -> 8
    assert probe_batch_size(fake(limit_ok=0, oom_at=1)) == 1
    assert probe_batch_size(fake(limit_ok=10_000, oom_at=10_000), limit=64) == 64


def test_batch_size_on_cpu_and_bad_values():
    predictor = Predictor(conv_net(), device="cpu")
    assert auto_batch_size(predictor, 3, 64, "k") == CPU_BATCH
    assert resolve_batch_size("auto", predictor, 3, 64, "k") == CPU_BATCH
    assert resolve_batch_size(7, predictor, 3, 64, "k") == 7
    with pytest.raises(ConfigError, match="batch size"):
        resolve_batch_size("lots", predictor, 3, 64, "k")
    with pytest.raises(ConfigError, match="TTA"):
        PredictOptions(tta="d8")


def test_dry_run_describes_grid_and_memory_without_writing(tmp_path):
    src = write_tif(tmp_path / "a.tif", image(300, 250))
    model = loaded(conv_net())
    opts = PredictOptions(**OPTS, confidence=True)
    lines, bad = dry_run([src, tmp_path / "nope.tif"], model, opts, tmp_path / "out")
    text = "\n".join(lines)
    assert bad == 1 and "nope.tif: input not found" in text
    assert "250 x 300 px, 3 band(s) uint8, EPSG:32632" in text
    assert "9 x 7 = 63 tiles" in text and "1 column group(s)" in text
    assert "row-band buffer" in text and "accelerator memory" in text and "batch: 4 tile(s)" in text
    assert "a_classes.tif, a_confidence.tif" in text and "predict (1 part(s))" in text
    assert not (tmp_path / "out").exists()
    _run(tmp_path, [src], model, confidence=True)
    lines, _ = dry_run([src], model, opts, tmp_path / "out")
    assert any("skip: finished" in line for line in lines)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    tall = write_tif(tmp_path / "in" / "tall.tif", image(1100, 80, seed=6))
    model = loaded(conv_net())
    _run(tmp_path / "one", [tall], model, confidence=True)
    shared = _run(tmp_path / "two", [tall], model, confidence=True, devices=2)
    assert [r.status for r in shared] == ["written"]
    for name in ("tall_classes.tif", "tall_confidence.tif"):
        one = (tmp_path / "one" / "out" / name).read_bytes()
        assert (tmp_path / "two" / "out" / name).read_bytes() == one, name
    assert not list((tmp_path / "two" / "out").glob("*.partial*"))
    other = write_tif(tmp_path / "in" / "small.tif", image(60, 70))
    sharded = _run(tmp_path / "two", [tall, other], model, confidence=True, devices=2)
    assert [r.status for r in sharded] == ["skipped", "written"]


def test_the_run_record_names_the_input_by_absolute_path(tmp_path, monkeypatch):
    write_tif(tmp_path / "in" / "a.tif", image(64, 64, seed=1))
    monkeypatch.chdir(tmp_path)
    predict_many(["in/a.tif"], loaded(conv_net()), PredictOptions(**OPTS), tmp_path / "out")
    record = json.loads((tmp_path / "out" / "a.predict.json").read_text())
    assert record["input"] == str((tmp_path / "in" / "a.tif").resolve())
