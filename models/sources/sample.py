"""Splits sampled down to the recipe's ``split.max_*``: every label keeps its share of the split
(rounded by largest remainder, at least one text each), the same texts for the same seed. A
large dataset trains in hours, not days, and the card says what was sampled."""

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
        whole = len(splits[split])
        splits[split] = stratified_sample(splits[split], limit, sizes.seed, f"split.max_{split}")
        made[split] = (
            f"{made.get(split, 'given')}; sampled {limit:,} of {whole:,} "
            f"(split.max_{split}), stratified, seed {sizes.seed}"
        )
    return replace(data, splits=splits, splits_made=made)


def stratified_sample(split: Split, size: int, seed: int, setting: str) -> Split:
    """``size`` of the split's texts, each label's count in proportion to its share."""
    labels = np.asarray(split.label_ids)
    present, counts = np.unique(labels, return_counts=True)
    if size < len(present):
        raise DatasetError(
            f"{setting} is {size:,}, fewer than the split's {len(present)} labels: every label "
            "needs at least one text; raise it or remove it"
        )
    # Each label's proportional share, rounded by largest remainder, and never below one text.
    share = size * counts / counts.sum()
    take = np.maximum(1, np.floor(share)).astype(int)
    while take.sum() > size:
        take[np.argmax(np.where(take > 1, take - share, -np.inf))] -= 1
    while take.sum() < size:
        take[np.argmax(np.where(take < counts, share - take, -np.inf))] += 1
    rng = np.random.default_rng(seed)
    chosen = np.concatenate(
        [
            rng.choice(np.flatnonzero(labels == label), count, replace=False)
            for label, count in zip(present, take, strict=True)
        ]
    )
    chosen.sort()
    return Split([split.texts[i] for i in chosen], [split.label_ids[i] for i in chosen])
