"""Serving benchmark of one variant: in-process onnxruntime against the HTTP service, side by side.

Measures, in one run on one machine: test accuracy; model size; batch-1 latency of raw
``session.run`` and of tokenize + run in-process; sequential HTTP latency against a real service
process and its overhead over raw inference; time from process start to ready; the serving
process's RSS. Prints a markdown table and writes it, with the raw figures as JSON, to
``loadtests/results/``.

    python -m loadtests.serving_benchmark [--variant NAME] [--threads 1] [--requests 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from app.core.card import MODEL_FILE, TOKENIZER_FILE, read_card
from app.runtime.classifier import load_classifier
from app.runtime.session import SessionConfig
from app.settings import SHIPPED_REPOSITORY
from models.data import load_clinc150
from models.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "loadtests" / "results"


def percentiles_ms(samples: list[float]) -> dict[str, float]:
    p50, p95, p99 = np.percentile(np.array(samples) * 1000, [50, 95, 99])
    return {"p50_ms": round(p50, 3), "p95_ms": round(p95, 3), "p99_ms": round(p99, 3)}


def in_process(folder: Path, threads: int, texts: list[str]) -> dict[str, dict[str, float]]:
    card = read_card(folder)
    classifier = load_classifier(
        folder / MODEL_FILE,
        folder / TOKENIZER_FILE,
        card.max_length,
        SessionConfig(intra_op_threads=threads),
    )
    encoded = [classifier.encode([t]) for t in texts]
    for batch in encoded[:50]:
        classifier.run(batch)
    raw, full = [], []
    for text, batch in zip(texts, encoded, strict=True):
        started = time.perf_counter()
        classifier.run(batch)
        raw.append(time.perf_counter() - started)
        started = time.perf_counter()
        classifier.classify([text])
        full.append(time.perf_counter() - started)
    return {"session_run": percentiles_ms(raw), "tokenize_and_run": percentiles_ms(full)}


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_service(env: dict[str, str], url: str) -> Iterator[tuple[subprocess.Popen, float]]:
    """Start the service, wait for /readyz, yield it with its start-to-ready time, stop it."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                raise RuntimeError("the service exited during start-up")
            time.sleep(0.005)
        yield process, time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=15)


def over_http(variant: str, threads: int, texts: list[str], starts: int) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "BRUM_PORT": str(port),
        "BRUM_HOST": "127.0.0.1",
        "BRUM_INTRA_OP_THREADS": str(threads),
        "BRUM_LOG_LEVEL": "warning",
    }
    ready_times = []
    for _ in range(starts - 1):
        with running_service(env, url) as (_, ready_seconds):
            ready_times.append(ready_seconds)
    with running_service(env, url) as (process, ready_seconds):
        ready_times.append(ready_seconds)
        rss_ready = rss_bytes(process.pid)
        samples, health = [], []
        with httpx.Client(base_url=url, timeout=10) as client:
            for text in texts[:50]:
                client.post(f"/v1/models/{variant}/predict", json={"text": text})
            for text in texts:
                started = time.perf_counter()
                response = client.post(f"/v1/models/{variant}/predict", json={"text": text})
                samples.append(time.perf_counter() - started)
                response.raise_for_status()
                # The bare HTTP round trip (client included), with no inference behind it.
                started = time.perf_counter()
                client.get("/healthz").raise_for_status()
                health.append(time.perf_counter() - started)
        return {
            "http_sequential": percentiles_ms(samples),
            "http_healthz": percentiles_ms(health),
            "ready_seconds_median": round(float(np.median(ready_times)), 3),
            "ready_seconds_all": [round(t, 3) for t in ready_times],
            "rss_ready_bytes": rss_ready,
            "rss_after_load_bytes": rss_bytes(process.pid),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=SHIPPED_REPOSITORY)
    parser.add_argument("--variant", help="default: the first variant by name")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--starts", type=int, default=5, help="cold starts timed to ready")
    args = parser.parse_args(argv)

    folders = sorted(p.parent for p in args.repository.glob("*/variant.json"))
    folder = next(f for f in folders if args.variant in (None, f.name))
    card = read_card(folder)
    data = load_clinc150()
    test = data.splits["test"]
    rng = np.random.default_rng(0)
    texts = [test.texts[i] for i in rng.permutation(len(test))[: args.requests]]

    classifier = load_classifier(
        folder / MODEL_FILE,
        folder / TOKENIZER_FILE,
        card.max_length,
        SessionConfig(intra_op_threads=args.threads),
    )
    threshold = card.oos_threshold.threshold if card.oos_threshold else None
    report = evaluate(classifier, test, data.oos_id, threshold, progress=False)
    local = in_process(folder, args.threads, texts)
    remote = over_http(folder.name, args.threads, texts, args.starts)
    overhead = remote["http_sequential"]["p50_ms"] - local["session_run"]["p50_ms"]
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m loadtests.serving_benchmark " + " ".join(argv or sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "variant": folder.name,
        "threads": args.threads,
        "requests": len(texts),
        "accuracy": round(report.accuracy, 4),
        "in_scope_accuracy": round(report.in_scope_accuracy, 4),
        "oos_recall": round(report.oos_recall, 4),
        "size_bytes": (folder / MODEL_FILE).stat().st_size,
        **local,
        **remote,
        "http_overhead_p50_ms": round(overhead, 3),
    }
    table = render(result)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"serving-{folder.name}-{args.threads}t"
    stem.with_suffix(".md").write_text(table + "\n")
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {stem}.md and {stem}.json")
    return 0


def render(r: dict) -> str:
    def lat(name: str) -> str:
        return f"{r[name]['p50_ms']:.3f} / {r[name]['p95_ms']:.3f} / {r[name]['p99_ms']:.3f}"

    rows = [
        ("variant", r["variant"]),
        ("test accuracy (151 labels, oos a class)", f"{r['accuracy']:.4f}"),
        ("in-scope accuracy / oos recall", f"{r['in_scope_accuracy']:.4f} / {r['oos_recall']:.4f}"),
        ("model.onnx size", f"{r['size_bytes'] / 1e6:.1f} MB"),
        (
            f"in-process session.run, batch 1, {r['threads']} thread(s) p50/p95/p99 ms",
            lat("session_run"),
        ),
        ("in-process tokenize + run, batch 1 p50/p95/p99 ms", lat("tokenize_and_run")),
        (f"HTTP sequential, {r['requests']} requests p50/p95/p99 ms", lat("http_sequential")),
        ("HTTP overhead over raw session.run, p50", f"{r['http_overhead_p50_ms']:.3f} ms"),
        (
            "bare GET /healthz round trip, client included, p50/p95/p99 ms",
            lat("http_healthz"),
        ),
        ("process start to ready (median of starts)", f"{r['ready_seconds_median']:.3f} s"),
        (
            "RSS at ready / after the run",
            f"{r['rss_ready_bytes'] / 2**20:.0f} MiB / {r['rss_after_load_bytes'] / 2**20:.0f} MiB",
        ),
    ]
    lines = [
        f"Serving benchmark, {r['date']}, {r['machine']}",
        "",
        f"`{r['command']}`",
        "",
        "| measure | value |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
