"""A Hugging Face hub dataset, where a hub is reachable (or in the local ``datasets`` cache)."""

from __future__ import annotations

import socket
import urllib.request
from urllib.parse import urlsplit

import datasets
from huggingface_hub import constants

from models.data import DatasetError, TextClassificationData
from models.recipe import DatasetSpec
from models.sources.tables import assemble, named_splits


def load(spec: DatasetSpec) -> TextClassificationData:
    assert spec.hub_id is not None
    where = f"hub dataset {spec.hub_id}" + (f" ({spec.config})" if spec.config else "")
    unreachable = None if constants.HF_HUB_OFFLINE else why_unreachable(constants.ENDPOINT)
    if unreachable:
        # huggingface_hub would retry for 24 s before saying the same.
        raise DatasetError(
            f"{where}: the hub at {constants.ENDPOINT} cannot be reached from here "
            f"({unreachable}); give the dataset's files or a save_to_disk folder instead, or "
            "set HF_HUB_OFFLINE=1 to read it from the local datasets cache"
        )
    try:
        found = datasets.load_dataset(spec.hub_id, spec.config)
    except Exception as exc:  # offline, unknown id, bad configuration: say which
        raise DatasetError(f"{where}: cannot be loaded: {exc}") from exc
    name = spec.name or spec.hub_id.rsplit("/", 1)[-1]
    return assemble(name, named_splits(found, where), spec)


def why_unreachable(endpoint: str, timeout: float = 3.0) -> str | None:
    """Why a TCP connection to the hub fails, or None when it opens (or a proxy is in the way,
    which a direct connection cannot judge)."""
    parts = urlsplit(endpoint)
    if parts.hostname is None or urllib.request.getproxies():
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return str(exc) or type(exc).__name__
    return None
