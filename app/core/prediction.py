"""From logits to predictions: probabilities, the top label and the top-k labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.core.card import VariantCard


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float
    top_k: list[LabelScore]
    truncated: bool
    tokens: int
    low_confidence: bool


@dataclass(frozen=True)
class PredictionBatch:
    variant: str
    predictions: list[Prediction]
    logits: np.ndarray  # [texts, labels], float32, the model's raw output
    queue_seconds: float
    inference_seconds: float
    feedback_token: str | None = None  # see app/core/feedback.py

    @property
    def labels(self) -> list[str]:
        return [p.label for p in self.predictions]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Ranking:
    """Rows of probabilities, and each row's most probable labels (ids and probabilities, best
    first) as plain lists: what an answer is built from without another numpy call per request."""

    probabilities: np.ndarray  # [texts, labels], float32
    top_ids: list[list[int]]
    top_scores: list[list[float]]


def rank(logits: np.ndarray, depth: int) -> Ranking:
    """Softmax and the ``depth`` best labels of every row, in one pass over a whole batch: done
    per request on the event loop, these few numpy calls were a sixth of its time at 32
    connections (BENCHMARKS.md, 2026-12-06)."""
    probabilities = softmax(logits.astype(np.float32, copy=False))
    k = min(depth, probabilities.shape[1])
    if k == 1:  # the usual ask: argmax is a tenth of a sort's cost, and breaks ties alike
        top = probabilities.argmax(axis=1)[:, None]
    else:
        top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    scores = probabilities[np.arange(len(top))[:, None], top]
    return Ranking(probabilities, top.tolist(), scores.tolist())


def predictions_from_ranking(
    card: VariantCard,
    ranking: Ranking,
    token_counts: list[int],
    truncated: list[bool],
    top_k: int,
) -> list[Prediction]:
    """Top-k labels per row; under the card's out-of-scope threshold, the out-of-scope label."""
    labels = card.labels
    rejection = card.oos_threshold
    oos_id = labels.index(rejection.label) if rejection else -1
    predictions = []
    for row, (ids, scores) in enumerate(zip(ranking.top_ids, ranking.top_scores, strict=True)):
        ranked = [
            LabelScore(labels[i], score) for i, score in zip(ids[:top_k], scores, strict=False)
        ]
        low_confidence = rejection is not None and ranked[0].score < rejection.threshold
        label, score = ranked[0].label, ranked[0].score
        if low_confidence:
            label, score = labels[oos_id], float(ranking.probabilities[row, oos_id])
        predictions.append(
            Prediction(
                label=label,
                score=score,
                top_k=ranked,
                truncated=truncated[row],
                tokens=token_counts[row],
                low_confidence=low_confidence,
            )
        )
    return predictions
