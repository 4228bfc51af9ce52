"""The shared store of the replicas: a Redis (or Valkey) server, reached by URL."""

from __future__ import annotations

from pydantic import SecretStr
from redis.asyncio import Redis

# A store that does not answer must not hold a request (feedback, admin) for long, nor the sync.
TIMEOUT_SECONDS = 2.0


def connect(url: SecretStr) -> Redis:
    """A client for ``redis://[:password@]host:port/db`` (``rediss://`` for TLS); connects on
    first use, so start-up does not wait for the store."""
    return Redis.from_url(
        url.get_secret_value(),
        socket_timeout=TIMEOUT_SECONDS,
        socket_connect_timeout=TIMEOUT_SECONDS,
        health_check_interval=30,
    )
