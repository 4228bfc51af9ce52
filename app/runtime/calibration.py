"""Choose how to spend the cores on the machine the service starts on, by measuring.

Two ways to run a model on C cores bracket the choice: C batches side by side, each on a
one-thread session, or one batch at a time on a C-thread session. Which wins depends on the
hardware, not only on the core count: on one 2-core machine side by side was 20% faster, on
another of the same kind one two-thread batch was 50% faster (BENCHMARKS.md). So at start-up the
service runs the model both ways for a fraction of a second, and keeps the plan that classifies
the most texts per second with the same number of texts in flight as a full batch; a plan within
``LATENCY_TIE`` of the best on throughput wins if it answers a lone text faster.
"""

from __future__ import annotations

import statistics
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
    """Texts per second with ``streams`` threads each running ``batch`` over and over."""
    done = [0] * streams
    deadline = time.perf_counter() + seconds

    def stream(index: int) -> None:
        while time.perf_counter() < deadline:
            run(batch)
            done[index] += 1

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) * len(batch.input_ids) / (time.perf_counter() - started)


def measure(
    model: Path,
    tokenizer: TextEncoder,
    plan: Plan,
    text: str,
    texts_in_flight: int,
    seconds: float,
    graph_optimization_level: str = "all",
) -> Measurement:
    session = create_session(model, SessionConfig(plan.threads, 1, graph_optimization_level))
    run = OnnxClassifier(tokenizer, session, tuple(i.name for i in session.get_inputs())).run
    batch_size = max(1, texts_in_flight // plan.side_by_side)
    batch = tokenizer.encode_batch([text] * batch_size)
    lone = tokenizer.encode_batch([text])
    run(batch)  # first runs allocate: keep them out of the figures
    run(lone)
    lone_runs = []
    for _ in range(15):
        started = time.perf_counter()
        run(lone)
        lone_runs.append(time.perf_counter() - started)
    rate = _throughput(run, batch, plan.side_by_side, seconds)
    return Measurement(plan, rate, statistics.median(lone_runs))


def calibrate(
    model: Path,
    tokenizer: TextEncoder,
    cores: int,
    text: str,
    texts_in_flight: int,
    seconds: float = 0.3,
    graph_optimization_level: str = "all",
) -> tuple[Measurement, list[Measurement]]:
    """Measure every candidate plan on this machine; the chosen one and all the figures."""
    measurements = [
        measure(model, tokenizer, plan, text, texts_in_flight, seconds, graph_optimization_level)
        for plan in candidate_plans(cores)
    ]
    return choose(measurements), measurements
