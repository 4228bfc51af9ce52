"""Choose how to spend the cores on the machine the service starts on, by measuring.

Two ways to run a model on C cores bracket the choice: C batches side by side, each on a
one-thread session, or one batch at a time on a C-thread session. Which wins depends on the
hardware, not only on the core count: on one 2-core machine side by side was 20% faster, on
another of the same kind one two-thread batch was 50% faster (BENCHMARKS.md). So at start-up the
service runs the model both ways for a fraction of a second, and keeps the plan that classifies
the most texts per second with the same number of texts in flight as a full batch; a plan within
``LATENCY_TIE`` of the best on throughput wins if it answers a lone text faster.

The largest batch is measured too: bigger batches are not always cheaper per text. On one 2-core
machine here a one-thread session ran batches of 8 as fast per text as batches of 32, and batches
of 64 20% slower (their activations outgrow the caches), so cutting at 8 lost nothing and made
every batch four times shorter. The chosen plan runs full batches of each candidate size, and the
smallest size within ``LATENCY_TIE`` of the best throughput is kept.
"""

from __future__ import annotations

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
    texts_per_second: float
    lone_seconds: float  # median batch-1 run


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
    batch_size: int  # the largest batch worth cutting, with the chosen plan
    batch_rates: dict[int, float]  # texts per second of the chosen plan at each batch size


@dataclass(frozen=True)
class _Trial:
    plan: Plan
    run: Callable[[EncodedBatch], object]
    batch: EncodedBatch
    lone: EncodedBatch
    tokenizer: TextEncoder
    text: str

    def full_batches(self, size: int) -> EncodedBatch:
        return self.tokenizer.encode_batch([self.text] * size)

    def lone_seconds(self, runs: int) -> float:
        """The fastest of a few runs: the least disturbed."""
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            self.run(self.lone)
            timings.append(time.perf_counter() - started)
        return min(timings)


def _trial(
    model: Path, tokenizer: TextEncoder, plan: Plan, text: str, texts_in_flight: int, level: str
) -> _Trial:
    session = create_session(model, SessionConfig(plan.threads, 1, level))
    run = OnnxClassifier(tokenizer, session, tuple(i.name for i in session.get_inputs())).run
    batch = tokenizer.encode_batch([text] * max(1, texts_in_flight // plan.side_by_side))
    trial = _Trial(plan, run, batch, tokenizer.encode_batch([text]), tokenizer, text)
    # First runs allocate, and concurrent ones each need their own buffers: keep them out.
    _throughput(run, batch, plan.side_by_side, seconds=0)
    trial.lone_seconds(runs=2)
    return trial


def batch_sizes(largest: int) -> list[int]:
    """Candidate batch sizes: the configured largest, halved down to 8."""
    sizes = [largest]
    while sizes[-1] // 2 >= 8:
        sizes.append(sizes[-1] // 2)
    return sizes


def _best_batch_size(
    trial: _Trial, sizes: list[int], seconds: float, rounds: int
) -> tuple[int, dict[int, float]]:
    # New shapes allocate in the first round; the best round of each size is kept.
    batches = {size: trial.full_batches(size) for size in sizes}
    rates = dict.fromkeys(sizes, 0.0)
    for _ in range(rounds):
        for size, batch in batches.items():
            rate = _throughput(trial.run, batch, trial.plan.side_by_side, seconds)
            rates[size] = max(rates[size], rate)
    best = max(rates.values())
    return min(s for s, r in rates.items() if r >= best * (1 - LATENCY_TIE)), rates


def calibrate(
    model: Path,
    tokenizer: TextEncoder,
    cores: int,
    text: str,
    texts_in_flight: int,
    seconds: float = 0.06,
    rounds: int = 2,
    graph_optimization_level: str = "all",
) -> Calibration:
    """Measure every candidate plan on this machine, in alternating rounds so that a passing
    disturbance hits one round of each rather than one plan, and keep each plan's best; then
    the chosen plan's largest useful batch, up to ``texts_in_flight``."""
    trials = [
        _trial(model, tokenizer, plan, text, texts_in_flight, graph_optimization_level)
        for plan in candidate_plans(cores)
    ]
    best: dict[Plan, Measurement] = {}
    for _ in range(rounds):
        for trial in trials:
            rate = _throughput(trial.run, trial.batch, trial.plan.side_by_side, seconds)
            measured = Measurement(trial.plan, rate, trial.lone_seconds(runs=5))
            kept = best.get(trial.plan)
            best[trial.plan] = Measurement(
                trial.plan,
                max(rate, kept.texts_per_second if kept else 0.0),
                min(measured.lone_seconds, kept.lone_seconds if kept else float("inf")),
            )
    measurements = [best[trial.plan] for trial in trials]
    chosen = choose(measurements)
    trial = next(t for t in trials if t.plan == chosen.plan)
    size, rates = _best_batch_size(trial, batch_sizes(texts_in_flight), seconds, rounds)
    return Calibration(chosen, measurements, size, rates)
