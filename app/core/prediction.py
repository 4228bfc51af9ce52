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


def predictions_from_logits(
    card: VariantCard,
    logits: np.ndarray,
    token_counts: list[int],
    truncated: list[bool],
    top_k: int,
) -> list[Prediction]:
    """Top-k labels per row; under the card's out-of-scope threshold, the out-of-scope label."""
    probabilities = softmax(logits.astype(np.float32))
    labels = card.labels
    k = min(top_k, len(labels))
    if k == 1:  # the usual ask: argmax is a tenth of a sort's cost, and breaks ties alike
        top = probabilities.argmax(axis=1)[:, None]
    else:
        top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    rejection = card.oos_threshold
    oos_id = labels.index(rejection.label) if rejection else -1
    predictions = []
    for row, indices in enumerate(top):
        ranked = [LabelScore(labels[i], float(probabilities[row, i])) for i in indices]
        low_confidence = rejection is not None and ranked[0].score < rejection.threshold
        label, score = ranked[0].label, ranked[0].score
        if low_confidence:
            label, score = labels[oos_id], float(probabilities[row, oos_id])
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
