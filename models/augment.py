"""A transfer set for distillation: perturbed training utterances, labelled only by the teacher.

A student fitted to 100 utterances per intent copies the teacher on those points and little else;
between them, and on inputs no intent covers, it is left to guess. Perturbed utterances put the
teacher's answer (and its doubt) on many more points. The perturbations, each seeded and cheap:

- ``light``: drop and replace a few words (near neighbours of an intent's utterances);
- ``heavy``: replace many words and swap some neighbours (drifting towards out-of-scope);
- ``splice``: the start of one utterance joined to the end of another (often two intents at once,
  where the teacher is unsure: exactly the doubt out-of-scope detection needs);
- ``neighbour``: a few words replaced by their nearest neighbours among the data's words, by the
  teacher's word embeddings (``refund`` -> ``reimbursed``, ``pending`` -> ``awaiting``): near
  paraphrases, as TinyBERT's augmentation makes them, with no masked language model to ask.

The texts carry no gold label: the student learns them from the teacher's logits alone.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

KINDS = ("light", "heavy", "splice", "neighbour")
# A word of the data, as neighbours are found and swapped: letters and apostrophes.
WORD = re.compile(r"[a-z']+")
# The words swapped for neighbours, and offered as neighbours: met at least twice (a word met
# once is often a typo) and in at most this share of the texts (not "my", "the", "how": their
# neighbours by embedding, "our", "whats", make garbled text, not a paraphrase).
MIN_WORD_COUNT = 2
MAX_WORD_SHARE = 0.05
NEIGHBOURS = 5


class AugmentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kinds: list[str] = Field(default_factory=lambda: list(KINDS), min_length=1)
    copies: int = Field(1, gt=0, description="texts of each kind per training utterance")
    seed: int = 0
    limit: int | None = Field(
        None, gt=0, description="at most this many texts per split: a seeded sample of them"
    )

    def model_post_init(self, context: object) -> None:
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown augmentation kinds {sorted(unknown)}; choose from {KINDS}")


def _replace_and_drop(
    words: list[str], pool: Sequence[str], rng: random.Random, replace: float, drop: float
) -> list[str]:
    out = []
    for word in words:
        roll = rng.random()
        if roll < drop and len(words) > 2:
            continue
        out.append(rng.choice(pool) if roll < drop + replace else word)
    return out or words[:1]


def _swap_neighbours(words: list[str], rng: random.Random, rate: float) -> list[str]:
    words = list(words)
    for i in range(len(words) - 1):
        if rng.random() < rate:
            words[i], words[i + 1] = words[i + 1], words[i]
    return words


def _swap_for_neighbours(
    words: list[str], neighbours: Mapping[str, Sequence[str]], rng: random.Random, rate: float
) -> list[str]:
    """Each word with neighbours replaced by one of them at ``rate``, and at least one such word
    replaced; the punctuation around a word stays."""
    swappable = [i for i, w in enumerate(words) if _core(w) in neighbours]
    chosen = {i for i in swappable if rng.random() < rate}
    if swappable and not chosen:
        chosen = {rng.choice(swappable)}
    out = list(words)
    for i in chosen:
        core = _core(words[i])
        out[i] = words[i].lower().replace(core, rng.choice(neighbours[core]), 1)
    return out


def _core(word: str) -> str:
    match = WORD.search(word.lower())
    return match.group() if match else ""


def perturb(
    text: str,
    kind: str,
    texts: Sequence[str],
    pool: Sequence[str],
    rng: random.Random,
    neighbours: Mapping[str, Sequence[str]] | None = None,
) -> str:
    words = text.split()
    if kind == "neighbour":
        if neighbours is None:
            raise ValueError("the neighbour kind needs the words' neighbours (word_neighbours)")
        words = _swap_for_neighbours(words, neighbours, rng, rate=0.3)
    elif kind == "light":
        words = _replace_and_drop(words, pool, rng, replace=0.1, drop=0.1)
    elif kind == "heavy":
        words = _swap_neighbours(_replace_and_drop(words, pool, rng, 0.35, 0.05), rng, 0.2)
    elif kind == "splice":
        other = rng.choice(texts).split()
        head = words[: max(1, rng.randint(1, max(1, len(words) - 1)))]
        tail = other[rng.randint(1, max(1, len(other) - 1)) :] if len(other) > 1 else other
        words = head + tail
    else:
        raise ValueError(f"unknown augmentation kind {kind!r}; choose from {KINDS}")
    return " ".join(words)


def words_to_embed(texts: Sequence[str]) -> list[str]:
    """The words whose neighbours ``neighbour`` perturbations may swap in, in a stable order."""
    counts: dict[str, int] = {}
    texts_with: dict[str, int] = {}
    for text in texts:
        words = WORD.findall(text.lower())
        for word in words:
            counts[word] = counts.get(word, 0) + 1
        for word in set(words):
            texts_with[word] = texts_with.get(word, 0) + 1
    most = MAX_WORD_SHARE * len(texts)
    return sorted(w for w, n in counts.items() if n >= MIN_WORD_COUNT and texts_with[w] <= most)


def augment(
    texts: Sequence[str],
    spec: AugmentSpec,
    neighbours: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """``len(texts) * len(spec.kinds) * spec.copies`` new texts (at most ``spec.limit``), the same
    for the same spec. ``neighbours``: each word's nearest words, for the ``neighbour`` kind
    (models/neighbours.py)."""
    rng = random.Random(spec.seed)
    pool = [word for text in texts for word in text.split()]
    jobs = [(kind, text) for _ in range(spec.copies) for kind in spec.kinds for text in texts]
    if spec.limit is not None and spec.limit < len(jobs):
        jobs = [jobs[i] for i in sorted(rng.sample(range(len(jobs)), spec.limit))]
    return [perturb(text, kind, texts, pool, rng, neighbours) for kind, text in jobs]
