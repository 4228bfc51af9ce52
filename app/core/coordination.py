"""What the replicas share besides feedback: the admin API's experiment override, and the
signal that the model repository changed.

Every replica polls these (``BRUM_SYNC_SECONDS``) rather than subscribing: a poll is one small
GET, survives a store restart with nothing to re-establish, and bounds how stale a replica can
be. Without a shared store (one replica), both live in this process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from app.core.errors import BrumError, ErrorKind
from app.core.experiment import Experiment

if TYPE_CHECKING:
    from redis.asyncio import Redis

OVERRIDE_KEY = "brum:experiment"
RESCAN_KEY = "brum:repository:rescans"
# Compare and delete in one step: a replica must not drop an override another just wrote.
DROP_IF_UNCHANGED = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class CoordinationUnavailable(BrumError):
    kind = ErrorKind.UNAVAILABLE
    retry_after = 1


@dataclass(frozen=True)
class Override:
    """An experiment set through the admin API (None: no experiment), over the declared file
    whose content had ``declared`` as its hash: a newer file supersedes it."""

    experiment: Experiment | None
    declared: str

    def dumps(self) -> str:
        experiment = self.experiment.model_dump(mode="json") if self.experiment else None
        return json.dumps({"experiment": experiment, "declared": self.declared})

    @classmethod
    def loads(cls, data: str | bytes) -> Override:
        fields = json.loads(data)
        experiment = fields["experiment"]
        return cls(
            Experiment.model_validate(experiment) if experiment is not None else None,
            fields["declared"],
        )


class Coordination(Protocol):
    async def override(self) -> Override | None: ...

    async def set_override(self, override: Override) -> None: ...

    async def drop_override(self, override: Override) -> None:
        """Remove ``override`` if it is still the one stored (another may have replaced it)."""
        ...

    async def rescans(self) -> int:
        """How many rescans were asked for, by any replica, since the store began."""
        ...

    async def ask_rescan(self) -> int: ...


class LocalCoordination:
    """One replica: the override in memory, and a rescan is only ever this replica's own."""

    def __init__(self) -> None:
        self._override: Override | None = None
        self._rescans = 0

    async def override(self) -> Override | None:
        return self._override

    async def set_override(self, override: Override) -> None:
        self._override = override

    async def drop_override(self, override: Override) -> None:
        if self._override == override:
            self._override = None

    async def rescans(self) -> int:
        return self._rescans

    async def ask_rescan(self) -> int:
        self._rescans += 1
        return self._rescans


class RedisCoordination:
    def __init__(self, client: Redis) -> None:
        self._client = client

    async def _call(self, method: str, *args):
        try:
            return await getattr(self._client, method)(*args)
        except Exception as exc:
            raise CoordinationUnavailable(f"the shared store is unavailable: {exc}") from None

    async def override(self) -> Override | None:
        data = await self._call("get", OVERRIDE_KEY)
        return Override.loads(data) if data is not None else None

    async def set_override(self, override: Override) -> None:
        await self._call("set", OVERRIDE_KEY, override.dumps())

    async def drop_override(self, override: Override) -> None:
        await self._call("eval", DROP_IF_UNCHANGED, 1, OVERRIDE_KEY, override.dumps())

    async def rescans(self) -> int:
        return int(await self._call("get", RESCAN_KEY) or 0)

    async def ask_rescan(self) -> int:
        return int(await self._call("incr", RESCAN_KEY))
