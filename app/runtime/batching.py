"""Where to cut a batch: what one run costs, and the cut of sorted texts that costs least.

A run costs a fixed overhead plus a price per token of the padded batch (texts x longest). Where
the overhead is large, full batches win; where it is small, a short text padded to a long one's
length costs more than a run of its own. Both are measured at start-up (app/runtime/calibration.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchCost:
    """Seconds one run takes: ``overhead`` per run plus ``per_token`` per token of the padded
    batch."""

    overhead: float
    per_token: float

    def seconds(self, texts: int, longest: int) -> float:
        return self.overhead + self.per_token * texts * longest


# Overhead only: the fewest runs are the cheapest, so batches are always filled.
FILL_BATCHES = BatchCost(overhead=1.0, per_token=0.0)


def plan_batches(
    lengths: Sequence[int], max_size: int, max_tokens: int, cost: BatchCost = FILL_BATCHES
) -> list[list[int]]:
    """Indices sorted by length, cut where the batches cost least in all, each holding
    <= max_size texts and, padded to its longest, <= max_tokens tokens (a single longer text
    still gets a batch of its own). Of equally cheap cuts, the one with the longest last
    batches."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    ordered = [lengths[i] for i in order]
    # least[end]: the cheapest way to run the ``end`` shortest texts; start[end]: where its last
    # batch begins. Batches are runs of neighbours in length order: no cheaper cut skips one.
    least = [0.0] + [math.inf] * len(ordered)
    start = [0] * (len(ordered) + 1)
    for end in range(1, len(ordered) + 1):
        longest = ordered[end - 1]
        for first in range(end - 1, max(end - max_size, 0) - 1, -1):
            size = end - first
            if size > 1 and size * longest > max_tokens:
                break
            total = least[first] + cost.seconds(size, longest)
            if total < least[end]:
                least[end], start[end] = total, first
    batches: list[list[int]] = []
    end = len(ordered)
    while end:
        batches.append(order[start[end] : end])
        end = start[end]
    return batches[::-1]
