from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.settings import SHIPPED_REPOSITORY
from models.data import TextClassificationData
from models.sources.clinc150 import load_clinc150
from tests.server import Server, run_server


@pytest.fixture(scope="session")
def clinc() -> TextClassificationData:
    return load_clinc150()


@pytest.fixture(scope="session")
def shipped_repository() -> Path:
    return SHIPPED_REPOSITORY


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real service on the shipped repository, shared by the read-mostly integration tests."""
    env = {"BRUM_MAX_TEXTS_PER_REQUEST": "16", "BRUM_CALIBRATE": "true"}
    with run_server(tmp_path_factory.mktemp("server"), env) as s:
        yield s
