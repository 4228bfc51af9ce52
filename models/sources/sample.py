"""Splits sampled down to the recipe's ``split.max_*``, the same texts for the same seed. A large
dataset trains in hours, not days, and the card says what was sampled.

Validation and test keep every label's share of the split (rounded by largest remainder, at
least one text each): they stand for the traffic. Training texts are taken evenly by default,
the same number from every label and all of a label that has fewer: a proportional sample leaves
a rare label a handful of texts to learn from (BENCHMARKS.md, 2026-12-06)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from models.data import DatasetError, Split, TextClassificationData
from models.recipe import SplitSizes


def sample_splits(data: TextClassificationData, sizes: SplitSizes) -> TextClassificationData:
    limits = {"train": sizes.max_train, "validation": sizes.max_validation, "test": sizes.max_test}
    splits, made = dict(data.splits), dict(data.splits_made)
    for split, limit in limits.items():
        if limit is None or len(splits[split]) <= limit:
            continue
        whole, setting = len(splits[split]), f"split.max_{split}"
        even = split == "train" and sizes.train_sample == "even"
        sample = even_sample if even else stratified_sample
        splits[split] = sample(splits[split], limit, sizes.seed, setting)
        made[split] = (
            f"{made.get(split, 'given')}; sampled {limit:,} of {whole:,} ({setting}), "
            f"{'evenly by label' if even else 'stratified'}, seed {sizes.seed}"
        )
    return replace(data, splits=splits, splits_made=made)


def label_counts(split: Split, size: int, setting: str) -> tuple[np.ndarray, np.ndarray]:
    """The split's labels and their counts; refused if ``size`` cannot give each one text."""
    present, counts = np.unique(np.asarray(split.label_ids), return_counts=True)
    if size < len(present):
        raise DatasetError(
            f"{setting} is {size:,}, fewer than the split's {len(present)} labels: every label "
            "needs at least one text; raise it or remove it"
        )
    return present, counts


def even_sample(split: Split, size: int, seed: int, setting: str) -> Split:
    """``size`` of the split's texts, as many from every label as ``size`` allows, a label with
    fewer giving all of its own; what an even share leaves over goes one text each to the labels
    with the most texts left."""
    present, counts = label_counts(split, size, setting)
    take = np.zeros_like(counts)
    while (left := size - int(take.sum())) > 0:
        short = take < counts
        each = left // int(short.sum())
        if each == 0:
            take[np.argsort(take - counts, kind="stable")[:left]] += 1
            break
        take = np.where(short, np.minimum(counts, take + each), take)
    return _pick(split, present, take, seed)


def stratified_sample(split: Split, size: int, seed: int, setting: str) -> Split:
    """``size`` of the split's texts, each label's count in proportion to its share."""
    present, counts = label_counts(split, size, setting)
    # Each label's proportional share, rounded by largest remainder, and never below one text.
    share = size * counts / counts.sum()
    take = np.maximum(1, np.floor(share)).astype(int)
    while take.sum() > size:
        take[np.argmax(np.where(take > 1, take - share, -np.inf))] -= 1
    while take.sum() < size:
        take[np.argmax(np.where(take < counts, share - take, -np.inf))] += 1
    return _pick(split, present, take, seed)


def _pick(split: Split, present: np.ndarray, take: np.ndarray, seed: int) -> Split:
    """``take[i]`` texts of label ``present[i]``, seeded, in the split's order."""
    labels = np.asarray(split.label_ids)
    rng = np.random.default_rng(seed)
    chosen = np.concatenate(
        [
            rng.choice(np.flatnonzero(labels == label), count, replace=False)
            for label, count in zip(present, take, strict=True)
        ]
    )
    chosen.sort()
    return Split([split.texts[i] for i in chosen], [split.label_ids[i] for i in chosen])
