"""The inference threads: one per batch that may run at once, shared by every variant's batcher.

A thread that finishes a batch starts the next one itself, under the batchers' shared lock, with
no round trip through the event loop: a batch already planned from an earlier take, whichever
thread took it, or else a new take from the queue. When batches were planned on the loop, each
finished batch waited for the loop, busy with HTTP, to plan the next: five loop iterations in
which the core sat idle, 28% of the time with one-text batches on a 2-core VM (BENCHMARKS.md).
The loop now only queues requests and, once a batch is done, resolves its callers' futures.

A free thread takes the variant whose oldest request has waited longest. It waits for company
only while some may come: while requests keep arriving (one in the last quarter of
``max_wait``), for at most ``max_wait``, and never once every open connection already has its
request queued or running (HTTP/1.1 sends one request per connection at a time).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.core.batcher import Batcher


class InferenceWorkers:
    def __init__(
        self,
        count: int,
        connections: Callable[[], int] | None = None,
        elsewhere: Callable[[], int] | None = None,
    ) -> None:
        self.count = count
        # Open HTTP connections, set by the server that runs the app; None: unknown.
        self.connections = connections
        # Those of the other processes beside this one (app/siblings.py); None: there are none.
        self.elsewhere = elsewhere
        self.lock = threading.Condition()
        self.batchers: list[Batcher] = []
        self.running = 0  # batches running, inline ones included
        self._threads: list[threading.Thread] = []
        self._stopping = False

    @property
    def idle(self) -> bool:
        """No batch running and at most one connection open: nothing else can be asked of the
        process while a lone request runs on the event-loop thread."""
        return self.running == 0 and self.connections is not None and self.connections() <= 1

    @property
    def crowded(self) -> bool:
        """Other processes have connections open: their cores are not free for this one's."""
        return self.elsewhere is not None and self.elsewhere() > 0

    def attach(self, batcher: Batcher) -> None:
        with self.lock:
            self.batchers.append(batcher)

    def detach(self, batcher: Batcher) -> None:
        with self.lock:
            self.batchers.remove(batcher)

    def start(self) -> None:
        for index in range(self.count):
            thread = threading.Thread(target=self._work, name=f"brum-infer-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    async def stop(self) -> None:
        """Finish the batches running and those planned (their requests were taken); take no
        more from the queues."""
        with self.lock:
            self._stopping = True
            self.lock.notify_all()
        for thread in self._threads:
            await asyncio.to_thread(thread.join)
        self._threads.clear()

    def _work(self) -> None:
        while True:
            with self.lock:
                picked = self._next_work()
            if picked is None:
                return
            batcher, work = picked
            try:
                work()
            finally:
                with self.lock:
                    self.running -= 1
                    batcher.finished()

    def _next_work(self) -> tuple[Batcher, Callable[[], None]] | None:
        """A planned batch if one waits, since its requests were taken first; else a take of
        queued texts, to tokenize and plan; None once stopping with no batch planned. Called
        with the lock held."""
        while True:
            batcher = self._first(lambda b: b.planned())
            if batcher is not None:
                take, batch = batcher.next_planned()
                work = partial(batcher.run_batch, take, batch)
            elif self._stopping:
                return None
            else:
                batcher = self._first(lambda b: b.oldest())
                if batcher is None:
                    self.lock.wait()
                    continue
                self._gather(batcher)
                jobs = batcher.take(self._share(batcher))
                if not jobs:
                    continue
                work = partial(batcher.prepare, jobs)
            self.running += 1
            batcher.started()
            return batcher, work

    def _first(self, when: Callable[[Batcher], float | None]) -> Batcher | None:
        """The batcher with the earliest ``when``, of those that have one."""
        heads = [(when(b), b) for b in self.batchers]
        timed = [(at, b) for at, b in heads if at is not None]
        return min(timed, key=lambda head: head[0])[1] if timed else None

    def _expecting_more(self) -> bool:
        in_flight = sum(b.requests_in_flight for b in self.batchers)
        return self.connections is None or self.connections() > in_flight

    def _gather(self, batcher: Batcher) -> None:
        policy = batcher.policy
        glance = policy.max_wait / 4
        deadline = time.perf_counter() + policy.max_wait
        while batcher.queued_texts < batcher.useful_take() and self._expecting_more():
            now = time.perf_counter()
            if now >= deadline or now - batcher.last_arrival > glance:
                return
            self.lock.wait(min(deadline - now, glance))

    def _share(self, batcher: Batcher) -> int:
        """Texts for the take about to start: what is waiting, split evenly among the free
        threads (this one included), so that 32 waiting requests become two takes of 16 on two
        cores, not one of 32 while the other core idles; at most what is worth one take (see
        ``Batcher.useful_take``)."""
        free = max(1, self.count - self.running)
        return max(1, min(batcher.useful_take(), math.ceil(batcher.queued_texts / free)))
