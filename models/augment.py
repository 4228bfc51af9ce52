"""A transfer set for distillation: perturbed training utterances, labelled only by the teacher.

A student fitted to 100 utterances per intent copies the teacher on those points and little else;
between them, and on inputs no intent covers, it is left to guess. Perturbed utterances put the
teacher's answer (and its doubt) on many more points. The perturbations, each seeded and cheap:

- ``light``: drop and replace a few words (near neighbours of an intent's utterances);
- ``heavy``: replace many words and swap some neighbours (drifting towards out-of-scope);
- ``splice``: the start of one utterance joined to the end of another (often two intents at once,
  where the teacher is unsure: exactly the doubt out-of-scope detection needs).

The texts carry no gold label: the student learns them from the teacher's logits alone.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

KINDS = ("light", "heavy", "splice")


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


def perturb(
    text: str, kind: str, texts: Sequence[str], pool: Sequence[str], rng: random.Random
) -> str:
    words = text.split()
    if kind == "light":
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


def augment(texts: Sequence[str], spec: AugmentSpec) -> list[str]:
    """``len(texts) * len(spec.kinds) * spec.copies`` new texts (at most ``spec.limit``), the same
    for the same spec."""
    rng = random.Random(spec.seed)
    pool = [word for text in texts for word in text.split()]
    jobs = [(kind, text) for _ in range(spec.copies) for kind in spec.kinds for text in texts]
    if spec.limit is not None and spec.limit < len(jobs):
        jobs = [jobs[i] for i in sorted(rng.sample(range(len(jobs)), spec.limit))]
    return [perturb(text, kind, texts, pool, rng) for kind, text in jobs]
