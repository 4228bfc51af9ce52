"""The variant card (``variant.json``): what a variant is, where it came from, how it measured.

The card is the contract between the offline pipeline, which writes it, and the service, which reads
it. It needs nothing but pydantic to load.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CARD_FILE = "variant.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
SCHEMA_VERSION = 1


# A variant's or an experiment's name: one path segment of /v1/models/{name}, and a Kubernetes
# label value (at most 63 characters).
NAME_LENGTH = 63
NAME_PATTERN = rf"^[a-z0-9][a-z0-9._-]{{0,{NAME_LENGTH - 1}}}$"


class CardError(ValueError):
    """A variant folder or its card is invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseCheckpoint(_Strict):
    reference: str
    source: str
    revision: str | None = None
    weights_file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class LineageStep(_Strict):
    step: str
    params: dict[str, Any] = Field(default_factory=dict)


class FileEntry(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)


class LatencyStats(_Strict):
    p50_ms: float
    p95_ms: float
    p99_ms: float


class OosThreshold(_Strict):
    """Answer ``label`` when the top probability is under ``threshold`` (tuned on ``split``)."""

    label: str
    threshold: float = Field(ge=0, le=1)
    objective: str
    oos_share: float | None = Field(
        None, gt=0, lt=1, description="expected out-of-scope share of traffic the objective assumed"
    )
    split: str


class OfflineMetrics(_Strict):
    dataset: str
    split: str
    examples: int
    split_sizes: dict[str, int] | None = Field(None, description="examples in each split")
    split_origins: dict[str, str] | None = Field(
        None, description="how each split was made: given, or carved from which, how, seed"
    )
    data_notes: list[str] | None = Field(
        None,
        description="what reading the data warned about: texts under several labels, labels "
        "written several ways, test texts that training also has",
    )
    # Answers served one text at a time. Under dynamic int8 an answer can change with the other
    # texts in its batch; the batched figures say by how much.
    accuracy: float
    accuracy_without_threshold: float | None = None
    macro_f1: float | None = Field(
        None, description="F1 averaged over labels, each alike: what accuracy hides on rare labels"
    )
    in_scope_accuracy: float | None = None
    oos_recall: float | None = None
    accuracy_batched: float | None = Field(
        None, description="accuracy in length-sorted batches of batched_size texts"
    )
    batched_size: int | None = None
    answers_changed_by_batching: float | None = Field(
        None, ge=0, le=1, description="share of answers that differ between alone and batched"
    )
    size_bytes: int
    parameters: int
    threads: int
    latency_batch1: LatencyStats
    throughput_batch32_per_second: float
    # Filled in by the benchmark command, which measures every variant side by side.
    all_threads: int | None = None
    latency_batch1_all_threads: LatencyStats | None = None
    throughput_batch32_all_threads_per_second: float | None = None
    peak_rss_bytes: int | None = None
    benchmarked_at: datetime | None = None


class VariantCard(_Strict):
    schema_version: int = SCHEMA_VERSION
    name: str = Field(pattern=NAME_PATTERN)
    task: str = "text-classification"
    description: str = ""
    labels: list[str] = Field(min_length=2)
    max_length: int = Field(gt=0)
    base: BaseCheckpoint
    lineage: list[LineageStep]
    files: dict[str, FileEntry]
    oos_threshold: OosThreshold | None = None
    metrics: OfflineMetrics | None = None
    created_at: datetime
    brum_version: str

    @model_validator(mode="after")
    def _labels_unique(self) -> VariantCard:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        if MODEL_FILE not in self.files or TOKENIZER_FILE not in self.files:
            raise ValueError(f"files must list {MODEL_FILE} and {TOKENIZER_FILE}")
        if self.oos_threshold is not None and self.oos_threshold.label not in self.labels:
            raise ValueError(f"oos_threshold.label {self.oos_threshold.label!r} is not a label")
        return self

    @property
    def quantization(self) -> str:
        steps = [s for s in self.lineage if s.step.startswith("quantize")]
        return steps[-1].params.get("weight_type", "int8") if steps else "none"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path) -> FileEntry:
    return FileEntry(sha256=sha256_file(path), size_bytes=path.stat().st_size)


def read_card(folder: Path) -> VariantCard:
    path = folder / CARD_FILE
    if not path.is_file():
        raise CardError(f"{folder}: no {CARD_FILE}")
    try:
        card = VariantCard.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise CardError(f"{path}: invalid card:\n{exc}") from exc
    if card.name != folder.name:
        raise CardError(
            f"{path}: card name {card.name!r} does not match its folder {folder.name!r}"
        )
    for filename in (MODEL_FILE, TOKENIZER_FILE):
        if not (folder / filename).is_file():
            raise CardError(f"{folder}: missing {filename}")
    return card


def verify_files(folder: Path, card: VariantCard) -> None:
    """Check every file the card lists against its size and sha256."""
    for filename, entry in card.files.items():
        actual = file_entry(folder / filename)
        if actual != entry:
            raise CardError(
                f"{folder / filename}: card says sha256 {entry.sha256} ({entry.size_bytes} bytes), "
                f"file has {actual.sha256} ({actual.size_bytes} bytes)"
            )


def write_card(folder: Path, card: VariantCard) -> Path:
    path = folder / CARD_FILE
    path.write_text(card.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path
