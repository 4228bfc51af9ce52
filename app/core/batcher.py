"""Dynamic batching for one variant: a bounded queue in front of the runtime.

Requests put their texts in the queue and wait for their rows of logits. A free inference
thread (app/core/workers.py) takes what is queued, tokenizes it in one call (the tokenizer releases
the GIL, so the event loop goes on serving HTTP meanwhile), sorts the texts by length and cuts them
into batches bounded by ``max_batch_size`` and the ``max_batch_tokens`` budget (texts x longest
text, i.e. with padding). Those batches are planned, not yet run: every inference thread runs
planned batches before it takes more, so the batches of one take run side by side, and every
caller gets its own rows, in its own order, once its last batch is done. When the thread that
took them ran them one after another, a request waited for its whole take, 16 ms at p99 of 21
for L3 at 32 connections on 2 cores (BENCHMARKS.md, 2026-12-07).

Where to cut is decided by what a run costs on this machine (app/runtime/batching.py): on one
2-core VM here, batches of 32 real utterances ran at 137 texts/s and the same texts one by one at
236; on another, batches of 32 were 17% faster per text than one by one.

A lone request (one text, the only open connection, nothing queued or running) runs on the
event-loop thread itself, on the session its ``lone`` route picks (app/core/lone.py: one with more
threads, where that answers one text faster): handing one short run to a worker thread and back
costs two thread wake-ups, a fifth of the run on a VM. Under load, requests pile up while a batch
runs, so batches fill by themselves.

Backpressure: at most ``max_queue_texts`` texts wait; past that a request is refused at once
(``QueueFull``, 429). A request still waiting after ``queue_timeout`` gives up (``QueueTimeout``,
503); once its batch has started, it gets its answer.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tokenizers import Encoding

from app.core.cpu_meter import CpuMeter
from app.core.errors import QueueFull, QueueTimeout
from app.core.lone import LoneRoute
from app.core.prediction import Ranking, rank
from app.core.workers import InferenceWorkers
from app.runtime.batching import FILL_BATCHES, BatchCost, plan_batches
from app.runtime.classifier import OnnxClassifier

DRAIN_POLL_SECONDS = 0.01
# A take stops growing where running its texts together would make them less than this much
# faster than running them in batches of that size (by the calibrated cost): every text of a take
# waits for all of it. Support tickets of 70 tokens batched in takes of 16 ran no faster than one
# by one and doubled p99 (BENCHMARKS.md, 2026-12-06).
TAKE_GAIN = 0.03
# How quickly the typical text length follows the traffic, per take.
LENGTH_SMOOTHING = 0.2


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int = 32
    max_batch_tokens: int = 4096
    max_wait: float = 0.002
    max_queue_texts: int = 512
    queue_timeout: float = 2.0
    threads_per_batch: int = 1
    cost: BatchCost = FILL_BATCHES
    # The order a take's sub-batches run in. Shortest first answers the most requests soonest:
    # with every client waiting for its answer, the most throughput, and a long text waits for
    # its whole take. On one core, oldest first cut p99 at 32 connections by a fifth at the same
    # throughput; with a 2-thread session, one batch at a time, it cost 10-15% (BENCHMARKS.md).
    oldest_first: bool = False

    def cpu_clock(self) -> Callable[[], float]:
        """The clock that charges batches their CPU (see README, "Cost"): on one-thread sessions
        the running thread's, which is exact whatever runs beside it; on a multi-thread session
        (then one batch at a time) the process's, which counts onnxruntime's own threads."""
        return time.thread_time if self.threads_per_batch == 1 else time.process_time


@dataclass(frozen=True)
class BatchRun:
    """What one run of the model cost: reported to metrics once per batch."""

    texts: int
    padded_tokens: int
    tokens: int
    truncated: int
    seconds: float
    cpu_seconds: float


@dataclass(frozen=True)
class Scored:
    """One request's share: its rows of logits, ranked, and how long it waited and ran."""

    logits: np.ndarray
    ranking: Ranking
    token_counts: list[int]
    truncated: list[bool]
    queue_seconds: float
    inference_seconds: float


@dataclass(frozen=True)
class Row:
    """Where one text's answer is: its batch's logits and ranking, and its position in them."""

    logits: np.ndarray
    ranking: Ranking
    position: int


@dataclass(eq=False)
class Job:
    texts: Sequence[str]
    future: asyncio.Future[Scored]
    enqueued: float
    top_k: int = 1  # how many best labels each text's answer names
    encodings: Sequence[Encoding] = ()  # tokenized by the inference thread that takes the job
    started: bool = False
    abandoned: bool = False
    rows: dict[int, Row] = field(default_factory=dict)
    inference_seconds: float = 0.0

    def scored(self, started: float) -> Scored:
        rows = [self.rows[row] for row in range(len(self.texts))]
        if len(rows) == 1:  # most requests: views of the batch's arrays, not copies
            (row,) = rows
            logits = row.logits[row.position : row.position + 1]
            probabilities = row.ranking.probabilities[row.position : row.position + 1]
        else:
            logits = np.stack([row.logits[row.position] for row in rows])
            probabilities = np.stack([row.ranking.probabilities[row.position] for row in rows])
        return Scored(
            logits=logits,
            ranking=Ranking(
                probabilities,
                [row.ranking.top_ids[row.position] for row in rows],
                [row.ranking.top_scores[row.position] for row in rows],
            ),
            token_counts=[len(e.ids) for e in self.encodings],
            truncated=[bool(e.overflowing) for e in self.encodings],
            queue_seconds=started - self.enqueued,
            inference_seconds=self.inference_seconds,
        )


@dataclass(eq=False)
class Take:
    """Jobs taken from the queue together, tokenized in one call and cut into batches."""

    started: float
    rows_left: dict[Job, int]  # rows of each job not yet computed; answered jobs leave
    slots: list[tuple[Job, int]]  # (job, row) per text
    encodings: Sequence[Encoding]


def _infer(
    classifier: OnnxClassifier, encodings: list[Encoding], meter: CpuMeter
) -> tuple[np.ndarray, BatchRun]:
    """Pad and run one batch. Blocking: runs on an inference thread (or, for a lone text, on
    the event loop). The batch is counted before the run, not after: the run leaves the caches
    cold, and each numpy call after it costs several times its warm price (BENCHMARKS.md,
    2026-12-06)."""
    batch = classifier.tokenizer.pad(encodings)
    texts, padded_tokens = batch.input_ids.shape
    tokens = sum(len(encoding.ids) for encoding in encodings)
    truncated = sum(batch.truncated)
    logits, seconds, cpu_seconds = meter.measure(lambda: classifier.run(batch))
    run = BatchRun(texts, texts * padded_tokens, tokens, truncated, seconds, cpu_seconds)
    return logits.astype(np.float32, copy=False), run


class Batcher:
    """One variant's queue. ``submit`` and the queue's bookkeeping run on the event loop; the
    methods the inference threads call (``oldest``, ``take``, ``planned``, ``next_planned``,
    ``started``, ``finished``) run with ``workers.lock`` held, and ``prepare`` and
    ``run_batch`` on an inference thread."""

    def __init__(
        self,
        classifier: OnnxClassifier,
        workers: InferenceWorkers,
        policy: BatchPolicy,
        on_batch: Callable[[BatchRun], None] = lambda run: None,
        on_depth: Callable[[int], None] = lambda depth: None,
        on_running: Callable[[int], None] = lambda running: None,
        lone: LoneRoute[OnnxClassifier] | None = None,
    ) -> None:
        self.classifier = classifier
        self.workers = workers
        self.policy = policy
        self.cpu = CpuMeter(policy.cpu_clock())
        # The process's CPU: a lone text runs with nothing beside it, on a session that may
        # have helper threads.
        self.lone_cpu = CpuMeter(time.process_time)
        # Runs lone texts on the event-loop thread; None: every text goes through the queue.
        self.lone = lone
        self.on_batch = on_batch
        self.on_depth = on_depth
        self.on_running = on_running
        self.queued_texts = 0
        self.requests_in_flight = 0  # queued or running, not yet answered
        self.running = 0
        self.last_arrival = 0.0
        self.typical_tokens: float | None = None  # per text, over recent takes
        self._queue: deque[Job] = deque()
        self._planned: deque[tuple[Take, list[int]]] = deque()  # cut from takes, not yet run
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.workers.attach(self)

    async def stop(self) -> None:
        """Refuse what is still queued; call once the inference threads have stopped."""
        with self.workers.lock:
            jobs = [job for job in self._queue if not job.abandoned]
            for job in jobs:
                self._abandon(job)
            self._queue.clear()
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(QueueTimeout("the service is shutting down"))

    async def drain(self) -> None:
        """Answer what was accepted, then leave the inference threads: for a variant replaced or
        removed, which takes no new requests."""
        while self.requests_in_flight:
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        self.workers.detach(self)

    async def submit(self, texts: Sequence[str], top_k: int = 1) -> Scored:
        """The texts' logits, with probabilities and their ``top_k`` best labels."""
        if self._alone(texts):
            return self._run_inline(texts, top_k)
        count = len(texts)
        loop = asyncio.get_running_loop()
        job = Job(texts, loop.create_future(), time.perf_counter(), top_k)
        with self.workers.lock:
            if self.queued_texts + count > self.policy.max_queue_texts:
                raise QueueFull(
                    f"the queue is full ({self.queued_texts} of {self.policy.max_queue_texts} "
                    "texts waiting); retry later"
                )
            self._queue.append(job)
            self.requests_in_flight += 1
            self.last_arrival = job.enqueued
            self._change_depth(count)
            self.workers.lock.notify()
        timer = loop.call_later(self.policy.queue_timeout, self._expire, job)
        try:
            return await job.future
        except asyncio.CancelledError:  # the caller went away: do not compute for nobody
            with self.workers.lock:
                if not job.started and not job.abandoned:
                    self._abandon(job)
            raise
        finally:
            timer.cancel()

    def _alone(self, texts: Sequence[str]) -> bool:
        """One text from the only connection, and nothing queued or running in the process."""
        return (
            self.lone is not None
            and len(texts) == 1
            and self.requests_in_flight == 0
            and self.workers.idle
        )

    def _run_inline(self, texts: Sequence[str], top_k: int) -> Scored:
        """Run a lone text on the event-loop thread: no queue, no hand-off to a worker thread.
        Requests that arrive meanwhile wait in the socket buffers, then batch as usual."""
        assert self.lone is not None
        index = self.lone.pick(self.workers.crowded)
        session = self.lone.sessions[index]
        with self.workers.lock:
            self.workers.running += 1
        try:
            encodings = session.tokenize(list(texts))
            logits, run = _infer(session, encodings, self.lone_cpu)
        finally:
            with self.workers.lock:
                self.workers.running -= 1
        self.lone.record(index, run.seconds)
        # Metrics on the loop's next turn: after the reply has been sent, off the caller's clock.
        asyncio.get_running_loop().call_soon(self.on_batch, run)
        return Scored(
            logits=logits,
            ranking=rank(logits, top_k),
            token_counts=[run.tokens],
            truncated=[bool(run.truncated)],
            queue_seconds=0.0,
            inference_seconds=run.seconds,
        )

    def _expire(self, job: Job) -> None:
        with self.workers.lock:
            if job.started or job.abandoned:
                return
            self._abandon(job)
        job.future.set_exception(
            QueueTimeout(
                f"waited {self.policy.queue_timeout:g} s in the queue without being served"
            )
        )

    def _abandon(self, job: Job) -> None:
        """With the lock held: the job leaves the queue unserved (taken out lazily)."""
        job.abandoned = True
        self.requests_in_flight -= 1
        self._change_depth(-len(job.texts))

    def _change_depth(self, delta: int) -> None:
        self.queued_texts += delta
        self.on_depth(self.queued_texts)

    def oldest(self) -> float | None:
        """When the longest-waiting job was queued; None if none waits."""
        while self._queue and self._queue[0].abandoned:
            self._queue.popleft()
        return self._queue[0].enqueued if self._queue else None

    def useful_take(self) -> int:
        """The most texts worth one take. By the cost model, a batch of n texts of length L runs
        them n(o + pL) / (o + npL) times faster than one by one; that gain comes within
        ``TAKE_GAIN`` of its limit at n = o(1 - g) / (g p L). Short texts (11 tokens, o = 0.65 ms,
        p = 0.047 ms) allow 42, so CLINC150's takes are bounded by the batch size as before;
        texts of 70 tokens about 6."""
        cost, length = self.policy.cost, self.typical_tokens
        if cost.per_token <= 0 or length is None:
            return self.policy.max_batch_size
        useful = cost.overhead * (1 - TAKE_GAIN) / (TAKE_GAIN * cost.per_token * length)
        return max(1, min(self.policy.max_batch_size, math.ceil(useful)))

    def take(self, limit: int) -> list[Job]:
        """Queued jobs, oldest first, up to ``limit`` texts (at least one job)."""
        jobs: list[Job] = []
        texts = 0
        while self._queue:
            job = self._queue[0]
            if job.abandoned:
                self._queue.popleft()
                continue
            if jobs and texts + len(job.texts) > limit:
                break
            self._queue.popleft()
            job.started = True
            jobs.append(job)
            texts += len(job.texts)
            self._change_depth(-len(job.texts))
        return jobs

    def started(self) -> None:
        self.running += 1
        self.on_running(self.running)

    def finished(self) -> None:
        self.running -= 1
        self.on_running(self.running)

    def prepare(self, jobs: list[Job]) -> None:
        """Tokenize a take in one call and cut it into batches of similar length, which any
        free inference thread may then run. Blocking: runs on an inference thread."""
        assert self._loop is not None
        started = time.perf_counter()
        policy = self.policy
        try:
            encodings = self.classifier.tokenize([text for job in jobs for text in job.texts])
            first = 0
            for job in jobs:
                job.encodings = encodings[first : first + len(job.texts)]
                first += len(job.texts)
            slots = [(job, row) for job in jobs for row in range(len(job.texts))]
            lengths = [len(encoding.ids) for encoding in encodings]
            mean = sum(lengths) / len(lengths)
            previous = self.typical_tokens
            self.typical_tokens = (
                mean if previous is None else previous + LENGTH_SMOOTHING * (mean - previous)
            )
            batches = plan_batches(
                lengths, policy.max_batch_size, policy.max_batch_tokens, policy.cost
            )
            if policy.oldest_first:
                batches.sort(key=lambda batch: min(slots[i][0].enqueued for i in batch))
        except Exception as exc:
            self._loop.call_soon_threadsafe(self._deliver, [(job, exc) for job in jobs])
            return
        take = Take(started, {job: len(job.texts) for job in jobs}, slots, encodings)
        with self.workers.lock:
            self._planned.extend((take, batch) for batch in batches)
            self.workers.lock.notify_all()

    def planned(self) -> float | None:
        """When the take of the next planned batch started; None if no batch is planned. Called
        with the lock held."""
        return self._planned[0][0].started if self._planned else None

    def next_planned(self) -> tuple[Take, list[int]]:
        """The next planned batch, its take's first (see ``planned``). Called with the lock held."""
        return self._planned.popleft()

    def run_batch(self, take: Take, batch: list[int]) -> None:
        """Run one planned batch and hand the event loop every job it completes. Blocking: runs
        on an inference thread, maybe beside another batch of the same take."""
        assert self._loop is not None
        try:
            logits, run = _infer(self.classifier, [take.encodings[i] for i in batch], self.cpu)
            self.on_batch(run)
            ranking = rank(logits, max(take.slots[index][0].top_k for index in batch))
        except Exception as exc:
            self._fail(take, [take.slots[index][0] for index in batch], exc)
            return
        rows_done: dict[Job, int] = {}
        for position, index in enumerate(batch):
            job, row = take.slots[index]
            job.rows[row] = Row(logits, ranking, position)
            rows_done[job] = rows_done.get(job, 0) + 1
        answered = []
        with self.workers.lock:
            for job, rows in rows_done.items():
                if job not in take.rows_left:  # another of its batches failed
                    continue
                job.inference_seconds += run.seconds
                take.rows_left[job] -= rows
                if not take.rows_left[job]:
                    del take.rows_left[job]
                    answered.append(job)
        if answered:
            outcomes = [(job, job.scored(take.started)) for job in answered]
            self._loop.call_soon_threadsafe(self._deliver, outcomes)

    def _fail(self, take: Take, jobs: Sequence[Job], exc: Exception) -> None:
        """The jobs of a failed batch get the error, once each; the take's other jobs go on."""
        assert self._loop is not None
        with self.workers.lock:
            failed = [
                job for job in dict.fromkeys(jobs) if take.rows_left.pop(job, None) is not None
            ]
        if failed:
            self._loop.call_soon_threadsafe(self._deliver, [(job, exc) for job in failed])

    def _deliver(self, outcomes: list[tuple[Job, Scored | BaseException]]) -> None:
        with self.workers.lock:
            self.requests_in_flight -= len(outcomes)
        for job, outcome in outcomes:
            if job.future.done():  # its caller went away while it ran
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
