import numpy as np
import pytest

from models.oos import apply_threshold, tune_threshold

OOS = 2


def probabilities(confidences, predicted):
    rows = []
    for confidence, label in zip(confidences, predicted, strict=True):
        row = np.full(3, (1 - confidence) / 2)
        row[label] = confidence
        rows.append(row)
    return np.array(rows)


def confident_in_scope_and_unsure_oos(seed: int, oos: int, oos_top: float):
    """300 in-scope rows the model gets right, ``oos`` out-of-scope rows it guesses on."""
    rng = np.random.default_rng(seed)
    in_scope = probabilities(rng.uniform(0.3, 1.0, 300), rng.integers(0, 2, 300))
    unsure = probabilities(rng.uniform(0.3, oos_top, oos), rng.integers(0, 2, oos))
    truth = np.concatenate([in_scope.argmax(axis=1), np.full(oos, OOS)])
    return np.vstack([in_scope, unsure]), truth


def test_low_confidence_answers_become_the_oos_label():
    probs = probabilities([0.9, 0.4, 0.6], [0, 1, 1])
    assert apply_threshold(probs, OOS, 0.5).tolist() == [0, OOS, 1]
    assert apply_threshold(probs, OOS, 0.0).tolist() == [0, 1, 1]


def test_balanced_threshold_separates_confident_in_scope_from_unsure_oos():
    # In scope: confident and right. Out of scope: the model guesses an intent, unsure.
    probs = probabilities([0.95, 0.9, 0.85, 0.5, 0.45, 0.97], [0, 1, 0, 1, 0, 1])
    truth = np.array([0, 1, 0, OOS, OOS, OOS])
    choice = tune_threshold(probs, truth, OOS, "balanced")
    assert 0.5 < choice.threshold <= 0.85
    assert choice.in_scope_accuracy == 1.0
    assert choice.oos_recall == pytest.approx(2 / 3)
    assert choice.value == pytest.approx((1 + 2 / 3) / 2)


def test_objective_changes_the_choice_when_oos_is_rare():
    probs, truth = confident_in_scope_and_unsure_oos(seed=0, oos=10, oos_top=0.7)
    balanced = tune_threshold(probs, truth, OOS, "balanced")
    accuracy = tune_threshold(probs, truth, OOS, "accuracy")
    assert balanced.oos_recall >= accuracy.oos_recall
    assert accuracy.accuracy >= balanced.accuracy


def test_tuning_needs_both_kinds_of_examples():
    probs = probabilities([0.9, 0.8], [0, 1])
    with pytest.raises(ValueError, match="both in-scope and out-of-scope"):
        tune_threshold(probs, np.array([0, 1]), OOS)
    with pytest.raises(ValueError, match="unknown objective"):
        tune_threshold(probs, np.array([0, OOS]), OOS, "f1")


def test_expected_accuracy_weighs_oos_recall_by_the_expected_share():
    probs, truth = confident_in_scope_and_unsure_oos(seed=1, oos=30, oos_top=0.8)
    rare = tune_threshold(probs, truth, OOS, "expected_accuracy", oos_share=0.05)
    common = tune_threshold(probs, truth, OOS, "expected_accuracy", oos_share=0.5)
    assert common.oos_recall > rare.oos_recall
    assert rare.in_scope_accuracy > common.in_scope_accuracy
    assert rare.oos_share == 0.05
    assert rare.value == pytest.approx(0.95 * rare.in_scope_accuracy + 0.05 * rare.oos_recall)
    # A share of one half is the balanced objective.
    assert common.threshold == tune_threshold(probs, truth, OOS, "balanced").threshold


def test_expected_accuracy_needs_a_share():
    probs = probabilities([0.9, 0.8], [0, 1])
    with pytest.raises(ValueError, match="oos_share"):
        tune_threshold(probs, np.array([0, OOS]), OOS, "expected_accuracy")
