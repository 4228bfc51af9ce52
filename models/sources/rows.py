"""One table of a ``datasets`` source -> (text, label) pairs, with errors that name the table,
the row and the column."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import datasets

from models.data import DatasetError
from models.recipe import DatasetSpec

logger = logging.getLogger("brum.data")


@dataclass(frozen=True)
class Table:
    rows: list[tuple[str, str]]
    label_names: list[str] | None  # in id order, where the source defines them
    dropped_empty: int
    dropped_unlabelled: int


def read_rows(
    dataset: datasets.Dataset, spec: DatasetSpec, columns: tuple[str, str], where: str
) -> Table:
    """``columns``: (text, label); ``where`` names the table in errors: a file, or a saved or hub
    dataset's split."""
    text_column, label_column = columns
    for role, column in (("text", text_column), ("label", label_column)):
        if column not in dataset.column_names:
            raise DatasetError(
                f"{where}: no {role} column {column!r}; the columns are {dataset.column_names}"
            )
    feature = dataset.features[label_column]
    if isinstance(feature, datasets.List | list):
        raise DatasetError(
            f"{where}: column {label_column!r} holds lists of labels (multi-label data); brum "
            "builds classifiers of one label per text: give one label per row"
        )
    names = feature.names if isinstance(feature, datasets.ClassLabel) else spec.label_names
    if names is None and _is_integer(feature):
        logger.warning(
            "%s: the labels in column %r are integers with no names, so answers will name them "
            "'0', '1', ...; give their names with --label-names FILE (dataset.label_names)",
            where,
            label_column,
        )
    rows: list[tuple[str, str]] = []
    dropped = 0
    unlabelled: list[int] = []  # rows with no label, dropped
    padded: list[str] = []  # labels with spaces around them, as read
    texts, labels = dataset[text_column], dataset[label_column]
    for row, (text, label) in enumerate(zip(texts, labels, strict=True), 1):
        if text is None or not str(text).strip():
            if spec.empty_texts == "refuse":
                raise DatasetError(
                    f"{where}: row {row} has an empty text in column {text_column!r} "
                    "(dataset.empty_texts: refuse; 'drop' drops and counts them)"
                )
            dropped += 1
            continue
        # 'refund ' and 'refund' are one label: a spreadsheet's stray space is no new class.
        if isinstance(label, str) and label != label.strip():
            if label.strip():
                padded.append(label)
            label = label.strip()
        if _is_missing(label):
            if spec.missing_labels == "refuse":
                raise DatasetError(
                    f"{where}: row {row} has no label in column {label_column!r} "
                    "(dataset.missing_labels: refuse; 'drop' drops and counts them)"
                )
            unlabelled.append(row)
            continue
        rows.append((str(text), _label(label, names, where, row, label_column)))
    if dropped:
        logger.warning("%s: dropped %d empty or whitespace-only texts", where, dropped)
    if unlabelled:
        logger.warning(
            "%s: dropped %d rows with no label in column %r (rows %s)",
            where,
            len(unlabelled),
            label_column,
            _some(unlabelled),
        )
    if padded:
        logger.warning(
            "%s: %d labels in column %r had spaces around them, removed (e.g. %r)",
            where,
            len(padded),
            label_column,
            padded[0],
        )
    return Table(rows, list(names) if names else None, dropped, len(unlabelled))


def _is_integer(feature: object) -> bool:
    return isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint"))


def _is_missing(label: object) -> bool:
    return label is None or label == "" or (isinstance(label, float) and math.isnan(label))


def _some(rows: list[int], shown: int = 5) -> str:
    listed = ", ".join(map(str, rows[:shown]))
    return f"{listed}, ..." if len(rows) > shown else listed


def _label(value: object, names: list[str] | None, where: str, row: int, column: str) -> str:
    if isinstance(value, float) and value.is_integer():  # an integer column with gaps
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and names is not None:
        if not 0 <= value < len(names):
            raise DatasetError(
                f"{where}: row {row} has label {value}, not an index into the "
                f"{len(names)} label names"
            )
        return names[value]
    return str(value)
