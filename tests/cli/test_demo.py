"""The README's main job, `geociss demo`, end to end in its quick mode."""

import yaml
from click.testing import CliRunner

from geociss.cli.main import cli
from geociss.engine.bundle import StepBundle


def test_demo_quick(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        cli, ["demo", "--out", str(out), "--quick", "--workers", "0", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "finetune" in result.output and "mib" in result.output
    for method in ("finetune", "mib"):
        run = out / "runs" / f"{method}-add-tree"
        bundle = StepBundle.load(run / "step1" / "bundle.safetensors")
        assert bundle.channel_names == [
            "impervious surfaces", "building", "low vegetation", "tree"
        ]
        assert (run / "history.png").is_file()
    maps = sorted(p.name for p in (out / "maps").iterdir())
    assert any(n.endswith("_classes.tif") for n in maps)
    assert any(n.endswith("_classes.qml") for n in maps)
    assert "QGIS" in result.output
    # training and held-out scenes are generated apart (seeds 0 and 1); the map is a held-out one
    assert len(list((out / "sample" / "images").glob("*.tif"))) == 4
    held_out = sorted((out / "sample" / "val" / "images").glob("*.tif"))
    assert len(held_out) == 1
    config = yaml.safe_load((out / "runs" / "mib-add-tree" / "config.yaml").read_text())
    assert config["data"]["val_images"] == str(held_out[0].parent)
    maps_of = {n.split("_classes")[0] for n in maps if n.endswith("_classes.tif")}
    assert maps_of == {held_out[0].stem}


def test_demo_rejects_unknown_method(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--method", "nope"])
    assert result.exit_code == 2
    assert "unknown method 'nope'" in result.output
