"""Out-of-scope detection from low confidence: a threshold on the top probability.

When the classifier's top probability is below the threshold, the answer is the out-of-scope label.
The threshold is tuned on the validation split, never the test split. Objectives:

- ``balanced``: the mean of in-scope accuracy and out-of-scope recall, as if half the traffic
  were out of scope;
- ``expected_accuracy``: accuracy on traffic with a given out-of-scope share (``oos_share``),
  ``(1 - share) * in-scope accuracy + share * oos recall``: the share is what the deployment
  expects, not a property of the validation split;
- ``accuracy``: plain validation accuracy, which weighs out-of-scope by the validation split's own
  share (3% in CLINC150) and so says little about live traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OBJECTIVES = ("balanced", "expected_accuracy", "accuracy")


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    objective: str
    oos_share: float | None
    value: float
    in_scope_accuracy: float
    oos_recall: float
    accuracy: float


def apply_threshold(probabilities: np.ndarray, oos_id: int, threshold: float) -> np.ndarray:
    predictions = probabilities.argmax(axis=1)
    return np.where(probabilities.max(axis=1) < threshold, oos_id, predictions)


def objective_share(objective: str, oos_share: float | None, validation_share: float) -> float:
    """The out-of-scope weight an objective puts on oos recall."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose from {OBJECTIVES}")
    if objective == "expected_accuracy":
        if oos_share is None or not 0 < oos_share < 1:
            raise ValueError(f"expected_accuracy needs an oos_share in (0, 1), not {oos_share}")
        return oos_share
    return 0.5 if objective == "balanced" else validation_share


def tune_threshold(
    probabilities: np.ndarray,
    truth: np.ndarray,
    oos_id: int,
    objective: str = "balanced",
    oos_share: float | None = None,
) -> ThresholdChoice:
    is_oos = truth == oos_id
    if not is_oos.any() or is_oos.all():
        raise ValueError("tuning needs both in-scope and out-of-scope examples")
    share = objective_share(objective, oos_share, float(is_oos.mean()))
    top, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
    # Every distinct top probability is a candidate; 0 keeps the classifier's own answers.
    candidates = np.unique(np.concatenate([[0.0], confidence]))
    best: ThresholdChoice | None = None
    for threshold in candidates:
        correct = np.where(confidence < threshold, oos_id, top) == truth
        in_scope, recall = correct[~is_oos].mean(), correct[is_oos].mean()
        value = (1 - share) * in_scope + share * recall
        if best is None or value > best.value:
            best = ThresholdChoice(
                float(threshold),
                objective,
                oos_share if objective == "expected_accuracy" else None,
                float(value),
                float(in_scope),
                float(recall),
                float(correct.mean()),
            )
    assert best is not None
    return best
