"""Choose how to spend the cores on the machine the service starts on, by measuring.

Two ways to run a model on C cores bracket the choice: C batches side by side, each on a one-thread
session, or one batch at a time on a C-thread session; on more than 2 cores the power-of-two splits
between them (2 threads x C/2 batches, 4 x C/4, ...) are measured too. Which wins depends on the
hardware, not only on the core count: on one 2-core machine side by side was 20% faster, on another
of the same kind one two-thread batch was 50% faster (BENCHMARKS.md). So at start-up the service
runs the model each way for a fraction of a second, with each plan's batches side by side as under
load: runs of one text and of ``PROBE_BATCH`` copies of it give the plan's cost of a run, a fixed
overhead plus a price per token (app/runtime/batching.py), by which the batcher will cut. Whether
batching pays depends on the machine as much as the plan does: one 2-core VM here ran one-text
batches of real utterances 1.7x faster than batches of 32 (padding included, and no overhead per
run to speak of); another ran batches of 32 17% faster per text.

Copies of one text have no padding, so they flatter large batches: the plans are compared on the
texts per second their costs predict for a full batch of texts in flight with a realistic spread
of lengths (``LENGTH_SPREAD``), each plan cutting them as it would. Within ``TIE`` of the best,
the plan with the most batches side by side wins. Calibration runs without the event loop, and
under load the loop takes a share of a core: it preempts one thread of a session on every core
and stalls the whole run, while beside it one-thread batches lose only that share. On a 2-core VM
here the two plans were predicted 5% apart and served real traffic 13% apart (BENCHMARKS.md).
Lone texts lose nothing by it: they get a session with more threads of their own, inline, where
that answers them faster (app/core/placement.py).

Under a CPU quota below the cores (a Kubernetes limit of 1.5 CPUs on a 2-core node) a burst may
run free or be throttled mid-way, depending on what the quota period had left: three starts under
1.5 CPUs here measured the same plan at 524, 879 and 662 texts/s and chose differently. So each
timed burst starts in a fresh period (``QUOTA_PERIOD``), and a plan's rate is what the quota
allows of it: texts per CPU-second times the quota, when that is below its rate in the burst.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.runtime.batching import BatchCost, plan_batches
from app.runtime.classifier import OnnxClassifier
from app.runtime.session import SessionConfig, create_session
from app.runtime.tokenizer import EncodedBatch, TextEncoder

# Predicted throughput this close to the best counts as a tie.
TIE = 0.05
# The CFS period of a CPU quota: the kernel's and Kubernetes' default. A pause this long before a
# burst lets it start on a full period's quota.
QUOTA_PERIOD = 0.1
# Texts per run of the larger probe.
PROBE_BATCH = 8
# Token lengths of texts in flight, relative to a typical utterance's: the spread of CLINC150's
# and BANKING77's test splits (5th to 95th percentile: 0.55x to 2.4x the median).
LENGTH_SPREAD = (0.55, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 1, 1, 1.1, 1.2, 1.3, 1.4, 1.6, 1.9, 2.4)


@dataclass(frozen=True)
class Plan:
    """``threads`` per onnxruntime session, ``side_by_side`` batches in flight at once."""

    threads: int
    side_by_side: int

    def __str__(self) -> str:
        return f"{self.threads} thread(s) x {self.side_by_side} batch(es) side by side"


@dataclass(frozen=True)
class Measurement:
    plan: Plan
    texts_per_second: float  # predicted for a full batch of texts of LENGTH_SPREAD in flight
    lone_seconds: float  # one text, nothing else running: the fastest of a few runs
    cost: BatchCost  # of one run, with the plan's batches side by side


def fit_cost(one: float, probe: float, size: int, tokens: int) -> BatchCost:
    """The overhead per run and price per token through two timings: a run of one text of
    ``tokens`` tokens took ``one`` seconds, a run of ``size`` of them ``probe`` seconds."""
    per_token = max(0.0, (probe - one) / ((size - 1) * tokens))
    return BatchCost(overhead=max(0.0, one - per_token * tokens), per_token=per_token)


def predicted_throughput(
    plan: Plan, cost: BatchCost, tokens: int, in_flight: int, max_tokens: int
) -> float:
    """Texts per second of ``plan`` with ``in_flight`` texts around ``tokens`` long (spread as
    ``LENGTH_SPREAD``) shared among its batches side by side, each cut where ``cost`` says."""
    per_batch = max(1, in_flight // plan.side_by_side)
    spread = [LENGTH_SPREAD[i % len(LENGTH_SPREAD)] for i in range(per_batch)]
    lengths = [max(2, round(tokens * factor)) for factor in spread]
    runs = plan_batches(lengths, per_batch, max_tokens, cost)
    seconds = sum(cost.seconds(len(run), max(lengths[i] for i in run)) for run in runs)
    return plan.side_by_side * per_batch / seconds


def candidate_plans(cores: int) -> list[Plan]:
    """Every way to share ``cores`` out in sessions of a power-of-two number of threads (and the
    one session on them all): 1x2 and 2x1 on 2 cores; 1x16, 2x8, 4x4, 8x2 and 16x1 on 16, where
    a few threads per batch may beat both ends."""
    threads = [t for t in (2**k for k in range(cores.bit_length())) if cores % t == 0]
    return [Plan(t, cores // t) for t in sorted({*threads, cores})]


def choose(measurements: list[Measurement]) -> Measurement:
    best = max(m.texts_per_second for m in measurements)
    close = [m for m in measurements if m.texts_per_second >= best * (1 - TIE)]
    return max(close, key=lambda m: (m.plan.side_by_side, m.texts_per_second))


def _paired_burst(
    run: Callable[[EncodedBatch], object],
    one: EncodedBatch,
    probe: EncodedBatch,
    streams: int,
    seconds: float,
    quota: float | None = None,
) -> tuple[list[float], list[float], float]:
    """``streams`` threads each running ``one`` then ``probe`` over and over for ``seconds`` (at
    least once each): how long every run of each took, and how much slower than that the quota
    lets them run (1 without a quota, or when it does not bite)."""
    ones: list[float] = []
    probes: list[float] = []
    deadline = time.perf_counter() + seconds

    def stream() -> None:
        while True:
            started = time.perf_counter()
            run(one)
            middle = time.perf_counter()
            run(probe)
            finished = time.perf_counter()
            ones.append(middle - started)  # list.append is atomic under the GIL
            probes.append(finished - middle)
            if finished >= deadline:
                return

    threads = [threading.Thread(target=stream) for _ in range(streams)]
    cpu = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    throttled = 1.0
    if quota is not None:
        # What a pair of runs takes each stream when the streams get only the quota's CPU time.
        allowed = (time.process_time() - cpu) * streams / (len(ones) * quota)
        throttled = max(1.0, allowed / (statistics.median(ones) + statistics.median(probes)))
    return ones, probes, throttled


@dataclass(frozen=True)
class Calibration:
    chosen: Measurement
    measurements: list[Measurement]  # one per candidate plan


@dataclass(frozen=True)
class _Trial:
    plan: Plan
    run: Callable[[EncodedBatch], object]
    one: EncodedBatch
    probe: EncodedBatch

    def lone_seconds(self, runs: int) -> float:
        """The fastest of a few runs: the least disturbed."""
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            self.run(self.one)
            timings.append(time.perf_counter() - started)
        return min(timings)


def _trial(model: Path, tokenizer: TextEncoder, plan: Plan, text: str, level: str) -> _Trial:
    session = create_session(model, SessionConfig(plan.threads, 1, level))
    run = OnnxClassifier(tokenizer, session, tuple(i.name for i in session.get_inputs())).run
    trial = _Trial(
        plan, run, tokenizer.encode_batch([text]), tokenizer.encode_batch([text] * PROBE_BATCH)
    )
    # First runs allocate, and concurrent ones each need their own buffers: keep them out.
    _paired_burst(run, trial.one, trial.probe, plan.side_by_side, seconds=0)
    return trial


def calibrate(
    model: Path,
    tokenizer: TextEncoder,
    plans: list[Plan],
    text: str,
    in_flight: int = 32,
    max_tokens: int = 4096,
    seconds: float = 0.04,
    rounds: int = 2,
    graph_optimization_level: str = "all",
    quota: float | None = None,
) -> Calibration:
    """Measure every plan on this machine, in alternating rounds so that a passing disturbance
    hits one round of each rather than one plan. Each stream alternates a run of one text with a
    run of ``PROBE_BATCH`` copies of it, so that both see the machine in the same state: the
    overhead per run is the small difference of the two, and timed in separate bursts a few tens
    of milliseconds apart it came out anywhere from 0.09 to 1.5 ms between starts on a 2-core
    EPYC (BENCHMARKS.md, 2026-12-06). Each is the median of all its runs, robust to the few
    something else delayed. ``quota``: the CPUs' worth of time the cgroup allows, when it is
    less than the cores the plans use."""
    trials = [_trial(model, tokenizer, plan, text, graph_optimization_level) for plan in plans]
    ones: dict[Plan, list[float]] = {trial.plan: [] for trial in trials}
    probes: dict[Plan, list[float]] = {trial.plan: [] for trial in trials}
    throttled: dict[Plan, float] = {}
    lone: dict[Plan, float] = {}
    for _ in range(rounds):
        for trial in trials:
            plan = trial.plan
            if quota is not None:
                # A period's quota is more than half the plan's cores for 0.1 s: enough for
                # the lone runs and one burst.
                time.sleep(QUOTA_PERIOD)
            lone[plan] = min(trial.lone_seconds(runs=3), lone.get(plan, math.inf))
            # One burst of pairs as long as a burst of each kind.
            one, probe, slower = _paired_burst(
                trial.run, trial.one, trial.probe, plan.side_by_side, 2 * seconds, quota
            )
            ones[plan].extend(one)
            probes[plan].extend(probe)
            throttled[plan] = min(slower, throttled.get(plan, math.inf))
    measurements = []
    for trial in trials:
        plan, tokens = trial.plan, trial.one.input_ids.shape[1]
        one = statistics.median(ones[plan]) * throttled[plan]
        probe = statistics.median(probes[plan]) * throttled[plan]
        cost = fit_cost(one, probe, PROBE_BATCH, tokens)
        rate = predicted_throughput(plan, cost, tokens, in_flight, max_tokens)
        measurements.append(Measurement(plan, rate, lone[plan], cost))
    return Calibration(choose(measurements), measurements)
