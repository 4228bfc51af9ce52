"""The transfer set: perturbed utterances, reproducible, of the promised kinds and count."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from models.augment import AugmentSpec, augment, words_to_embed
from models.neighbours import word_neighbours
from tests.tiny import save_tiny_bert

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


NEIGHBOURS = {
    "balance": ["total", "funds"],
    "checking": ["savings"],
    "table": ["booking", "seat"],
    "alarm": ["alert"],
    "morning": ["dawn", "sunrise"],
}


def test_neighbour_swaps_words_for_their_neighbours_only():
    texts = [*TEXTS, "what is my balance?"]
    spec = AugmentSpec(kinds=["neighbour"], copies=20)
    swapped = augment(texts, spec, NEIGHBOURS)
    assert swapped == augment(texts, spec, NEIGHBOURS)
    for original, text in zip(texts * 20, swapped, strict=True):
        before, after = original.split(), text.split()
        assert len(after) == len(before)
        changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
        if any(word.strip("?") in NEIGHBOURS for word in before):
            assert changed  # every text with a word that has neighbours changes
        for old, new in changed:
            assert new.rstrip("?") in NEIGHBOURS[old.rstrip("?")]
            assert new.endswith("?") == old.endswith("?")  # punctuation stays
    assert any(text.endswith(("total?", "funds?")) for text in swapped)
    # "how do i say thank you in french" has no word with neighbours: it stays as it is.
    assert texts[2] in swapped
    with pytest.raises(ValueError, match="needs the words' neighbours"):
        augment(texts, spec)


def test_neighbours_are_found_for_words_met_twice_and_not_in_most_texts():
    texts = ["my card is lost", "my card was stolen", "my pin is wrong", "my pin got blocked"]
    texts += [f"unrelated text {n}" for n in range(60)]
    # "my": in 4 of 64 texts, above 5%; "lost", "stolen": met once; "is": twice, in 2 texts.
    assert words_to_embed(texts) == ["card", "is", "pin"]


def test_word_neighbours_are_the_nearest_by_the_models_word_embeddings(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    words = ["balance", "total", "alarm", "alert", "french", "morning"]
    model_dir = save_tiny_bert(tmp_path / "bert", [" ".join(words)] * 50)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir)
    ids = {w: tokenizer(w, add_special_tokens=False)["input_ids"] for w in words}
    assert all(len(pieces) == 1 for pieces in ids.values())  # whole words in this vocabulary
    embeddings = model.get_input_embeddings().weight.data
    for word, twin in (("total", "balance"), ("alert", "alarm")):
        embeddings[ids[word][0]] = embeddings[ids[twin][0]] * 2 + 0.01
    model.save_pretrained(model_dir)
    nearest = word_neighbours(words, model_dir, count=1)
    assert nearest["balance"] == ["total"] and nearest["total"] == ["balance"]
    assert nearest["alarm"] == ["alert"] and nearest["alert"] == ["alarm"]
    assert len(word_neighbours(words, model_dir, count=3)["french"]) == 3
    assert word_neighbours(words[:2], model_dir, count=2) == {}  # too few words to choose from
