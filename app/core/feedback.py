"""Online accuracy: a served prediction is judged once per text, by any replica, when its true
label arrives.

Why it is built this way: behind a load balancer the feedback call rarely reaches the replica
that served the prediction, and a replica may restart in between. So nothing the judgment needs
may live in one process:

- With a shared key (``BRUM_FEEDBACK_KEY``, a Kubernetes Secret), every answer carries a
  *feedback token*: the request id, the variant, the served labels and the time, signed with
  HMAC-SHA256. Any replica verifies it with no lookup; the prediction path pays one HMAC (a few
  microseconds), not a round trip.
- With a shared store (``BRUM_REDIS_URL``), a judgment is recorded there with ``SET NX`` so the
  same text is refused on every replica the second time; and each prediction is also written
  there under its request id, behind the answer (many in one round trip), for clients that kept
  only the id.
- With neither, one replica remembers its recent predictions in memory, as a single process.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from app.core.errors import BrumError, ErrorKind

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("brum.feedback")


class FeedbackError(BrumError):
    kind = ErrorKind.INVALID


class UnknownRequest(FeedbackError):
    kind = ErrorKind.NOT_FOUND


class AlreadyJudged(FeedbackError):
    kind = ErrorKind.CONFLICT


class ExpiredToken(FeedbackError):
    kind = ErrorKind.EXPIRED


class StoreUnavailable(FeedbackError):
    kind = ErrorKind.UNAVAILABLE
    retry_after = 1


@dataclass(frozen=True)
class Served:
    """What a prediction answered: all a judgment needs."""

    request_id: str
    variant: str
    labels: list[str]  # one per text
    issued: int  # unix seconds


@dataclass(frozen=True)
class Judgement:
    request_id: str
    index: int
    variant: str
    predicted: str
    label: str

    @property
    def correct(self) -> bool:
        return self.predicted == self.label


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _dump(served: Served) -> bytes:
    """A JSON array, not an object: on every answer, so short and quick (no asdict copy)."""
    return json.dumps(
        [served.request_id, served.variant, served.labels, served.issued], separators=(",", ":")
    ).encode()


def _load(data: bytes) -> Served:
    request_id, variant, labels, issued = json.loads(data)
    if not (isinstance(labels, list) and isinstance(issued, int)):
        raise ValueError("not a served prediction")
    return Served(str(request_id), str(variant), [str(x) for x in labels], issued)


class TokenSigner:
    """``<payload>.<signature>``, both base64url: readable by the client, forged by no one
    without the key."""

    def __init__(self, key: bytes, ttl_seconds: int) -> None:
        self._key = key
        self.ttl_seconds = ttl_seconds

    def _signature(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def sign(self, served: Served) -> str:
        payload = _b64(_dump(served))
        return f"{payload}.{self._signature(payload)}"

    def open(self, token: str, now: float | None = None) -> Served:
        payload, _, signature = token.partition(".")
        if not hmac.compare_digest(signature.encode(), self._signature(payload).encode()):
            raise FeedbackError("invalid feedback token: not signed by this service's key")
        try:
            served = _load(_unb64(payload))
        except (ValueError, KeyError, TypeError) as exc:  # signed, so only a key shared elsewhere
            raise FeedbackError(f"invalid feedback token: {exc}") from None
        age = (time.time() if now is None else now) - served.issued
        if age > self.ttl_seconds:
            raise ExpiredToken(
                f"feedback token of request {served.request_id!r} expired: issued {age:.0f} s "
                f"ago, judgments are accepted for {self.ttl_seconds} s"
            )
        return served


class Ledger(Protocol):
    """Where predictions are found by request id, and judgments are counted once."""

    def remember(self, served: Served) -> None: ...

    async def recall(self, request_id: str) -> Served | None: ...

    async def claim(self, request_id: str, index: int) -> bool:
        """Record the judgment of one text; False if it was judged before."""
        ...

    async def close(self) -> None: ...


class MemoryLedger:
    """One process's memory: the last ``capacity`` predictions and their judgments."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._served: OrderedDict[str, Served] = OrderedDict()
        self._judged: OrderedDict[str, set[int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._served)

    def remember(self, served: Served) -> None:
        self._served[served.request_id] = served
        self._served.move_to_end(served.request_id)
        while len(self._served) > self.capacity:
            self._served.popitem(last=False)

    async def recall(self, request_id: str) -> Served | None:
        return self._served.get(request_id)

    async def claim(self, request_id: str, index: int) -> bool:
        judged = self._judged.setdefault(request_id, set())
        self._judged.move_to_end(request_id)
        if index in judged:
            return False
        judged.add(index)
        while len(self._judged) > self.capacity:
            self._judged.popitem(last=False)
        return True

    async def close(self) -> None:
        return None


SERVED_KEY = "brum:served:"
JUDGED_KEY = "brum:judged:"
# Predictions waiting to be written past this many (the store is down or slow) are dropped,
# oldest first, and counted: the prediction path never waits for the store.
PENDING_LIMIT = 20_000
# Predictions are written at most this often, all that are pending in one call: written as
# each came, at 450 req/s, the store's round trips took 17% of one replica's throughput here.
FLUSH_SECONDS = 0.01
# A feedback call can overtake the write of its prediction (it is written after the answer):
# look again after the writer's next flushes before answering 404.
RECALL_RETRIES = (0.02, 0.05, 0.2)
# One command for a whole batch: a pipeline of one SET per prediction cost 27 us of the event
# loop's CPU per prediction here (redis-py packs each command in Python); one script call with
# every key and value, about 10.
WRITE_BATCH = """
for i, key in ipairs(KEYS) do redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1]) end
return #KEYS
"""


class RedisLedger:
    """A Redis (or Valkey) shared by the replicas. Keys expire with the feedback window."""

    def __init__(
        self, client: Redis, ttl_seconds: int, on_dropped: Callable[[int], None] = lambda n: None
    ) -> None:
        self._client = client
        self.ttl_seconds = ttl_seconds
        self._on_dropped = on_dropped
        self._pending: list[Served] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._failing = False
        self._writer: asyncio.Task[None] | None = None
        self._write_batch = client.register_script(WRITE_BATCH)

    def remember(self, served: Served) -> None:
        self._pending.append(served)
        if len(self._pending) > PENDING_LIMIT:
            dropped = len(self._pending) - PENDING_LIMIT
            del self._pending[:dropped]
            self._on_dropped(dropped)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())
        self._wake.set()

    async def _write(self) -> None:
        """Write what is pending, one pipeline per round trip; while the store is down, keep it
        (bounded by PENDING_LIMIT) and retry."""
        while self._pending or not self._closing:
            if not self._pending:
                await self._wake.wait()
                self._wake.clear()
                if not self._closing:
                    await asyncio.sleep(FLUSH_SECONDS)  # let a batch gather
                continue
            batch, self._pending = self._pending, []
            try:
                await self._flush(batch)
            except Exception as exc:
                if self._closing:
                    logger.warning("feedback store: %d not written: %s", len(batch), exc)
                    self._on_dropped(len(batch))
                    return
                if not self._failing:  # once per outage, not once per retry
                    logger.warning("feedback store write failed, retrying every 0.5 s: %s", exc)
                self._failing = True
                self._pending[:0] = batch
                await asyncio.sleep(0.5)
                continue
            if self._failing:
                logger.info("feedback store writes again")
                self._failing = False

    async def _flush(self, batch: list[Served]) -> None:
        keys = [SERVED_KEY + served.request_id for served in batch]
        await self._write_batch(keys=keys, args=[self.ttl_seconds, *map(_dump, batch)])

    async def recall(self, request_id: str) -> Served | None:
        for delay in (0.0, *RECALL_RETRIES):
            await asyncio.sleep(delay)
            try:
                data = await self._client.get(SERVED_KEY + request_id)
            except Exception as exc:
                raise StoreUnavailable(f"the shared feedback store is unavailable: {exc}") from None
            if data is not None:
                return _load(data)
        return None

    async def claim(self, request_id: str, index: int) -> bool:
        try:
            return bool(
                await self._client.set(
                    f"{JUDGED_KEY}{request_id}:{index}", b"1", nx=True, ex=self.ttl_seconds
                )
            )
        except Exception as exc:
            raise StoreUnavailable(f"the shared feedback store is unavailable: {exc}") from None

    async def close(self) -> None:
        """Write what is still pending (one try), then stop the writer."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
