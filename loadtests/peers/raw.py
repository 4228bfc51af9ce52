"""The raw onnxruntime bracket, measured before the first server and after the last: what the
same cores do in-process with no server at all, in the two configurations that use them all.

It runs in a process of its own, started inside the servers' limits as they are: onnxruntime
loaded by a process confined to one CPU runs int8 matrix products on AVX-512 VNNI where it would
use AMX, about a fifth slower (BENCHMARKS.md, 2026-12-07), so a bracket measured by a process
that loaded it on every core and was pinned afterwards is not what the servers can do.

    python -m loadtests.peers.raw FOLDER CORES TEXTS_JSON   (prints the bracket as JSON)

run by ``raw_bracket`` after onnxruntime is loaded as brum loads it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from app.core.card import MODEL_FILE, TOKENIZER_FILE, read_card
from app.runtime.classifier import load_classifier
from app.runtime.session import SessionConfig
from loadtests.processes import ROOT

# The bracket's process: onnxruntime loaded as brum loads it (app/runtime/amx.py) before this
# module imports it, so that on one CPU held by affinity alone raw may use AMX as brum does.
CHILD = """
import runpy
from app.runtime.amx import load_onnxruntime
load_onnxruntime()
runpy.run_module("loadtests.peers.raw", run_name="__main__", alter_sys=True)
"""

# A server at one connection idles about this long between two runs (the HTTP round trip), and a
# run after a pause is slower than one back to back (BENCHMARKS.md, "The lone request").
PAUSE_SECONDS = 0.0005


def percentiles_ms(samples: list[float]) -> dict[str, float]:
    p50, p95, p99 = np.percentile(np.array(samples) * 1000, [50, 95, 99])
    return {"p50_ms": round(p50, 3), "p95_ms": round(p95, 3), "p99_ms": round(p99, 3)}


def in_process(folder: Path, threads: int, workers: int, texts: list[str]) -> dict:
    """Batch-32 tokenize + run throughput with ``workers`` threads each running whole batches
    (as the service does with BRUM_INFERENCE_WORKERS), and batch-1 ``session.run`` latency."""
    card = read_card(folder)
    classifier = load_classifier(
        folder / MODEL_FILE,
        folder / TOKENIZER_FILE,
        card.max_length,
        SessionConfig(intra_op_threads=threads),
    )
    batches = [texts[start : start + 32] for start in range(0, len(texts), 32)]
    with ThreadPoolExecutor(workers) as pool:
        started = time.perf_counter()
        list(pool.map(classifier.classify, batches))
        batched = len(texts) / (time.perf_counter() - started)
    encoded = [classifier.encode([t]) for t in texts]
    for batch in encoded[:50]:
        classifier.run(batch)
    raw, paused = [], []
    for batch in encoded:
        started = time.perf_counter()
        classifier.run(batch)
        raw.append(time.perf_counter() - started)
    for batch in encoded:
        time.sleep(PAUSE_SECONDS)
        started = time.perf_counter()
        classifier.run(batch)
        paused.append(time.perf_counter() - started)
    return {
        "session_run": percentiles_ms(raw),
        "session_run_after_pause": percentiles_ms(paused),
        "raw_batch32_texts_per_second": round(batched, 1),
    }


def raw_bracket(
    folder: Path, texts: list[str], cores: int, enter: Callable[[], None] | None = None
) -> dict:
    """The bracket, measured by a new process that runs ``enter`` first (joins the servers'
    cgroup, or takes their CPU affinity)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as listed:
        json.dump(texts, listed)
        listed.flush()
        command = [sys.executable, "-c", CHILD, str(folder), str(cores), listed.name]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, preexec_fn=enter)
    if done.returncode != 0:
        raise RuntimeError(f"the raw bracket failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def measure_bracket(folder: Path, texts: list[str], cores: int) -> dict:
    """Batch-32 tokenize + run throughput (texts/s) and batch-1 ``session.run`` latency (back to
    back, and after a pause as long as an HTTP round trip), with
    one-thread sessions running one batch per core side by side, and with one session of
    ``cores`` intra-op threads; ``raw_batch32_texts_per_second`` is the better of the two; and
    the CPUs it ran on."""
    side_by_side = in_process(folder, threads=1, workers=cores, texts=texts)
    one_session = in_process(folder, threads=cores, workers=1, texts=texts)
    return {
        "cpus": sorted(os.sched_getaffinity(0)),
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


if __name__ == "__main__":
    folder, cores, listed = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    print(json.dumps(measure_bracket(folder, json.loads(listed.read_text()), cores)))
