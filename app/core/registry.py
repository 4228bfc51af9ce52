"""The variant registry: every variant of a model repository, loaded and warmed up."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from app.core.card import (
    CARD_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    CardError,
    VariantCard,
    read_card,
    verify_files,
)
from app.core.errors import UnknownVariant
from app.runtime.classifier import OnnxClassifier, load_classifier
from app.runtime.session import SessionConfig

WARMUP_TEXTS = ["warm up", "how do i transfer money from my checking to my savings account"]


def fingerprint(folder: Path, card: VariantCard) -> tuple:
    """What tells a rescan that a variant's files changed: its card, and its model file's size
    and modification time (in case the model was replaced without a new card)."""
    stat = (folder / MODEL_FILE).stat()
    return card.model_dump_json(), stat.st_size, stat.st_mtime_ns


# eq=False: compared and hashed by identity, so a variant replaced under the same name is
# another variant, with its own batcher, to requests still holding the old one.
@dataclass(frozen=True, eq=False)
class Variant:
    name: str
    card: VariantCard
    classifier: OnnxClassifier
    folder: Path
    fingerprint: tuple = ()

    @cached_property
    def label_set(self) -> frozenset[str]:
        """The card's labels, for checking feedback: built once, not per request."""
        return frozenset(self.card.labels)

    @property
    def size_bytes(self) -> int:
        return (self.folder / MODEL_FILE).stat().st_size


@dataclass(frozen=True)
class Registry:
    variants: dict[str, Variant]
    default: str

    def get(self, name: str | None) -> Variant:
        if name is None:
            return self.variants[self.default]
        try:
            return self.variants[name]
        except KeyError:
            raise UnknownVariant(
                f"unknown variant {name!r}; available: {', '.join(sorted(self.variants))}"
            ) from None


def discover(repository: Path) -> list[Path]:
    if not repository.is_dir():
        raise CardError(f"model repository {repository} is not a directory")
    folders = sorted(p.parent for p in repository.glob(f"*/{CARD_FILE}"))
    for model in sorted(repository.glob(f"*/{MODEL_FILE}")):
        if not (model.parent / CARD_FILE).is_file() and not model.parent.name.startswith("."):
            raise CardError(
                f"{model.parent}: a model without a card ({CARD_FILE}); make it a variant with "
                f"`python -m models import {model.parent} --name {model.parent.name.lower()} "
                f"--repository {repository}`"
            )
    if not folders:
        raise CardError(f"model repository {repository} holds no variant (no */{CARD_FILE})")
    return folders


def read_cards(repository: Path, verify: bool) -> list[tuple[Path, VariantCard]]:
    """Read and check every card first, so a broken repository fails before anything loads."""
    cards = []
    for folder in discover(repository):
        card = read_card(folder)
        if verify:
            verify_files(folder, card)
        cards.append((folder, card))
    return cards


def load_variant(folder: Path, card: VariantCard, config: SessionConfig) -> Variant:
    classifier = load_classifier(
        folder / MODEL_FILE, folder / TOKENIZER_FILE, card.max_length, config
    )
    # A text as long as the card allows, so that a graph which cannot take it (fewer position
    # embeddings than the card's max_length) fails here, not on a user's request.
    longest = " ".join(["hello"] * card.max_length)
    try:
        output_width = classifier.classify([WARMUP_TEXTS[0], longest]).logits.shape[1]
    except Exception as exc:  # onnxruntime's own error types, each a different class
        raise CardError(
            f"{folder}: the model fails on a text of the card's max_length ({card.max_length} "
            f"tokens); lower max_length in {CARD_FILE}: {exc}"
        ) from exc
    if output_width != len(card.labels):
        raise CardError(
            f"{folder}: model outputs {output_width} scores, card has {len(card.labels)} labels"
        )
    return Variant(card.name, card, classifier, folder, fingerprint(folder, card))


def warm_up(variant: Variant, iterations: int) -> float:
    started = time.perf_counter()
    for _ in range(iterations):
        variant.classifier.classify(WARMUP_TEXTS)
        variant.classifier.classify(WARMUP_TEXTS[:1])
    return time.perf_counter() - started


def choose_default(names: list[str], requested: str | None) -> str:
    if requested is None:
        return sorted(names)[0]
    if requested not in names:
        raise CardError(f"default variant {requested!r} is not in the repository: {sorted(names)}")
    return requested
