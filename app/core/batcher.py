"""Dynamic batching for one variant: a bounded queue in front of the runtime.

Requests put their tokenized texts in the queue and wait for their rows of logits. One task per
variant takes what is queued, sorts the texts by length, cuts them into batches bounded by
``max_batch_size`` and the ``max_batch_tokens`` budget (texts x longest text, i.e. with padding),
runs each batch off the event loop and hands every caller its own rows, in its own order.

It never waits for company it has no reason to expect: a lone request runs at once, and while
nothing else runs in the process and no other connection is open, it runs on the event-loop
thread itself, on the
``inline`` classifier (a session on every core, where that answers one text faster): handing one
short run to a worker thread and back costs two thread wake-ups, a fifth of the run on a VM.
Only while requests keep arriving does it wait for more, up to ``max_wait``. Under load,
requests pile up while a batch runs, so batches fill by themselves; with several batches allowed
side by side, what is waiting is shared evenly among the free slots, so that 32 requests become
two batches of 16 on two cores, not one of 32 on one core while the other idles.

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
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
from tokenizers import Encoding

from app.core.errors import QueueFull, QueueTimeout
from app.runtime.classifier import OnnxClassifier


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int = 32
    max_batch_tokens: int = 4096
    max_wait: float = 0.002
    max_queue_texts: int = 512
    queue_timeout: float = 2.0
    # Batches in flight at once, each on its own executor thread (with one-thread sessions).
    max_concurrent_batches: int = 1
    threads_per_batch: int = 1

    def cpu_clock(self) -> Callable[[], float]:
        """The clock that charges one batch its CPU (see README, "Cost"): on one-thread sessions
        the running thread's, which is exact whatever runs beside it; on a multi-thread session
        (then one batch at a time) the process's, which counts onnxruntime's own threads."""
        return time.thread_time if self.threads_per_batch == 1 else time.process_time


class Occupancy:
    """What else the process is doing: batches running across every variant, and the HTTP
    connections open. A request runs inline only with no batch running and a single connection:
    while the loop runs the model it reads no socket, so concurrent requests would stay hidden
    behind each inline run and every one of them would run inline in turn, never batched.
    ``connections`` is set by the server that runs the app; unknown (None), nothing runs inline."""

    def __init__(self, connections: Callable[[], int] | None = None) -> None:
        self.running = 0
        self.connections = connections

    @property
    def idle(self) -> bool:
        return self.running == 0 and self.connections is not None and self.connections() <= 1


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
    """One request's share: its rows of logits and how long it waited and ran."""

    logits: np.ndarray
    token_counts: list[int]
    truncated: list[bool]
    queue_seconds: float
    inference_seconds: float


@dataclass(eq=False)
class _Job:
    encodings: Sequence[Encoding]
    future: asyncio.Future[Scored]
    enqueued: float
    started: bool = False
    abandoned: bool = False
    rows: dict[int, np.ndarray] = field(default_factory=dict)
    inference_seconds: float = 0.0


def _infer(
    classifier: OnnxClassifier, encodings: list[Encoding], cpu_clock: Callable[[], float]
) -> tuple[np.ndarray, BatchRun]:
    """Pad and run one batch. Blocking: runs on the inference executor."""
    batch = classifier.tokenizer.pad(encodings)
    cpu, started = cpu_clock(), time.perf_counter()
    logits = classifier.run(batch)
    seconds = time.perf_counter() - started
    run = BatchRun(
        texts=len(encodings),
        padded_tokens=int(batch.input_ids.size),
        tokens=int(batch.token_counts.sum()),
        truncated=sum(batch.truncated),
        seconds=seconds,
        cpu_seconds=cpu_clock() - cpu,
    )
    return logits.astype(np.float32, copy=False), run


def plan_batches(lengths: Sequence[int], max_size: int, max_tokens: int) -> list[list[int]]:
    """Indices sorted by length, cut so each batch holds <= max_size texts and, padded to its
    longest, <= max_tokens tokens (a single longer text still gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[index]  # sorted: the newcomer is the longest so far
        if current and (len(current) >= max_size or (len(current) + 1) * longest > max_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


class Batcher:
    def __init__(
        self,
        classifier: OnnxClassifier,
        executor: Executor,
        policy: BatchPolicy,
        on_batch: Callable[[BatchRun], None] = lambda run: None,
        on_depth: Callable[[int], None] = lambda depth: None,
        on_running: Callable[[int], None] = lambda running: None,
        occupancy: Occupancy | None = None,
        inline: OnnxClassifier | None = None,
    ) -> None:
        self.classifier = classifier
        self.executor = executor
        self.policy = policy
        self.occupancy = occupancy or Occupancy()
        # Runs lone texts on the event-loop thread; None: every text goes through the queue.
        self.inline = inline
        self.on_batch = on_batch
        self.on_depth = on_depth
        self.on_running = on_running
        self.queued_texts = 0
        self._queue: deque[_Job] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(policy.max_concurrent_batches)
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._running, return_exceptions=True)
        for job in self._queue:
            if not job.future.done():
                job.future.set_exception(QueueTimeout("the service is shutting down"))
        self._queue.clear()

    async def submit(self, encodings: Sequence[Encoding]) -> Scored:
        if self._alone(encodings):
            return self._run_inline(encodings)
        count = len(encodings)
        if self.queued_texts + count > self.policy.max_queue_texts:
            raise QueueFull(
                f"the queue is full ({self.queued_texts} of {self.policy.max_queue_texts} "
                "texts waiting); retry later"
            )
        loop = asyncio.get_running_loop()
        job = _Job(encodings, loop.create_future(), time.perf_counter())
        self._queue.append(job)
        self._change_depth(count)
        self._arrived.set()
        timer = loop.call_later(self.policy.queue_timeout, self._expire, job)
        try:
            return await job.future
        except asyncio.CancelledError:  # the caller went away: do not compute for nobody
            if not job.started and not job.abandoned:
                self._abandon(job)
            raise
        finally:
            timer.cancel()

    def _alone(self, encodings: Sequence[Encoding]) -> bool:
        """One text from the only connection, and nothing queued or running in the process."""
        return (
            self.inline is not None
            and len(encodings) == 1
            and not self._queue
            and not self._running
            and self.occupancy.idle
        )

    def _run_inline(self, encodings: Sequence[Encoding]) -> Scored:
        """Run a lone text on the event-loop thread: no queue, no hand-off to a worker thread.
        Requests that arrive meanwhile wait in the socket buffers, then batch as usual."""
        assert self.inline is not None
        self.occupancy.running += 1
        try:
            # The process's CPU: nothing else runs, and a session on every core has helpers.
            logits, run = _infer(self.inline, list(encodings), time.process_time)
        finally:
            self.occupancy.running -= 1
        self.on_batch(run)
        return Scored(
            logits=logits,
            token_counts=[run.tokens],
            truncated=[bool(run.truncated)],
            queue_seconds=0.0,
            inference_seconds=run.seconds,
        )

    def _expire(self, job: _Job) -> None:
        if job.started or job.future.done():
            return
        self._abandon(job)
        job.future.set_exception(
            QueueTimeout(
                f"waited {self.policy.queue_timeout:g} s in the queue without being served"
            )
        )

    def _abandon(self, job: _Job) -> None:
        job.abandoned = True
        self._change_depth(-len(job.encodings))

    def _change_depth(self, delta: int) -> None:
        self.queued_texts += delta
        self.on_depth(self.queued_texts)

    async def _serve(self) -> None:
        while True:
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            await self._slots.acquire()
            await self._gather()
            jobs = self._take(self._share())
            if not jobs:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run(jobs))
            self._running.add(task)
            self.on_running(len(self._running))
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self.on_running(len(self._running))
        self._slots.release()

    async def _gather(self) -> None:
        """Let requests that are arriving right now join, for at most ``max_wait``."""
        deadline = time.perf_counter() + self.policy.max_wait
        seen = self.queued_texts
        await asyncio.sleep(0)
        while self.queued_texts < self.policy.max_batch_size and self.queued_texts > seen:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            seen = self.queued_texts
            await asyncio.sleep(min(remaining, self.policy.max_wait / 4))

    def _share(self) -> int:
        """Texts for the batch about to start: what is waiting, split evenly among the free
        slots (this one included), at most a full batch."""
        free = self.policy.max_concurrent_batches - len(self._running)
        return max(1, min(self.policy.max_batch_size, math.ceil(self.queued_texts / free)))

    def _take(self, limit: int) -> list[_Job]:
        """Queued jobs, oldest first, up to ``limit`` texts (at least one job)."""
        jobs: list[_Job] = []
        texts = 0
        while self._queue:
            job = self._queue[0]
            if job.abandoned or job.future.done():
                self._queue.popleft()
                continue
            if jobs and texts + len(job.encodings) > limit:
                break
            self._queue.popleft()
            job.started = True
            jobs.append(job)
            texts += len(job.encodings)
            self._change_depth(-len(job.encodings))
        return jobs

    async def _run(self, jobs: list[_Job]) -> None:
        started = time.perf_counter()
        slots = [(job, row) for job in jobs for row in range(len(job.encodings))]
        lengths = [len(job.encodings[row].ids) for job, row in slots]
        loop = asyncio.get_running_loop()
        clock = self.policy.cpu_clock()
        self.occupancy.running += 1
        try:
            for batch in plan_batches(
                lengths, self.policy.max_batch_size, self.policy.max_batch_tokens
            ):
                encodings = [slots[i][0].encodings[slots[i][1]] for i in batch]
                logits, run = await loop.run_in_executor(
                    self.executor, _infer, self.classifier, encodings, clock
                )
                self.on_batch(run)
                for position, index in enumerate(batch):
                    job, row = slots[index]
                    job.rows[row] = logits[position]
                for job in {slots[index][0] for index in batch}:
                    job.inference_seconds += run.seconds
        except Exception as exc:
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        finally:
            self.occupancy.running -= 1
        for job in jobs:
            if job.future.done():
                continue
            job.future.set_result(
                Scored(
                    logits=np.stack([job.rows[row] for row in range(len(job.encodings))]),
                    token_counts=[len(e.ids) for e in job.encodings],
                    truncated=[bool(e.overflowing) for e in job.encodings],
                    queue_seconds=started - job.enqueued,
                    inference_seconds=job.inference_seconds,
                )
            )
