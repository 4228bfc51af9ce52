"""The transfer set: perturbed utterances, reproducible, of the promised kinds and count."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from models.augment import AugmentSpec, augment

TEXTS = [
    "what is the balance of my checking account",
    "book a table for two at eight tonight",
    "how do i say thank you in french",
    "set an alarm for six in the morning",
]


def test_same_spec_same_texts_and_the_promised_count():
    spec = AugmentSpec(kinds=["light", "heavy", "splice"], copies=2, seed=3)
    first, again = augment(TEXTS, spec), augment(TEXTS, spec)
    assert first == again and len(first) == len(TEXTS) * 3 * 2
    assert augment(TEXTS, spec.model_copy(update={"seed": 4})) != first
    assert all(text.strip() for text in first)


def test_each_kind_perturbs_as_described():
    words = {w for t in TEXTS for w in t.split()}
    light = augment(TEXTS * 25, AugmentSpec(kinds=["light"]))
    # Light: mostly the original words, in order, and only words seen in training.
    assert all(set(t.split()) <= words for t in light)
    kept = sum(a.split()[:2] == b.split()[:2] for a, b in zip(light, TEXTS * 25, strict=True))
    assert kept > len(light) / 3
    assert any(a != b for a, b in zip(light, TEXTS * 25, strict=True))
    # Splice: a head of the utterance joined to a tail of another one.
    spliced_texts = augment(TEXTS * 25, AugmentSpec(kinds=["splice"]))
    for original, spliced in zip(TEXTS * 25, spliced_texts, strict=True):
        assert spliced.split()[0] == original.split()[0]
        assert any(spliced.endswith(" ".join(t.split()[-1:])) for t in TEXTS)


def test_unknown_kinds_are_refused():
    with pytest.raises(ValidationError, match="unknown augmentation kinds"):
        AugmentSpec(kinds=["light", "paraphrase"])


def test_a_limit_samples_the_transfer_set_the_same_way_every_time():
    spec = AugmentSpec(kinds=["light", "heavy", "splice"], copies=2, seed=3, limit=10)
    first = augment(TEXTS, spec)
    assert len(first) == 10 and first == augment(TEXTS, spec)
    assert len(augment(TEXTS, spec.model_copy(update={"limit": 100}))) == len(TEXTS) * 3 * 2
