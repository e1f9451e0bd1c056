"""docs/configuration.md: generated from the models, every key described, examples that load."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import BaseModel, Field

from geociss.config import reference
from geociss.config.experiment import ExperimentConfig
from geociss.config.validation import validate_model
from geociss.data.classes import ClassSchema
from geociss.data.scenarios import Scenario
from geociss.errors import UnknownLabelValueError
from geociss.methods import get_method

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"


def example(name: str) -> dict:
    """The YAML block that follows ``<!-- example: NAME -->`` in the reference."""
    match = re.search(rf"<!-- example: {name} -->\n```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"no example {name!r} in {DOC}"
    return yaml.safe_load(match.group(1))


def test_every_key_has_a_description():
    assert reference.missing_descriptions() == []


def test_the_reference_is_what_the_generator_writes_now():
    text = DOC.read_text(encoding="utf-8")
    assert reference.render(text) == text, "run: python -m geociss.config.reference"
    assert reference.main([str(DOC), "--check"]) == 0


def test_every_documented_key_is_in_the_reference():
    text = DOC.read_text(encoding="utf-8")
    for prefix, model in reference.documented_models():
        for name, field in model.model_fields.items():
            assert f"| `{prefix}{field.alias or name}` |" in text
    for key in (
        "model.in_channels",
        "data.bands",
        "data.val_images",
        "scenario.steps",
        "scenario.unlearned",
        "data.schema",
        "classes[].values",
    ):
        assert f"| `{key}` |" in text


def test_check_reports_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text(DOC.read_text(encoding="utf-8").replace("`data.bands`", "`data.bandz`"))
    assert reference.main([str(stale), "--check"]) == 1
    assert "out of date" in capsys.readouterr().out
    assert reference.main([str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == DOC.read_text(encoding="utf-8")


def test_render_refuses_unknown_and_missing_blocks():
    with pytest.raises(ValueError, match="unknown reference block 'nope'"):
        reference.render("<!-- reference:nope -->\n<!-- /reference:nope -->\n")
    with pytest.raises(ValueError, match="no markers for reference block"):
        reference.render("no markers\n")


def test_table_cells_type_default_and_bounds():
    class Demo(BaseModel):
        size: int = Field(default=8, ge=1, description="A size | in px.")
        mode: str | None = Field(default=None, description="A mode.")
        pair: tuple[int, int] = Field(default=(1, 2), description="Two.")

    assert reference.table(Demo, "demo.").splitlines()[2:] == [
        "| `demo.size` | int (≥ 1) | `8` | A size \\| in px. |",
        "| `demo.mode` | string or null | `null` | A mode. |",
        "| `demo.pair` | [int, int] | `[1, 2]` | Two. |",
    ]


def test_isprs_colour_example_is_the_preset():
    schema = ClassSchema.from_dict(example("isprs-rgb"), source="docs isprs-rgb")
    assert schema.to_dict() == ClassSchema.preset("isprs-rgb").to_dict()


def test_satellite_example_maps_values_and_ignores():
    schema = ClassSchema.from_dict(example("satellite"), source="docs satellite")
    assert schema.names == ["other", "water", "forest", "built-up"]
    raw = np.array([[0, 1, 2, 3], [4, 5, 6, 255]], dtype=np.uint16)
    assert schema.encode(raw).tolist() == [[255, 0, 1, 2], [2, 3, 0, 255]]
    with pytest.raises(UnknownLabelValueError, match="7"):
        schema.encode(np.array([[7]], dtype=np.uint16))


def test_experiment_example_validates_with_the_satellite_schema():
    cfg = validate_model(ExperimentConfig, example("experiment"), "docs experiment")
    get_method(cfg.method.name).Params.model_validate(cfg.method.params)
    schema = ClassSchema.from_dict(example("satellite"), source="docs satellite")
    scenario = Scenario.from_config(cfg.scenario, schema)
    assert [[schema.names[i] for i in step] for step in scenario.steps] == [
        ["other", "water", "forest"],
        ["built-up"],
    ]
