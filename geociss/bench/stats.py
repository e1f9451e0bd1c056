"""Seeds → mean ± standard deviation, and paired differences with 95 % intervals.

A benchmark cell (method × task) runs once per seed. Two methods run with the same seed share
the same data, step-0 model and sampling stream, so their results are paired: the difference of
their all-mIoU is taken per seed, and its mean gets a Student-t 95 % interval over the seeds
(``mean ± t(0.975, n−1) · sd / √n``). A method is called better or worse than another only where
that interval excludes 0; otherwise the two are not distinguishable at this number of seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# two-sided 95 % quantiles of Student's t, t(0.975, df), df = 1 … 30 (then 1.96)
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def t975(df: int) -> float:
    """Two-sided 95 % quantile of Student's t with ``df`` degrees of freedom (df ≥ 1)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation of some values (None entries left out).

    Attributes:
        mean: the mean, or None without values.
        sd: the sample standard deviation (n − 1), or None with fewer than two values.
        n: how many values.
    """

    mean: float | None
    sd: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Spread:
        """Summarise ``values``."""
        xs = [float(v) for v in values if v is not None and not math.isnan(v)]
        if not xs:
            return cls(None, None, 0)
        mean = sum(xs) / len(xs)
        if len(xs) < 2:
            return cls(mean, None, len(xs))
        var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
        return cls(mean, math.sqrt(var), len(xs))


@dataclass(frozen=True)
class PairedDiff:
    """The difference a − b over paired seeds, with its 95 % interval.

    Attributes:
        mean: mean difference, or None without pairs.
        low: lower end of the 95 % interval (None with fewer than two pairs).
        high: upper end.
        n: number of pairs.
    """

    mean: float | None
    low: float | None
    high: float | None
    n: int

    def show(self, verdict: bool = True) -> str:
        """In percentage points: ``+3.0 [-0.4, +6.4] not distinguishable``, ``-`` without data."""
        if self.mean is None:
            return "-"
        if self.low is None or self.high is None:
            return f"{100 * self.mean:+.1f} ({self.n} seed)"
        text = f"{100 * self.mean:+.1f} [{100 * self.low:+.1f}, {100 * self.high:+.1f}]"
        return f"{text} {self.verdict}" if verdict else text

    @property
    def verdict(self) -> str:
        """``better`` / ``worse`` where the interval excludes 0, else ``not distinguishable``."""
        if self.low is None or self.high is None:
            return "too few seeds"
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "not distinguishable"


def paired_difference(a: dict[int, float | None], b: dict[int, float | None]) -> PairedDiff:
    """Difference ``a[seed] − b[seed]`` over the seeds both have, with a t interval."""
    diffs = [
        float(a[s]) - float(b[s])  # type: ignore[arg-type]
        for s in sorted(set(a) & set(b))
        if a[s] is not None and b[s] is not None
    ]
    spread = Spread.of(diffs)
    if spread.mean is None:
        return PairedDiff(None, None, None, 0)
    if spread.sd is None:
        return PairedDiff(spread.mean, None, None, spread.n)
    half = t975(spread.n - 1) * spread.sd / math.sqrt(spread.n)
    return PairedDiff(spread.mean, spread.mean - half, spread.mean + half, spread.n)


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's correlation of paired values (None with fewer than 3 pairs or no spread)."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} x values but {len(ys)} y values")
    n = len(xs)
    if n < 3:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties given the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson's on tie-averaged ranks)."""
    return pearson(ranks(xs), ranks(ys))


__all__ = ["PairedDiff", "Spread", "paired_difference", "pearson", "ranks", "spearman", "t975"]
