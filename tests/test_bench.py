"""The benchmark's bookkeeping (the training itself is covered by the runner tests)."""

import pytest

from geociss.bench import BenchRow, _relative, describe, markdown, method_config, step_cost
from geociss.errors import ConfigError


def test_relative_columns_and_markdown():
    rows = [
        BenchRow("4-1", "finetune", 0.1, 0.5, 0.2, step_seconds=1.0),
        BenchRow("4-1", "mib", 0.4, 0.3, 0.38, step_seconds=1.5, peak_mib=312.4),
        BenchRow("4-1", "joint", 0.5, 0.6, 0.4),
        BenchRow("4-1", "ilt", None, None, None, note="diverged"),
    ]
    _relative(rows)
    assert rows[1].of_joint == pytest.approx(0.95)
    assert rows[1].step_vs_finetune == pytest.approx(1.5)
    assert rows[3].of_joint is None
    table = markdown(rows)
    assert "| 4-1 | mib | 40.0 | 30.0 | 38.0 | 0.95 | 1.500 | 1.50 | 312 |" in table
    assert "| 4-1 | ilt (diverged) | - | - | - |" in table


def test_method_config_reads_fragments_and_names():
    ablation = method_config("idec-no-dada")
    assert ablation["name"] == "idec" and ablation["params"]["dada"] is False
    assert method_config("joint")["name"] == "joint"
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        method_config("nope")


def test_step_cost_measures_time_and_memory_in_a_fresh_process():
    seconds, peak = step_cost("mib", "small", repeats=1)
    assert 0 < seconds < 120
    # a batch of 8 × 256² with activations kept for backward needs tens of MiB at least
    assert 10 < peak < 8000


def test_describe_states_the_preset_settings():
    text = describe("small")
    assert "tiny encoder" in text and "128-px chips" in text and "car ×8" in text
    assert "gradient norm clipped at 5" in text
    assert "gradient" not in describe("paper")
