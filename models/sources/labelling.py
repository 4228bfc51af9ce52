"""Warnings about how a dataset was labelled, before anything is trained on it: one text given
several labels, and one label written several ways. Neither is refused: the data may mean it,
and only its owner can say which label is right."""

from __future__ import annotations

import logging
import re
from collections import defaultdict

logger = logging.getLogger("brum.data")

Rows = list[tuple[str, str]]

_SEPARATORS = re.compile(r"[\s_-]+")


def warn_conflicting_labels(rows: Rows, where: str) -> None:
    """Copies of one text with different labels: a model gives each copy the same answer, so
    at most one of them can be right, and training pulls it both ways."""
    labels: dict[str, set[str]] = defaultdict(set)
    for text, label in rows:
        labels[text].add(label)
    conflicting = {text: sorted(found) for text, found in labels.items() if len(found) > 1}
    if not conflicting:
        return
    text, found = next(iter(conflicting.items()))
    logger.warning(
        "%s: %d text(s) appear with more than one label (e.g. %r as %s): a model answers every "
        "copy the same, so check which label is right",
        where,
        len(conflicting),
        text,
        " and ".join(map(repr, found)),
    )


def warn_labels_written_two_ways(labels: set[str], where: str) -> None:
    """Labels equal but for letter case, spaces, underscores or hyphens: most likely one class
    spelt two ways, which the model would learn as two and can only half get right."""
    spellings: dict[str, list[str]] = defaultdict(list)
    for label in labels:
        spellings[_SEPARATORS.sub(" ", label.casefold()).strip()].append(label)
    alike = sorted(sorted(group) for group in spellings.values() if len(group) > 1)
    if not alike:
        return
    shown = ", ".join(" / ".join(map(repr, group)) for group in alike[:5])
    shown += f" and {len(alike) - 5} more" if len(alike) > 5 else ""
    logger.warning(
        "%s: %d label(s) are written more than one way (letter case, spaces, underscores or "
        "hyphens), and each way is kept apart as a label of its own: %s; if they are one label, "
        "write it one way",
        where,
        len(alike),
        shown,
    )
