"""What a dataset's owner should know before anything is trained on it: one text given several
labels, one label written several ways, test texts that training also has. None is refused: the
data may mean it, and only its owner can say which label is right. Each is logged as a warning
when it is found, and kept with the data (``TextClassificationData.notes``) for the recipe."""

from __future__ import annotations

import logging
import re
from collections import defaultdict

from models.data import DataNote

logger = logging.getLogger("brum.data")

Rows = list[tuple[str, str]]

_SEPARATORS = re.compile(r"[\s_-]+")


def warned(*notes: DataNote | None) -> tuple[DataNote, ...]:
    """The notes found, each logged once as a warning."""
    found = tuple(note for note in notes if note)
    for note in found:
        logger.warning("%s", note)
    return found


def labelling_notes(examples: dict[str, Rows], where: dict[str, str]) -> tuple[DataNote, ...]:
    """The notes on how splits read from a source were labelled, logged: before they are carved,
    so that a label spelt two ways is named before the rare-label error it usually runs into."""
    conflicts = [
        conflicting_labels(rows, where.get(split, split)) for split, rows in examples.items()
    ]
    trained = _labels_by_text(examples["train"])
    relabelled = [
        relabelled_from_train(trained, rows, where.get(split, split))
        for split, rows in examples.items()
        if split != "train"
    ]
    train = {label for _, label in examples["train"]}
    return warned(
        *conflicts, *relabelled, labels_written_two_ways(train, where.get("train", "train"))
    )


def conflicting_labels(rows: Rows, where: str) -> DataNote | None:
    """Copies of one text with different labels: a model gives each copy the same answer, so
    at most one of them can be right, and training pulls it both ways."""
    labels = _labels_by_text(rows)
    conflicting = {text: sorted(found) for text, found in labels.items() if len(found) > 1}
    if not conflicting:
        return None
    text, found = next(iter(conflicting.items()))
    return DataNote(
        where,
        f"{len(conflicting)} text(s) appear with more than one label (e.g. {text!r} as "
        f"{' and '.join(map(repr, found))}): a model answers every copy the same, so check which "
        "label is right",
    )


def relabelled_from_train(trained: dict[str, set[str]], rows: Rows, where: str) -> DataNote | None:
    """Texts of another split that the training split (``trained``: its labels by text) has under
    another label: the model learns the training split's, and is scored against this one."""
    other = {text: label for text, label in rows if text in trained and label not in trained[text]}
    if not other:
        return None
    text, label = next(iter(other.items()))
    return DataNote(
        where,
        f"{len(other)} text(s) have another label in the training split (e.g. {text!r} "
        f"as {label!r} here and {' and '.join(map(repr, sorted(trained[text])))} there): check "
        "which label is right",
    )


def _labels_by_text(rows: Rows) -> dict[str, set[str]]:
    labels: dict[str, set[str]] = defaultdict(set)
    for text, label in rows:
        labels[text].add(label)
    return labels


def labels_written_two_ways(labels: set[str], where: str) -> DataNote | None:
    """Labels equal but for letter case, spaces, underscores or hyphens: most likely one class
    spelt two ways, which the model would learn as two and can only half get right."""
    spellings: dict[str, list[str]] = defaultdict(list)
    for label in labels:
        spellings[_SEPARATORS.sub(" ", label.casefold()).strip()].append(label)
    alike = sorted(sorted(group) for group in spellings.values() if len(group) > 1)
    if not alike:
        return None
    shown = ", ".join(" / ".join(map(repr, group)) for group in alike[:5])
    shown += f" and {len(alike) - 5} more" if len(alike) > 5 else ""
    return DataNote(
        where,
        f"{len(alike)} label(s) are written more than one way (letter case, spaces, "
        f"underscores or hyphens), and each way is kept apart as a label of its own: {shown}; "
        "if they are one label, write it one way",
    )


def texts_shared_with_train(examples: dict[str, Rows], where: str) -> DataNote | None:
    """Test texts that the training split has under the same label: the model answers them from
    memory. (Under another label, ``relabelled_from_train`` names them.)"""
    train = set(examples["train"])
    shared = sum(row in train for row in examples["test"])
    if not shared:
        return None
    return DataNote(
        where,
        f"{shared} test text(s) also appear in the training split: the test accuracy "
        "overstates what unseen texts get",
    )
