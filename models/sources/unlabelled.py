"""Texts with no label (the traffic a service saw, a log export, more text of the same domain)
for the teacher to label into every student's transfer set. Real inputs put the teacher's answers
where users actually ask, which perturbed copies of the training texts only approximate.

Read by the same loaders as the labelled files (CSV, TSV, JSON Lines, Parquet), or as plain text
one per line. Empty texts, repeats, and texts a labelled split already holds (compared without
case or extra spaces) are dropped and counted: one in validation or test would leak it into
training. What is left is sampled down to ``max_unlabelled``, seeded: a request log of millions
of lines would otherwise make the transfer set, and every student's training, that large."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from models.data import SPLITS, DatasetError, TextClassificationData
from models.recipe import DatasetSpec
from models.sources.columns import guess_text_column
from models.sources.files import data_format, read_file, uncompressed

logger = logging.getLogger("brum.data")


def read_unlabelled(spec: DatasetSpec, data: TextClassificationData) -> tuple[str, ...]:
    path = spec.unlabelled
    if path is None:
        return ()
    kind = "text" if uncompressed(path).suffix.lower() == ".txt" else data_format(path)
    table = read_file(path, spec, kind=kind)
    where = f"{path} (dataset.unlabelled)"
    column = spec.unlabelled_column
    if column is None:
        text_column = data.columns[0] if data.columns else spec.text_column
        column = text_column if text_column in table.column_names else None
        column = column or guess_text_column(table, exclude=None)
    if column is None or column not in table.column_names:
        raise DatasetError(
            f"{where}: no text column {column!r}; the columns are {table.column_names} "
            "(name it: --unlabelled-column, or dataset.unlabelled_column)"
        )
    # Later splits win, so a text in train and test counts as test's.
    labelled = {
        _normal(text): split
        for split in SPLITS
        if split in data.splits
        for text in data.splits[split].texts
    }
    kept: list[str] = []
    seen: set[str] = set()
    dropped: Counter[str] = Counter()
    for value in table[column]:
        text = "" if value is None else str(value)
        key = _normal(text)
        if not key:
            dropped["empty"] += 1
        elif key in labelled:
            dropped[f"in {labelled[key]}"] += 1
        elif key in seen:
            dropped["repeated"] += 1
        else:
            seen.add(key)
            kept.append(text)
    if not kept:
        raise DatasetError(
            f"{where}: no texts left in column {column!r} ({_counts(dropped)} dropped)"
        )
    logger.info("%s: %d texts from column %r", where, len(kept), column)
    if dropped:
        logger.warning("%s: dropped %s", where, _counts(dropped))
    limit = spec.max_unlabelled
    if limit is not None and len(kept) > limit:
        chosen = np.random.default_rng(spec.split.seed).choice(len(kept), limit, replace=False)
        logger.info(
            "%s: sampled %d of %d texts (dataset.max_unlabelled), seed %d",
            where,
            limit,
            len(kept),
            spec.split.seed,
        )
        kept = [kept[i] for i in sorted(chosen)]
    return tuple(kept)


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def _counts(dropped: Counter[str]) -> str:
    return ", ".join(f"{count} {reason}" for reason, count in sorted(dropped.items())) or "none"
