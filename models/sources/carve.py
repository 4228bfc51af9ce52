"""Splits a source lacks, carved stratified by label and seeded: test from a source that is one
file, validation from the training split, never from test."""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

from models.data import DatasetError

logger = logging.getLogger("brum.data")

Rows = list[tuple[str, str]]


def stratified(rows: Rows, share: float, seed: int, where: str, into: str) -> tuple[Rows, Rows]:
    """(kept, carved): ``share`` of every label's rows carved (at least one, never all)."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, (_, label) in enumerate(rows):
        by_label[label].append(index)
    rng = np.random.default_rng(seed)
    carved: set[int] = set()
    for label in sorted(by_label):
        indices = by_label[label]
        if len(indices) < 2:
            raise DatasetError(
                f"{where}: label {label!r} has {len(indices)} example, too few to carve a "
                f"stratified {into} split and keep one for training; give it more examples, "
                f"drop it, or give a {into} file"
            )
        count = min(len(indices) - 1, max(1, round(len(indices) * share)))
        carved.update(int(i) for i in rng.choice(indices, count, replace=False))
    kept = [row for i, row in enumerate(rows) if i not in carved]
    return kept, [row for i, row in enumerate(rows) if i in carved]


def complete(
    examples: dict[str, Rows], test_share: float, validation_share: float, seed: int, where: str
) -> tuple[dict[str, Rows], dict[str, str]]:
    """All three splits, and how each was made."""
    made = {split: "given" for split in examples}
    if {"test", "validation"} - examples.keys():
        made["train"] = f"the rest of {where}, once the missing splits were carved from it"
    if "test" not in examples:
        examples["train"], examples["test"] = stratified(
            examples["train"], test_share, seed, where, "test"
        )
        made["test"] = f"carved from train: {test_share:g} of each label, stratified, seed {seed}"
    if "validation" not in examples:
        examples["train"], examples["validation"] = stratified(
            examples["train"], validation_share, seed, where, "validation"
        )
        made["validation"] = (
            f"carved from train: {validation_share:g} of each label, stratified, seed {seed}"
        )
    train = {text for text, _ in examples["train"]}
    shared = sum(text in train for text, _ in examples["test"])
    if shared:
        logger.warning(
            "%s: %d test text(s) also appear in the training split: the test accuracy "
            "overstates what unseen texts get",
            where,
            shared,
        )
    return {split: examples[split] for split in ("train", "validation", "test")}, made
