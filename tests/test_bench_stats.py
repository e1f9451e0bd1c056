"""Seeded benchmark statistics and tables: hand-checked means, intervals and verdicts."""

from __future__ import annotations

import math

import pytest

from geociss.bench import BenchRow
from geociss.bench.report import (
    ablation_comparisons,
    comparisons,
    per_class_table,
    summary_table,
)
from geociss.bench.stats import Spread, paired_difference, t975


def test_spread_is_the_mean_and_the_sample_standard_deviation():
    s = Spread.of([0.5, 0.7, None, 0.9])
    assert s.n == 3 and s.mean == pytest.approx(0.7)
    assert s.sd == pytest.approx(0.2)  # sqrt(((-.2)² + 0 + .2²) / 2)
    assert Spread.of([0.4]).sd is None and Spread.of([]).mean is None


def test_paired_interval_by_hand():
    # differences 0.03, 0.04, 0.05: mean 0.04, sd 0.01, t(0.975, 2) = 4.303
    a = {0: 0.53, 1: 0.54, 2: 0.55}
    b = {0: 0.50, 1: 0.50, 2: 0.50}
    d = paired_difference(a, b)
    half = 4.303 * 0.01 / math.sqrt(3)
    assert d.n == 3 and d.mean == pytest.approx(0.04)
    assert d.low == pytest.approx(0.04 - half) and d.high == pytest.approx(0.04 + half)
    assert d.verdict == "better"
    assert paired_difference(b, a).verdict == "worse"


def test_a_difference_is_shown_in_points_with_its_interval():
    d = paired_difference({0: 0.53, 1: 0.54, 2: 0.55}, {0: 0.5, 1: 0.5, 2: 0.5})
    assert d.show() == "+4.0 [+1.5, +6.5] better"  # half width 4.303 · 0.01 / √3 = 0.0248
    assert d.show(verdict=False) == "+4.0 [+1.5, +6.5]"
    assert paired_difference({0: 0.5}, {0: 0.6}).show() == "-10.0 (1 seed)"
    assert paired_difference({0: 0.5}, {1: 0.6}).show() == "-"


def test_an_interval_that_holds_zero_is_not_distinguishable():
    d = paired_difference({0: 0.5, 1: 0.6, 2: 0.4}, {0: 0.45, 1: 0.5, 2: 0.5})
    assert d.low < 0 < d.high and d.verdict == "not distinguishable"


def test_only_shared_seeds_pair_and_one_pair_has_no_interval():
    d = paired_difference({0: 0.5, 5: 0.9}, {0: 0.4, 1: 0.1})
    assert d.n == 1 and d.mean == pytest.approx(0.1) and d.low is None
    assert d.verdict == "too few seeds"


def test_t_quantiles():
    assert t975(1) == pytest.approx(12.706) and t975(2) == pytest.approx(4.303)
    assert t975(100) == pytest.approx(1.96)
    with pytest.raises(ValueError):
        t975(0)


def _rows():
    rows = []
    for seed, (ft, mib, joint) in enumerate(
        [(0.30, 0.50, 0.70), (0.32, 0.54, 0.72), (0.34, 0.52, 0.74)]
    ):
        for method, value in (("finetune", ft), ("mib", mib), ("joint", joint)):
            rows.append(
                BenchRow(
                    "4-1",
                    method,
                    value,
                    value / 2,
                    value,
                    of_joint=value / joint,
                    seed=seed,
                    per_class={"car": value / 4, "tree": value},
                )
            )
    return rows


def test_tables_show_mean_sd_published_ratio_and_verdicts():
    rows = _rows()
    summary = summary_table(rows)
    assert "| 4-1 | mib | 3 | 52.0 ± 2.0 | 26.0 ± 1.0 | 52.0 ± 2.0 |" in summary
    assert "| 0.84 |" in summary  # MiB‡ 61.47 / offline 72.98 (IDEC Table 3)
    comp = comparisons(rows)
    assert "| 4-1 | mib |  | +20.0 [" in comp and "better" in comp
    assert "joint" not in comp
    per_class = per_class_table(rows)
    assert "| task | method | car | tree |" in per_class
    assert "| 4-1 | finetune | 8.0 | 32.0 |" in per_class


def test_an_ablation_is_compared_with_its_full_method_on_old_and_new_apart():
    rows = []
    # the variant trades old for new: old -0.10 each seed, new +0.04/+0.05/+0.06, all equal
    for seed, (d_new, all_) in enumerate([(0.04, 0.60), (0.05, 0.62), (0.06, 0.64)]):
        rows.append(BenchRow("4-1", "idec", 0.80, 0.40, all_, seed=seed))
        rows.append(BenchRow("4-1", "idec-no-dada", 0.70, 0.40 + d_new, all_, seed=seed))
        rows.append(BenchRow("4-1", "mib", 0.75, 0.30, 0.55, seed=seed))
    table = ablation_comparisons(rows)
    lines = [line for line in table.splitlines() if "idec-no-dada" in line]
    assert len(lines) == 1 and "mib" not in table
    old, new, all_ = lines[0].split(" | ")[2:5]
    assert old.startswith("-10.0 [-10.0, -10.0] worse")
    half = 100 * 4.303 * 0.01 / math.sqrt(3)  # differences .04/.05/.06: sd .01
    assert new.startswith(f"+5.0 [{5.0 - half:+.1f}, {5.0 + half:+.1f}] better")
    assert all_.startswith("+0.0 [+0.0, +0.0] not distinguishable")
    assert ablation_comparisons([r for r in rows if r.method != "idec-no-dada"]) == ""


def test_correlations_on_hand_checked_values():
    from geociss.bench.stats import pearson, ranks, spearman

    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # x = 1, 2, 3, 4; y = 1, 3, 2, 4: sxy = 4, sxx = syy = 5 -> r = 0.8
    assert pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert pearson([1, 1, 1], [1, 2, 3]) is None and pearson([1, 2], [1, 2]) is None
    assert ranks([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]
    # monotone but not linear: rank correlation 1, Pearson below 1
    xs, ys = [1, 2, 3, 4, 5], [1, 2, 4, 8, 100]
    assert spearman(xs, ys) == pytest.approx(1.0) and pearson(xs, ys) < 0.9


def test_retention_tracking_counts_warnings_against_real_losses():
    from geociss.bench import BenchRow
    from geociss.bench.report import retention_tracking

    def pair(kept, before, after):
        return {"kept": kept, "iou_before": before, "iou_after": after, "step": 1, "class": "c"}

    row = BenchRow(
        "4-1",
        "mib",
        0.5,
        0.1,
        0.4,
        retention=[
            pair(0.9, 0.8, 0.8),
            pair(0.3, 0.8, 0.2),
            pair(0.6, 0.5, 0.2),
            pair(0.2, 0.4, 0.4),
            pair(None, 0.5, 0.5),
            pair(0.5, 0.0, 0.1),  # no teacher pixels / no IoU before: left out
        ],
    )
    table = retention_tracking([row])
    last = table.splitlines()[-1]
    assert last.startswith("| 4 |")
    # warned: 0.3 (lost: 0.25) and 0.2 (kept its IoU) -> 1 / 2; lost: 0.3 and 0.6 -> 1 / 2
    assert "| 1 / 2 | 1 / 2 |" in last
    assert retention_tracking([BenchRow("4-1", "mib", 0.5, 0.1, 0.4)]) == ""


def test_retention_misses_name_the_losses_the_warning_let_through():
    from geociss.bench import BenchRow
    from geociss.bench.report import retention_misses

    def pair(cls, kept, before, after):
        return {"kept": kept, "iou_before": before, "iou_after": after, "step": 1, "class": cls}

    rows = [
        BenchRow("4-1", "finetune", 0.1, 0.3, 0.1, seed=s, retention=[
            pair("impervious surfaces", 0.99, 0.8, 0.3 - s / 10),  # kept, yet IoU fell: a miss
            pair("building", 0.0, 0.7, 0.0),  # warned and lost: not a miss
            pair("tree", 0.9, 0.8, 0.7),  # kept and kept its IoU
        ]) for s in (0, 1)
    ]
    assert retention_misses(rows) == (
        "Losses it did not warn about: 4-1 finetune impervious surfaces (2×: kept 0.99, IoU "
        "after / before 0.31)."
    )
    assert retention_misses(rows, threshold=0.995) == ""  # warned at that threshold: no miss
    assert retention_misses([BenchRow("4-1", "mib", 0.5, 0.1, 0.4)]) == ""
