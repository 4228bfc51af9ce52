"""Which columns hold the texts and the labels, where the recipe does not say: the usual names
first, then what the values look like. A new user's file rarely calls them ``text`` and ``label``;
what was chosen is logged and ``init`` writes it into the recipe, so a guess is made only once."""

from __future__ import annotations

import logging
import re

import datasets

from models.data import DatasetError
from models.recipe import DatasetSpec

logger = logging.getLogger("brum.data")

# In order of preference, compared without case.
TEXT_NAMES = ("text", "sentence", "utterance", "query", "question", "content", "review")
TEXT_NAMES += ("document", "message", "comment", "tweet", "body", "input", "prompt")
LABEL_NAMES = ("label", "labels", "category", "intent", "class", "target", "topic")
LABEL_NAMES += ("domain", "sentiment", "emotion", "tag", "y")
HOW_TO_CHOOSE = "name them: --text-column and --label-column, or dataset.text_column/label_column"


def resolve_columns(table: datasets.Dataset, spec: DatasetSpec, where: str) -> tuple[str, str]:
    """(text column, label column): those the recipe sets, else guessed from ``table``."""
    text = spec.text_column if "text_column" in spec.model_fields_set else None
    label = spec.label_column if "label_column" in spec.model_fields_set else None
    for role, column in (("text", text), ("label", label)):
        if column is not None and column not in table.column_names:
            raise DatasetError(
                f"{where}: no {role} column {column!r}; the columns are {table.column_names}"
            )
    guessed_text = text is None
    text = text or guess_text_column(table, exclude=label)
    nested = [c for c, f in table.features.items() if isinstance(f, datasets.List | list)]
    if text is None and nested:
        raise DatasetError(
            f"{where}: the records seem to sit under {nested[0]!r}, not at the top: "
            f"give --field {nested[0]} (dataset.field)"
        )
    if text is None:
        raise DatasetError(
            f"{where}: cannot tell which column holds the texts among {table.column_names}; "
            + HOW_TO_CHOOSE
        )
    guessed_label = label is None
    label = label or _label_column(table, exclude=text)
    if label is None:
        raise DatasetError(
            f"{where}: cannot tell which column holds the labels among {table.column_names}; "
            + HOW_TO_CHOOSE
        )
    for column in (text, label):
        twins = [c for c in table.column_names if re.fullmatch(re.escape(column) + r"\.\d+", c)]
        if twins:  # pandas reads a repeated header name as name.1, name.2, ...
            logger.warning(
                "%s: the header names column %r %d times; the first is read as %r, the others "
                "as %s",
                where,
                column,
                len(twins) + 1,
                column,
                twins,
            )
    # Columns called what a recipe assumes by default are no guess worth a warning.
    guessed = [
        role
        for role, column, was_guessed in (
            ("text", text, guessed_text),
            ("label", label, guessed_label),
        )
        if was_guessed and column != DatasetSpec.model_fields[f"{role}_column"].default
    ]
    if guessed:
        logger.warning(
            "%s: texts from column %r, labels from %r (%s guessed; %s)",
            where,
            text,
            label,
            " and ".join(guessed),
            HOW_TO_CHOOSE,
        )
    return text, label


def _by_name(columns: list[str], names: tuple[str, ...], exclude: str | None) -> str | None:
    lowered = {c.lower(): c for c in columns if c != exclude}
    return next((lowered[name] for name in names if name in lowered), None)


def _is_string(feature: object) -> bool:
    return isinstance(feature, datasets.Value) and feature.dtype in {"string", "large_string"}


def guess_text_column(table: datasets.Dataset, exclude: str | None) -> str | None:
    """A column of a usual name, else the string column with the most words."""
    named = _by_name(table.column_names, TEXT_NAMES, exclude)
    if named is not None:
        return named
    strings = [c for c, f in table.features.items() if _is_string(f) and c != exclude]
    sample = table.select(range(min(len(table), 1000)))

    def words(column: str) -> int:  # not characters: an id or a timestamp can be long
        return sum(len((v or "").split()) for v in sample[column])

    return max(strings, key=words, default=None)


def _label_column(table: datasets.Dataset, exclude: str) -> str | None:
    class_labels = [
        c for c, f in table.features.items() if isinstance(f, datasets.ClassLabel) and c != exclude
    ]
    if class_labels:
        return class_labels[0]
    named = _by_name(table.column_names, LABEL_NAMES, exclude)
    if named is not None:
        return named
    # A label repeats: at most half as many distinct values as rows, and at least two.
    counts = {
        c: len(set(map(str, table[c])))
        for c, f in table.features.items()
        if c != exclude and isinstance(f, datasets.Value)
    }
    candidates = [c for c, n in counts.items() if 2 <= n <= len(table) / 2]
    return min(candidates, key=counts.__getitem__, default=None)
