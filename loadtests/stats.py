"""The statistics of the A/B report, in plain Python (no scipy): intervals and tests for
proportions, a chi-square test on histogram bucket counts, and Prometheus's histogram_quantile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054  # two-sided 95% normal quantile
Z80 = 0.8416212335729143  # one-sided 80% normal quantile: the power of a planned test


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def wilson_interval(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when there is no observation."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0 or n successes, rounding can put a bound a hair past p; the interval always holds p.
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


def newcombe_interval(
    x1: float, n1: float, x2: float, n2: float, z: float = Z95
) -> tuple[float, float]:
    """Interval of p1 - p2 from the two Wilson intervals (Newcombe's hybrid score method 10)."""
    p1, p2 = (x1 / n1 if n1 else 0.0), (x2 / n2 if n2 else 0.0)
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    difference = p1 - p2
    lower = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return lower, upper


def non_inferiority_sample_size(
    accuracy: float, margin: float, z_alpha: float = Z95, z_power: float = Z80
) -> int:
    """Judgments per arm for a non-inferiority test of two accuracies to succeed with 80% power
    when both arms truly sit at ``accuracy``: the lower end of the difference's two-sided 95%
    interval (a one-sided test at 2.5%) must clear ``-margin``. The normal-approximation formula
    (Chow, Shao & Wang, Sample Size Calculations in Clinical Research, 4.2.2) with a true
    difference of zero: ``(z_alpha + z_power)^2 * 2 p (1 - p) / margin^2``.
    """
    if not 0 < margin < 1:
        raise ValueError(f"margin must be in (0, 1), got {margin}")
    variance = 2 * accuracy * (1 - accuracy)
    return max(1, math.ceil((z_alpha + z_power) ** 2 * variance / margin**2))


def two_proportion_z_test(x1: float, n1: float, x2: float, n2: float) -> tuple[float, float]:
    """Pooled two-proportion z-test of p1 = p2: (z, two-sided p)."""
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (x1 / n1 - x2 / n2) / se
    return z, min(1.0, 2 * normal_sf(abs(z)))


def _log_hypergeometric(a: int, row1: int, row2: int, col1: int) -> float:
    n = row1 + row2
    return (
        math.lgamma(row1 + 1)
        - math.lgamma(a + 1)
        - math.lgamma(row1 - a + 1)
        + math.lgamma(row2 + 1)
        - math.lgamma(col1 - a + 1)
        - math.lgamma(row2 - col1 + a + 1)
        - math.lgamma(n + 1)
        + math.lgamma(col1 + 1)
        + math.lgamma(n - col1 + 1)
    )


def fisher_exact(a: int, b: int, c: int, d: int) -> float:
    """Two-sided Fisher exact test of the 2x2 table [[a, b], [c, d]]: the probability of every
    table with the same margins that is no more likely than the observed one (as R does)."""
    row1, row2, col1 = a + b, c + d, a + c
    low, high = max(0, col1 - row2), min(row1, col1)
    observed = _log_hypergeometric(a, row1, row2, col1)
    total = 0.0
    for x in range(low, high + 1):
        log_p = _log_hypergeometric(x, row1, row2, col1)
        if log_p <= observed + 1e-7:
            total += math.exp(log_p)
    return min(1.0, total)


def compare_proportions(x1: int, n1: int, x2: int, n2: int) -> tuple[str, float]:
    """Test p1 = p2: the two-proportion z-test, or Fisher's exact test when an expected cell
    count is below 5 (where the normal approximation is poor). Returns (test name, p)."""
    successes, failures, n = x1 + x2, (n1 - x1) + (n2 - x2), n1 + n2
    expected = [r * c / n for r in (n1, n2) for c in (successes, failures)] if n else [0]
    if min(expected) < 5:
        return "Fisher exact", fisher_exact(x1, n1 - x1, x2, n2 - x2)
    return "two-proportion z-test", two_proportion_z_test(x1, n1, x2, n2)[1]


def _lower_gamma_series(s: float, x: float) -> float:
    term = total = 1 / s
    k = s
    for _ in range(10_000):
        k += 1
        term *= x / k
        total += term
        if abs(term) < abs(total) * 1e-15:
            break
    return total * math.exp(-x + s * math.log(x) - math.lgamma(s))


def _upper_gamma_fraction(s: float, x: float) -> float:
    # Lentz's continued fraction for Q(s, x), valid for x >= s + 1.
    tiny = 1e-300
    b = x + 1 - s
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - s)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return h * math.exp(-x + s * math.log(x) - math.lgamma(s))


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for X chi-square with df degrees of freedom (the regularized upper gamma)."""
    if x <= 0:
        return 1.0
    s, half = df / 2, x / 2
    if half < s + 1:
        return max(0.0, 1 - _lower_gamma_series(s, half))
    return _upper_gamma_fraction(s, half)


def merge_sparse_bins(
    first: Sequence[float], second: Sequence[float], minimum: float = 5.0
) -> tuple[list[float], list[float]]:
    """Merge adjacent bins of a 2 x k table until every expected count is at least ``minimum``
    (the usual condition of the chi-square approximation); empty bins merge away."""
    n1, n2 = sum(first), sum(second)
    total = n1 + n2
    merged1: list[float] = []
    merged2: list[float] = []
    a = b = 0.0
    for x, y in zip(first, second, strict=True):
        a, b = a + x, b + y
        column = a + b
        if total and min(n1, n2) * column / total >= minimum:
            merged1.append(a)
            merged2.append(b)
            a = b = 0.0
    if a or b:
        if merged1:
            merged1[-1] += a
            merged2[-1] += b
        else:
            merged1, merged2 = [a], [b]
    return merged1, merged2


def chi_square_homogeneity(
    first: Sequence[float], second: Sequence[float]
) -> tuple[float, int, float] | None:
    """Chi-square test that two samples' bucket counts come from one distribution, after merging
    sparse bins: (statistic, degrees of freedom, p), or None when fewer than two bins remain."""
    a, b = merge_sparse_bins(first, second)
    if len(a) < 2:
        return None
    n1, n2 = sum(a), sum(b)
    total = n1 + n2
    statistic = 0.0
    for x, y in zip(a, b, strict=True):
        column = x + y
        for observed, row in ((x, n1), (y, n2)):
            expected = row * column / total
            statistic += (observed - expected) ** 2 / expected
    df = len(a) - 1
    return statistic, df, chi2_sf(statistic, df)


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Prometheus's ``histogram_quantile``: ``buckets`` are (upper bound, cumulative count) with
    a +Inf bucket; linear interpolation inside the bucket holding the rank, the first bucket
    starting at 0, and the highest finite bound when the rank falls in the +Inf bucket."""
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return math.nan
    bounds = [le for le, _ in ordered]
    counts: list[float] = []
    for _, count in ordered:  # like Prometheus, force the cumulative counts to be monotonic
        counts.append(max(count, counts[-1]) if counts else count)
    observations = counts[-1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = next(i for i, count in enumerate(counts) if count >= rank)
    if b == len(counts) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[b], counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (end - start) * (rank / count)


def bucket_counts(buckets: Sequence[tuple[float, float]]) -> list[float]:
    """Per-bucket counts from cumulative ones (sorted by upper bound)."""
    ordered = sorted(buckets)
    counts, previous = [], 0.0
    for _, cumulative in ordered:
        counts.append(max(0.0, cumulative - previous))
        previous = max(previous, cumulative)
    return counts
