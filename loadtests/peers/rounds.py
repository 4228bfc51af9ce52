"""Several rounds of the servers, in rotated order, folded into one figure per server and level.

A shared 2-core VM changes speed within minutes: in one session here the raw bracket fell from
816 to 696 texts/s, and one server led another by 1.59x in one run and trailed it by 0.94x in
the next. With one pass, whichever server runs in a slow spell loses. Each round therefore
starts every server once, round r starting at the r-th, and each figure is the median over the
rounds, with the spread of throughput beside it so that a reader sees how far to trust a ratio.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

# Medians of these; errors and requests add up; the rest comes from the first round.
MEDIAN_FIELDS = (
    "requests_per_second",
    "texts_per_second",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "server_cpu_cores",
)
SUMMED_FIELDS = ("requests", "errors", "seconds")


def rotated(names: Sequence[str], round_index: int) -> list[str]:
    """The servers in the order of one round: round r starts at the r-th."""
    start = round_index % len(names)
    return [*names[start:], *names[:start]]


def fold_level(runs: list[dict]) -> dict:
    """One level's wrk figures over the rounds."""
    folded = dict(runs[0])
    for field in MEDIAN_FIELDS:
        folded[field] = round(statistics.median(run[field] for run in runs), 3)
    for field in SUMMED_FIELDS:
        folded[field] = round(sum(run[field] for run in runs), 2)
    if all("texts_per_batch" in run for run in runs):  # brum's, read from its /metrics
        folded["texts_per_batch"] = round(statistics.median(r["texts_per_batch"] for r in runs), 2)
    if all("lone_session_threads" in run for run in runs):  # brum's, after one connection
        folded["rounds_lone_session_threads"] = [run["lone_session_threads"] for run in runs]
    if all("other_cpu_cores" in run for run in runs):
        # The worst round: one round beside other work is enough to doubt the median.
        folded["rounds_other_cpu_cores"] = [run["other_cpu_cores"] for run in runs]
        folded["other_cpu_cores"] = max(folded["rounds_other_cpu_cores"])
    rates = [run["texts_per_second"] for run in runs]
    folded["rounds_texts_per_second"] = rates
    folded["spread"] = round((max(rates) - min(rates)) / folded["texts_per_second"], 3)
    return folded


def fold_server(rounds: list[dict]) -> dict:
    """One server's results over the rounds: skipped if any round was, figures folded, and the
    worst start-up (slowest ready, largest memory) kept, since a goal bounds every start."""
    skipped = next((r for r in rounds if "skipped" in r), None)
    if skipped is not None:
        return skipped
    folded = dict(rounds[0])
    folded["rounds"] = len(rounds)
    folded["ready_seconds"] = max(r["ready_seconds"] for r in rounds)
    folded["rss_ready_bytes"] = max(r["rss_ready_bytes"] for r in rounds)
    folded["rss_after_bytes"] = max(r["rss_after_bytes"] for r in rounds)
    folded["levels"] = {
        level: fold_level([r["levels"][level] for r in rounds]) for level in rounds[0]["levels"]
    }
    if "chosen" in folded:  # brum calibrates at every start: what each start chose
        folded["chosen_by_round"] = [r["chosen"] for r in rounds]
    return folded
