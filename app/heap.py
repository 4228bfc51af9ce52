"""The garbage collector of a serving process: everything loaded at start-up lives until exit, so
it is moved out of the collector's sight once the service is ready, and the youngest generation
is collected less often.

Every request leaves a few objects behind (the feedback ledger, metric children), and with
CPython's default thresholds (700, 10, 10) the full collections that follow walked every object
the process loaded: those pauses held the event loop and every request queued behind it. Frozen
and at (20,000, 50, 100), p99 at 32 and 64 connections fell by up to two fifths, and throughput at
64 rose 3-9% (BENCHMARKS.md, "Garbage collection").
"""

from __future__ import annotations

import gc

THRESHOLDS = (20_000, 50, 100)


def settle() -> None:
    """Call once the long-lived objects exist (sessions loaded, routes built)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
