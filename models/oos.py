"""Out-of-scope detection from low confidence: a threshold on the top probability.

When the classifier's top probability is below the threshold, the answer is the out-of-scope label.
The threshold is tuned on the validation split, never the test split. The objective is *balanced*:
the mean of in-scope accuracy and out-of-scope recall. Plain validation accuracy would tune for the
validation split's out-of-scope share (3% in CLINC150), which says nothing of live traffic's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OBJECTIVES = ("balanced", "accuracy")


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    objective: str
    value: float
    in_scope_accuracy: float
    oos_recall: float
    accuracy: float


def apply_threshold(probabilities: np.ndarray, oos_id: int, threshold: float) -> np.ndarray:
    predictions = probabilities.argmax(axis=1)
    return np.where(probabilities.max(axis=1) < threshold, oos_id, predictions)


def tune_threshold(
    probabilities: np.ndarray, truth: np.ndarray, oos_id: int, objective: str = "balanced"
) -> ThresholdChoice:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose from {OBJECTIVES}")
    is_oos = truth == oos_id
    if not is_oos.any() or is_oos.all():
        raise ValueError("tuning needs both in-scope and out-of-scope examples")
    top, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
    # Every distinct top probability is a candidate; 0 keeps the classifier's own answers.
    candidates = np.unique(np.concatenate([[0.0], confidence]))
    best: ThresholdChoice | None = None
    for threshold in candidates:
        correct = np.where(confidence < threshold, oos_id, top) == truth
        in_scope, recall = correct[~is_oos].mean(), correct[is_oos].mean()
        value = (in_scope + recall) / 2 if objective == "balanced" else correct.mean()
        if best is None or value > best.value:
            best = ThresholdChoice(
                float(threshold),
                objective,
                float(value),
                float(in_scope),
                float(recall),
                float(correct.mean()),
            )
    assert best is not None
    return best
