"""Choose how to spend the cores on the machine the service starts on, by measuring.

Two ways to run a model on C cores bracket the choice: C batches side by side, each on a
one-thread session, or one batch at a time on a C-thread session. Which wins depends on the
hardware, not only on the core count: on one 2-core machine side by side was 20% faster, on
another of the same kind one two-thread batch was 50% faster (BENCHMARKS.md). So at start-up the
service runs the model both ways for a fraction of a second, and keeps the plan that classifies
the most texts per second with the same number of texts in flight as a full batch; a plan within
``LATENCY_TIE`` of the best on throughput wins if it answers a lone text faster.

What a run costs is measured too, for each plan with its batches side by side as under load:
runs of one text and of ``PROBE_BATCH`` copies of it give a fixed overhead per run and a price
per token (``BatchCost``), by which the batcher decides where to cut (app/core/batcher.py).
Whether batching pays depends on the machine as much as the plan does: one 2-core VM here ran
one-text batches of real utterances 1.7x faster than batches of 32 (padding included, and no
overhead per run to speak of); another ran batches of 32 17% faster per text.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.runtime.classifier import OnnxClassifier
from app.runtime.session import SessionConfig, create_session
from app.runtime.tokenizer import EncodedBatch, TextEncoder

# Throughput this close to the best counts as a tie, decided by lone-text latency.
LATENCY_TIE = 0.05
# Texts per run of the larger probe.
PROBE_BATCH = 8


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
    texts_per_second: float  # with runs of one text or of PROBE_BATCH, whichever did more
    lone_seconds: float  # one text, nothing else running: the fastest of a few runs
    cost: BatchCost  # of one run, with the plan's batches side by side


def fit_cost(one: float, probe: float, size: int, tokens: int) -> BatchCost:
    """The overhead per run and price per token through two timings: a run of one text of
    ``tokens`` tokens took ``one`` seconds, a run of ``size`` of them ``probe`` seconds."""
    per_token = max(0.0, (probe - one) / ((size - 1) * tokens))
    return BatchCost(overhead=max(0.0, one - per_token * tokens), per_token=per_token)


def candidate_plans(cores: int) -> list[Plan]:
    if cores == 1:
        return [Plan(1, 1)]
    return [Plan(1, cores), Plan(cores, 1)]


def choose(measurements: list[Measurement]) -> Measurement:
    best = max(m.texts_per_second for m in measurements)
    close = [m for m in measurements if m.texts_per_second >= best * (1 - LATENCY_TIE)]
    return min(close, key=lambda m: m.lone_seconds)


def _throughput(
    run: Callable[[EncodedBatch], object], batch: EncodedBatch, streams: int, seconds: float
) -> float:
    """Texts per second with ``streams`` threads each running ``batch`` over and over (at
    least once each)."""
    done = [0] * streams
    deadline = time.perf_counter() + seconds

    def stream(index: int) -> None:
        while True:
            run(batch)
            done[index] += 1
            if time.perf_counter() >= deadline:
                return

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) * len(batch.input_ids) / (time.perf_counter() - started)


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
    for batch in (trial.one, trial.probe):
        _throughput(run, batch, plan.side_by_side, seconds=0)
    return trial


def calibrate(
    model: Path,
    tokenizer: TextEncoder,
    plans: list[Plan],
    text: str,
    seconds: float = 0.04,
    rounds: int = 2,
    graph_optimization_level: str = "all",
) -> Calibration:
    """Measure every plan on this machine, in alternating rounds so that a passing disturbance
    hits one round of each rather than one plan, and keep each plan's best figures."""
    trials = [_trial(model, tokenizer, plan, text, graph_optimization_level) for plan in plans]
    rates: dict[tuple[Plan, int], float] = {}
    lone: dict[Plan, float] = {}
    for _ in range(rounds):
        for trial in trials:
            for batch in (trial.one, trial.probe):
                rate = _throughput(trial.run, batch, trial.plan.side_by_side, seconds)
                key = (trial.plan, len(batch.input_ids))
                rates[key] = max(rate, rates.get(key, 0.0))
            lone[trial.plan] = min(trial.lone_seconds(runs=3), lone.get(trial.plan, math.inf))
    measurements = []
    for trial in trials:
        plan, tokens = trial.plan, trial.one.input_ids.shape[1]
        one, probe = rates[(plan, 1)], rates[(plan, PROBE_BATCH)]
        # Seconds per run of each stream: the streams ran side by side.
        cost = fit_cost(
            plan.side_by_side / one, plan.side_by_side * PROBE_BATCH / probe, PROBE_BATCH, tokens
        )
        measurements.append(Measurement(plan, max(one, probe), lone[plan], cost))
    return Calibration(choose(measurements), measurements)
