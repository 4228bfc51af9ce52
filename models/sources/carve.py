"""Splits a source lacks, carved stratified by label and seeded: test from a source that is one
file, validation from the training split, never from test."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Literal

import numpy as np

from models.data import DatasetError

logger = logging.getLogger("brum.data")

Rows = list[tuple[str, str]]


def stratified(rows: Rows, share: float, seed: int) -> tuple[Rows, Rows]:
    """(kept, carved): ``share`` of every label's texts carved (at least one, never all).

    Copies of one text stay together, on one side: a copy in train would answer its twin in test
    from memory, and the test accuracy would overstate what unseen texts get. A text given more
    than one label counts under the label most of its copies have. ``rare_labels`` saw to it that
    every label has two different texts or more."""
    copies: dict[str, list[int]] = defaultdict(list)
    for index, (text, _) in enumerate(rows):
        copies[text].append(index)
    by_label: dict[str, list[str]] = defaultdict(list)
    for text, indices in copies.items():
        by_label[_majority(rows[i][1] for i in indices)].append(text)
    rng = np.random.default_rng(seed)
    carved: set[int] = set()
    for label in sorted(by_label):
        texts = by_label[label]
        count = min(len(texts) - 1, max(1, round(len(texts) * share)))
        for chosen in rng.choice(len(texts), count, replace=False):
            carved.update(copies[texts[chosen]])
    kept = [row for i, row in enumerate(rows) if i not in carved]
    return kept, [row for i, row in enumerate(rows) if i in carved]


def _majority(labels: Iterable[str]) -> str:
    counts = Counter(labels)
    return min(counts, key=lambda label: (-counts[label], label))


def complete(
    examples: dict[str, Rows],
    test_share: float,
    validation_share: float,
    seed: int,
    where: str,
    rare: Literal["refuse", "drop"] = "refuse",
) -> tuple[dict[str, Rows], dict[str, str]]:
    """All three splits, and how each was made."""
    made = {split: "given" for split in examples}
    missing = [split for split in ("test", "validation") if split not in examples]
    if missing:
        made["train"] = f"the rest of {where}, once the missing splits were carved from it"
        rows = examples["train"]
        repeats = len(rows) - len({text for text, _ in rows})
        if repeats:
            made["train"] += f"; {repeats} rows repeat another row's text, carved with it"
        examples["train"], dropped = rare_labels(examples["train"], missing, where, rare)
        if dropped:
            names = ", ".join(dropped)
            made["train"] += f"; {len(dropped)} label(s) too rare to carve dropped: {names}"
            for split in examples.keys() - {"train"}:  # a given split: the labels go there too
                examples[split] = [row for row in examples[split] if row[1] not in dropped]
    if "test" not in examples:
        examples["train"], examples["test"] = stratified(examples["train"], test_share, seed)
        made["test"] = f"carved from train: {test_share:g} of each label, stratified, seed {seed}"
    if "validation" not in examples:
        examples["train"], examples["validation"] = stratified(
            examples["train"], validation_share, seed
        )
        made["validation"] = (
            f"carved from train: {validation_share:g} of each label, stratified, seed {seed}"
        )
    return {split: examples[split] for split in ("train", "validation", "test")}, made


def rare_labels(
    rows: Rows, missing: list[str], where: str, rare: Literal["refuse", "drop"]
) -> tuple[Rows, list[str]]:
    """The rows, less those of labels with too few different texts to carve one into each missing
    split and keep one for training (when ``rare`` is ``drop``; else an error naming every such
    label). Copies of a text count once: they are carved together."""
    least = 1 + len(missing)
    counts = Counter(label for label, _ in {(label, text) for text, label in rows})
    few = sorted(label for label, count in counts.items() if count < least)
    if not few:
        return rows, []
    shown = ", ".join(f"{label!r} ({counts[label]})" for label in few[:10])
    shown += f" and {len(few) - 10} more" if len(few) > 10 else ""
    into = " and ".join(missing)
    if rare == "refuse":
        raise DatasetError(
            f"{where}: {len(few)} label(s) with too few different texts to carve a stratified "
            f"{into} split and keep one for training (each needs {least}): {shown}; give them "
            f"more examples, give {into} files, or drop them (dataset.rare_labels: drop, "
            "init --drop-rare-labels)"
        )
    logger.warning(
        "%s: dropped %d label(s) with fewer than %d different texts, too few to carve %s, from "
        "every split: %s",
        where,
        len(few),
        least,
        into,
        shown,
    )
    return [row for row in rows if counts[row[1]] >= least], few
