"""A labelled text-classification dataset in memory: its label set and its splits.

Every source (models/sources/) ends here, in ``from_examples``: the label set is fixed from the
training split, in a stable order (the names a source gives, else sorted, numerically where
every label is an integer), so that label ids are the same across machines, file orders and
sources; a label that only validation or test has is an error, as is a dataset of fewer than two
labels. The out-of-scope handling (threshold, ``oos`` metrics) applies only when the dataset names
an out-of-scope label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePath
from typing import NamedTuple

SPLITS = ("train", "validation", "test")


class DatasetError(ValueError):
    """The dataset is missing or not in the expected format; the message names where."""


class DataNote(NamedTuple):
    """What reading a dataset warned about: ``where`` (a file, or a dataset and its split), and
    what it ``says``."""

    where: str
    says: str

    def __str__(self) -> str:
        return f"{self.where}: {self.says}"

    def without_folders(self) -> str:
        """As a card shows it: the file's name, not the build machine's folders."""
        return f"{PurePath(self.where).name}: {self.says}"


@dataclass(frozen=True)
class Split:
    texts: list[str]
    label_ids: list[int]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class TextClassificationData:
    name: str
    labels: tuple[str, ...]
    splits: dict[str, Split]
    oos_label: str | None = None
    # How each split was made: "given", or carved from which, how much, with which seed.
    splits_made: dict[str, str] = field(default_factory=dict)
    # The source's (text, label) columns, as the recipe names them or as they were guessed.
    columns: tuple[str, str] | None = None
    # CSV or TSV files: whether they started with their column names, as read (None: not such
    # files, or some did and some did not).
    header: bool | None = None
    # Texts with no label that the teacher labels into transfer sets (models/sources/unlabelled.py)
    unlabelled: tuple[str, ...] = ()
    # What its owner should know before training on it, found while reading it and logged then:
    # texts under several labels, labels written several ways, test texts that train has too
    # (models/sources/labelling.py). The cards carry them (metrics.data_notes).
    notes: tuple[DataNote, ...] = ()

    @property
    def label_to_id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    @property
    def oos_id(self) -> int | None:
        return None if self.oos_label is None else self.label_to_id[self.oos_label]


def from_examples(
    name: str,
    examples: dict[str, list[tuple[str, str]]],
    label_order: Sequence[str] | None = None,
    oos_label: str | None = None,
    where: dict[str, str] | None = None,
) -> TextClassificationData:
    """Splits of (text, label) pairs -> the dataset. ``label_order``: the names in the order the
    source defines them (a ``ClassLabel``'s, or a names list); ``where``: what to call each
    split in errors (its file)."""
    where = where or {}
    seen = {label for _, label in examples["train"]}
    if len(seen) < 2:
        raise DatasetError(
            f"{where.get('train', 'train')}: the training split has {len(seen)} label(s) "
            f"({sorted(seen)}); a classifier needs at least two"
        )
    if label_order is None:
        # Integer labels in numeric order: "10" after "9", and ids equal to the labels 0..n-1.
        numeric = all(label.lstrip("-").isdigit() for label in seen)
        labels = tuple(sorted(seen, key=lambda label: (int(label), label) if numeric else label))
    else:
        labels = tuple(label for label in dict.fromkeys(label_order) if label in seen)
    for split, rows in examples.items():
        for row, (_, label) in enumerate(rows, 1):
            if label not in seen:
                raise DatasetError(
                    f"{where.get(split, split)}: row {row} has label {label!r}, which the "
                    f"training split never has ({len(labels)} labels there)"
                )
    if oos_label is not None and oos_label not in seen:
        raise DatasetError(
            f"the out-of-scope label {oos_label!r} is not among the training split's labels"
        )
    label_to_id = {label: i for i, label in enumerate(labels)}
    splits = {
        split: Split([text for text, _ in rows], [label_to_id[label] for _, label in rows])
        for split, rows in examples.items()
    }
    return TextClassificationData(name, labels, splits, oos_label)


def with_splits_trained(
    data: TextClassificationData, splits: tuple[str, ...]
) -> TextClassificationData:
    """``data`` with the texts of ``splits`` joined, in order, as its training split."""
    if splits == ("train",):
        return data
    joined = Split(
        [text for name in splits for text in data.splits[name].texts],
        [label for name in splits for label in data.splits[name].label_ids],
    )
    return replace(data, splits={**data.splits, "train": joined})
