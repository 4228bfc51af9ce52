"""The raw onnxruntime bracket, measured before the first server and after the last: what the
same cores do in-process with no server at all, in the two configurations that use them all."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.core.card import MODEL_FILE, TOKENIZER_FILE, read_card
from app.runtime.classifier import load_classifier
from app.runtime.session import SessionConfig
from loadtests.serving_benchmark import in_process


def raw_bracket(folder: Path, texts: list[str], cores: int) -> dict:
    """Batch-32 tokenize + run throughput (texts/s) and batch-1 ``session.run`` latency (back to
    back, and after a pause as long as an HTTP round trip), with
    one-thread sessions running one batch per core side by side, and with one session of
    ``cores`` intra-op threads; ``raw_batch32_texts_per_second`` is the better of the two."""
    side_by_side = in_process(folder, threads=1, workers=cores, texts=texts)
    one_session = in_process(folder, threads=cores, workers=1, texts=texts)
    return {
        "one_thread_sessions_side_by_side": side_by_side,
        "one_session_all_cores": one_session,
        "raw_batch32_texts_per_second": max(
            side_by_side["raw_batch32_texts_per_second"],
            one_session["raw_batch32_texts_per_second"],
        ),
        "session_run_p50_ms_1_thread": side_by_side["session_run"]["p50_ms"],
        "session_run_p50_ms_all_cores": one_session["session_run"]["p50_ms"],
        "session_run_after_pause_p50_ms_1_thread": side_by_side["session_run_after_pause"][
            "p50_ms"
        ],
        "session_run_after_pause_p50_ms_all_cores": one_session["session_run_after_pause"][
            "p50_ms"
        ],
    }


def reference_label(folder: Path, text: str) -> str:
    """The label the variant gives ``text`` in-process, served alone."""
    card = read_card(folder)
    classifier = load_classifier(
        folder / MODEL_FILE, folder / TOKENIZER_FILE, card.max_length, SessionConfig()
    )
    logits = classifier.classify([text]).logits[0]
    return card.labels[int(np.argmax(logits))]
