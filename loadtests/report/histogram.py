"""Prometheus histograms as the report reads them: (upper bound, cumulative count) pairs with a
+Inf bucket, as ``brum_request_duration_seconds_bucket`` increases over a window."""

from __future__ import annotations

import math
from collections.abc import Sequence


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


def tail(buckets: Sequence[tuple[float, float]], bound: float) -> tuple[float, float]:
    """(requests slower than ``bound``, all requests): exact when ``bound`` is a bucket bound,
    else counted from the next bound below it (never more than were slower)."""
    ordered = sorted(buckets)
    if not ordered:
        return 0.0, 0.0
    total = ordered[-1][1]
    within = max((count for le, count in ordered if le <= bound), default=0.0)
    return max(0.0, total - within), total


def tail_bound(buckets: Sequence[tuple[float, float]], q: float) -> float:
    """The smallest finite bucket bound that at least ``q`` of the requests fall within (the
    largest finite bound when the quantile is in the +Inf bucket)."""
    ordered = sorted(buckets)
    finite = [(le, count) for le, count in ordered if math.isfinite(le)]
    if not finite:
        return math.inf
    total = ordered[-1][1]
    return next((le for le, count in finite if count >= q * total), finite[-1][0])
