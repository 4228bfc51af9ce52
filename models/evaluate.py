"""Offline evaluation of an ONNX variant through the same runtime the service uses."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from app.core.card import LatencyStats
from app.core.prediction import softmax
from app.runtime.classifier import OnnxClassifier
from app.runtime.cores import available_cores
from models.data import Split
from models.oos import apply_threshold


@dataclass(frozen=True)
class AccuracyReport:
    examples: int
    accuracy: float
    in_scope_accuracy: float | None
    oos_recall: float | None
    macro_f1: float
    # F1 of each label id; None for a label neither true nor predicted here.
    label_f1: tuple[float | None, ...] = ()


@dataclass(frozen=True)
class ServedAccuracy:
    """Accuracy as served one text at a time, and as a busy server groups texts into batches.

    Under dynamic int8, onnxruntime picks each activation scale from the whole batch, padding
    included, so an answer can change with the other texts beside it. One text at a time is the
    answer that depends on nothing but the text, hence the headline figure.
    """

    alone: AccuracyReport
    alone_without_threshold: AccuracyReport
    batched: AccuracyReport
    batch_size: int
    changed_by_batching: float
    # Whether each text's answer, served alone, is right: what a paired comparison needs.
    right_alone: tuple[bool, ...]


def predict_probabilities(
    classifier: OnnxClassifier, texts: list[str], batch_size: int = 64, progress: bool = True
) -> np.ndarray:
    """Softmax of every text, in length-sorted batches of ``batch_size``. The batches run side by
    side, one per core: an answer depends only on its batch, so the result is a single loop's,
    and a session of one thread (as accuracy is measured) no longer leaves the other cores idle."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if not batches:
        raise ValueError("no texts")

    def run(index: list[int]) -> np.ndarray:
        logits = classifier.classify([texts[i] for i in index]).logits
        return softmax(logits.astype(np.float32))

    with ThreadPoolExecutor(available_cores()) as pool:
        answers = pool.map(run, batches)
        done = tqdm(answers, total=len(batches), desc="predict", disable=not progress, leave=False)
        found = list(done)
    probabilities = np.empty((len(texts), found[0].shape[1]), dtype=np.float32)
    for index, batch in zip(batches, found, strict=True):
        probabilities[index] = batch
    return probabilities


def predict_labels(
    classifier: OnnxClassifier, texts: list[str], batch_size: int = 64, progress: bool = True
) -> np.ndarray:
    return predict_probabilities(classifier, texts, batch_size, progress).argmax(axis=1)


def score(predictions: np.ndarray, truth: np.ndarray, oos_id: int | None) -> AccuracyReport:
    """Accuracy over all labels (``oos`` counted as a class), plus the CLINC150 paper's metrics."""
    correct = predictions == truth
    in_scope_accuracy = oos_recall = None
    if oos_id is not None:
        is_oos = truth == oos_id
        in_scope_accuracy = float(correct[~is_oos].mean()) if (~is_oos).any() else None
        oos_recall = float(correct[is_oos].mean()) if is_oos.any() else None
    per_label = label_f1(predictions, truth)
    return AccuracyReport(
        len(truth),
        float(correct.mean()),
        in_scope_accuracy,
        oos_recall,
        macro_f1(predictions, truth),
        tuple(None if np.isnan(f1) else float(f1) for f1 in per_label),
    )


def label_f1(predictions: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """F1 of each label id up to the largest in either array; NaN for a label neither
    predicted nor true."""
    size = int(max(predictions.max(), truth.max())) + 1
    hits = np.bincount(truth[predictions == truth], minlength=size)
    # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (predicted + true)
    either = np.bincount(predictions, minlength=size) + np.bincount(truth, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(either > 0, 2 * hits / either, np.nan)


def macro_f1(predictions: np.ndarray, truth: np.ndarray) -> float:
    """F1 averaged over the labels in either array, each label counting the same: what accuracy
    hides when a few labels hold most texts. A label never predicted nor true is left out, as
    scikit-learn's ``f1_score(average="macro")`` does."""
    return float(np.nanmean(label_f1(predictions, truth)))


def round_metric(value: float | None) -> float | None:
    """A rate as cards and reports store it: four decimals, ``None`` kept."""
    return None if value is None else round(value, 4)


def decide(probabilities: np.ndarray, oos_id: int | None, threshold: float | None) -> np.ndarray:
    """The served answers: argmax, and ``oos_id`` below ``threshold`` when there is one."""
    if threshold is not None and oos_id is not None:
        return apply_threshold(probabilities, oos_id, threshold)
    return probabilities.argmax(axis=1)


def served_accuracy(
    classifier: OnnxClassifier,
    split: Split,
    oos_id: int | None,
    threshold: float | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> ServedAccuracy:
    """Score ``split`` one text at a time and in length-sorted batches of ``batch_size``."""
    truth = np.asarray(split.label_ids)
    alone = predict_probabilities(classifier, split.texts, 1, progress)
    batched = predict_probabilities(classifier, split.texts, batch_size, progress)
    answers_alone = decide(alone, oos_id, threshold)
    answers_batched = decide(batched, oos_id, threshold)
    return ServedAccuracy(
        alone=score(answers_alone, truth, oos_id),
        alone_without_threshold=score(alone.argmax(axis=1), truth, oos_id),
        batched=score(answers_batched, truth, oos_id),
        batch_size=batch_size,
        changed_by_batching=float((answers_alone != answers_batched).mean()),
        right_alone=tuple(bool(right) for right in answers_alone == truth),
    )


def mcnemar_p(wins: int, losses: int) -> float:
    """Two-sided exact McNemar test of two classifiers on the same texts: ``wins`` texts only
    the first answers right, ``losses`` only the second. The chance of a split at least this
    uneven if either were as likely to be the one right."""
    discordant = wins + losses
    tail = sum(math.comb(discordant, k) for k in range(min(wins, losses) + 1))
    return min(1.0, 2 * tail / 2**discordant)


def latency_batch1(classifier: OnnxClassifier, texts: list[str], warmup: int = 20) -> LatencyStats:
    """Batch-1 latency (tokenize + run) over many different utterances, not one fixed query."""
    for text in texts[:warmup]:
        classifier.classify([text])
    samples = []
    for text in texts:
        started = time.perf_counter()
        classifier.classify([text])
        samples.append(time.perf_counter() - started)
    p50, p95, p99 = np.percentile(np.array(samples) * 1000, [50, 95, 99])
    return LatencyStats(p50_ms=round(p50, 4), p95_ms=round(p95, 4), p99_ms=round(p99, 4))


def throughput(
    classifier: OnnxClassifier,
    texts: list[str],
    batch_size: int = 32,
    seconds: float = 8.0,
    min_batches: int = 8,
) -> float:
    """Texts per second at ``batch_size``, in the order given (unsorted, as traffic arrives), over
    ``texts`` or ``seconds``, whichever ends first, and at least ``min_batches``. A slow model's
    figure then rests on a few batches: the fp32 teacher's came within 6-10% of what 2,048
    shuffled test texts give, in 9-17 s instead of 56-108 (BENCHMARKS.md, 2026-12-05)."""
    classifier.classify(texts[:batch_size])
    started = time.perf_counter()
    done = 0
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        classifier.classify(batch)
        done += len(batch)
        enough = start >= (min_batches - 1) * batch_size
        if enough and time.perf_counter() - started >= seconds:
            break
    return done / (time.perf_counter() - started)
