"""Serving benchmark of one variant: the service against raw in-process onnxruntime and against
a naive FastAPI + transformers ``pipeline`` server, side by side in one run.

Measures on one machine, the same variant and onnxruntime threads throughout:
- raw in-process: batch-1 ``session.run`` latency; tokenize + run throughput at batch 32;
- the service at low load (one connection): p50/p95/p99 and the p50 overhead over raw batch-1;
- the service saturated (64 connections, one text per request; 16 connections, 8 texts each):
  throughput against raw, p50/p95/p99, server CPU and RSS;
- the naive server on the fp32 PyTorch teacher (if ``runs/`` holds it), saturated the same way.
Load comes from wrk (C, light on the shared cores). Prints a markdown table and writes it, with
the raw figures as JSON, to ``loadtests/results/``.

    python -m loadtests.serving_benchmark [--variant NAME] [--threads 1] [--workers 0]
        [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from app.core.card import MODEL_FILE, TOKENIZER_FILE, read_card
from app.core.experiment import EXPERIMENT_FILE, load_experiment
from app.runtime.classifier import load_classifier
from app.runtime.cores import available_cores
from app.runtime.session import SessionConfig
from app.settings import SHIPPED_REPOSITORY
from loadtests.processes import cpu_seconds, free_port, rss_bytes, running_service
from loadtests.wrk import run_wrk
from models.sources.clinc150 import load_clinc150

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "loadtests" / "results"


# A server at one connection idles about this long between two runs (the HTTP round trip), and a
# run after a pause is slower than one back to back (BENCHMARKS.md, "The lone request").
PAUSE_SECONDS = 0.0005


def percentiles_ms(samples: list[float]) -> dict[str, float]:
    p50, p95, p99 = np.percentile(np.array(samples) * 1000, [50, 95, 99])
    return {"p50_ms": round(p50, 3), "p95_ms": round(p95, 3), "p99_ms": round(p99, 3)}


def in_process(folder: Path, threads: int, workers: int, texts: list[str]) -> dict:
    """Raw figures; batch-32 throughput with ``workers`` threads each running whole batches, as
    the service does with BRUM_INFERENCE_WORKERS."""
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
    raw, full, paused = [], [], []
    for text, batch in zip(texts, encoded, strict=True):
        started = time.perf_counter()
        classifier.run(batch)
        raw.append(time.perf_counter() - started)
        started = time.perf_counter()
        classifier.classify([text])
        full.append(time.perf_counter() - started)
    for batch in encoded:
        time.sleep(PAUSE_SECONDS)
        started = time.perf_counter()
        classifier.run(batch)
        paused.append(time.perf_counter() - started)
    return {
        "session_run": percentiles_ms(raw),
        "session_run_after_pause": percentiles_ms(paused),
        "tokenize_and_run": percentiles_ms(full),
        "raw_batch32_texts_per_second": round(batched, 1),
    }


def service_env(port: int, threads: int, workers: int) -> dict[str, str]:
    return {
        **os.environ,
        "BRUM_PORT": str(port),
        "BRUM_HOST": "127.0.0.1",
        "BRUM_INTRA_OP_THREADS": str(threads),
        "BRUM_INFERENCE_WORKERS": str(workers),
        "BRUM_LOG_LEVEL": "warning",
    }


def saturate(url: str, pid: int, bodies: list[dict], connections: int, seconds: float) -> dict:
    cpu = cpu_seconds(pid)
    result = run_wrk(url, bodies, connections, seconds, threads=2)
    texts = len(bodies[0].get("texts", [None]))
    result["texts_per_second"] = round(result["requests_per_second"] * texts, 1)
    result["server_cpu_cores"] = round((cpu_seconds(pid) - cpu) / result["seconds"], 2)
    return result


def over_http(variant: str, threads: int, workers: int, texts: list[str], seconds: float) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    single = [{"text": t} for t in texts]
    eights = [{"texts": texts[i : i + 8]} for i in range(0, len(texts) - 7, 8)]
    with running_service(service_env(port, threads, workers), url) as (process, ready_seconds):
        rss_ready = rss_bytes(process.pid)
        endpoint = f"{url}/v1/models/{variant}/predict"
        run_wrk(endpoint, single, connections=1, seconds=2)  # warm-up
        low_load = run_wrk(endpoint, single, connections=1, seconds=seconds)
        before = batch_size_totals(url, variant)
        saturated = saturate(endpoint, process.pid, single, 64, seconds)
        after = batch_size_totals(url, variant)
        result = {
            "ready_seconds": round(ready_seconds, 3),
            "low_load": low_load,
            "saturated_1_text": saturated,
            "saturated_1_text_mean_batch_size": round(
                (after[0] - before[0]) / (after[1] - before[1]), 2
            ),
            "saturated_8_texts": saturate(endpoint, process.pid, eights, 16, seconds),
            "rss_ready_bytes": rss_ready,
            "rss_after_load_bytes": rss_bytes(process.pid),
        }
    return result


def batch_size_totals(url: str, variant: str) -> tuple[float, float]:
    """(texts, batches) the variant has run so far, from its brum_batch_size histogram."""
    values = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        for name in ("brum_batch_size_sum", "brum_batch_size_count"):
            if line.startswith(f'{name}{{variant="{variant}"}}'):
                values[name] = float(line.split()[-1])
    return values["brum_batch_size_sum"], values["brum_batch_size_count"]


def naive_baseline(model: Path, texts: list[str], seconds: float) -> dict | None:
    """The fp32 PyTorch teacher behind FastAPI + pipeline, saturated like the service."""
    if not (model / "config.json").is_file():
        return None
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "NAIVE_MODEL": str(model)}
    command = (
        "-m",
        "uvicorn",
        "loadtests.naive_server:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
    )
    with running_service(env, url, command, "/healthz") as (process, _):
        bodies = [{"text": t} for t in texts]
        run_wrk(f"{url}/predict", bodies, connections=1, seconds=2)
        # Its best of a few concurrency levels: more connections oversubscribe torch's threads.
        runs = [saturate(f"{url}/predict", process.pid, bodies, c, seconds) for c in (2, 8)]
        return max(runs, key=lambda run: run["texts_per_second"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=SHIPPED_REPOSITORY)
    parser.add_argument("--variant", help="default: the experiment's default, else first by name")
    parser.add_argument(
        "--threads", type=int, default=1, help="onnxruntime intra-op threads (0: all cores)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="batches run side by side (more than 1 needs --threads 1); 0: as the service, "
        "one per core with one-thread sessions, else 1",
    )
    parser.add_argument("--texts", type=int, default=1000, help="test utterances in rotation")
    parser.add_argument("--seconds", type=float, default=15, help="length of each load phase")
    parser.add_argument(
        "--teacher",
        type=Path,
        default=ROOT / "runs/clinc150/teacher/finetune",
        help="fine-tuned PyTorch teacher for the naive baseline (skipped if absent)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="folder for the tables")
    args = parser.parse_args(argv)
    args.workers = args.workers or (available_cores() if args.threads == 1 else 1)

    folders = sorted(p.parent for p in args.repository.glob("*/variant.json"))
    experiment = args.repository / EXPERIMENT_FILE
    wanted = args.variant or (load_experiment(experiment).default if experiment.is_file() else None)
    folder = next(f for f in folders if wanted in (None, f.name))
    test = load_clinc150().splits["test"]
    rng = np.random.default_rng(0)
    texts = [test.texts[i] for i in rng.permutation(len(test))[: args.texts]]

    local = in_process(folder, args.threads, args.workers, texts)
    remote = over_http(folder.name, args.threads, args.workers, texts, args.seconds)
    naive = naive_baseline(args.teacher, texts, args.seconds)
    raw = local["raw_batch32_texts_per_second"]
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m loadtests.serving_benchmark " + " ".join(argv or sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "variant": folder.name,
        "threads": args.threads or available_cores(),
        "workers": args.workers,
        "size_bytes": (folder / MODEL_FILE).stat().st_size,
        **local,
        **remote,
        "naive": naive,
        "overhead_p50_ms": round(remote["low_load"]["p50_ms"] - local["session_run"]["p50_ms"], 3),
        "overhead_over_tokenize_and_run_p50_ms": round(
            remote["low_load"]["p50_ms"] - local["tokenize_and_run"]["p50_ms"], 3
        ),
        "saturated_over_raw_1_text": round(remote["saturated_1_text"]["texts_per_second"] / raw, 3),
        "saturated_over_raw_8_texts": round(
            remote["saturated_8_texts"]["texts_per_second"] / raw, 3
        ),
        "over_naive": round(
            remote["saturated_1_text"]["texts_per_second"] / naive["texts_per_second"], 1
        )
        if naive
        else None,
    }
    table = render(result)
    print(table)
    args.output.mkdir(parents=True, exist_ok=True)
    side_by_side = f"x{args.workers}" if args.workers > 1 else ""
    stem = args.output / f"serving-{folder.name}-{result['threads']}t{side_by_side}"
    stem.with_suffix(".md").write_text(table + "\n")
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {stem}.md and {stem}.json")
    return 0


def render(r: dict) -> str:
    def lat(run: dict) -> str:
        return f"{run['p50_ms']:.3f} / {run['p95_ms']:.3f} / {run['p99_ms']:.3f}"

    def load(run: dict) -> str:
        return (
            f"{run['texts_per_second']:.0f} texts/s, p50/p95/p99 {lat(run)} ms, "
            f"server CPU {run['server_cpu_cores']:.2f} cores, errors {run['errors']}"
        )

    low, one, eight, naive = (
        r["low_load"],
        r["saturated_1_text"],
        r["saturated_8_texts"],
        r["naive"],
    )
    rows = [
        (
            "variant, onnxruntime threads x batches side by side",
            f"{r['variant']}, {r['threads']} x {r.get('workers', 1)}",
        ),
        ("raw session.run, batch 1, p50/p95/p99", f"{lat(r['session_run'])} ms"),
        (
            "raw tokenize + run, batch 32 (in-process, same threads x batches)",
            f"{r['raw_batch32_texts_per_second']:.0f} texts/s",
        ),
        ("service, low load (1 connection), p50/p95/p99", f"{lat(low)} ms"),
        ("raw tokenize + run, batch 1, p50/p95/p99", f"{lat(r['tokenize_and_run'])} ms"),
        (
            "**overhead at low load over raw session.run, p50 (target <= 1 ms)**",
            f"**{r['overhead_p50_ms']:.3f} ms**",
        ),
        (
            "overhead at low load over raw tokenize + run, p50",
            f"{r['overhead_over_tokenize_and_run_p50_ms']:.3f} ms",
        ),
        ("service saturated, 64 connections x 1 text", load(one)),
        ("service saturated, 16 connections x 8 texts", load(eight)),
        (
            "mean batch size, saturated with 1 text per request",
            f"{r['saturated_1_text_mean_batch_size']}",
        ),
        (
            "**saturated / raw, 1 text per request (target >= 0.85)**",
            f"**{r['saturated_over_raw_1_text']:.2f}**",
        ),
        ("saturated / raw, 8 texts per request", f"{r['saturated_over_raw_8_texts']:.2f}"),
        (
            "naive FastAPI + pipeline, fp32 teacher, best of 2 and 8 connections",
            load(naive) if naive else "skipped (no teacher in runs/)",
        ),
        (
            "**service / naive throughput (target >= 30x)**",
            f"**{r['over_naive']}x**" if naive else "n/a",
        ),
        ("process start to ready", f"{r['ready_seconds']:.3f} s"),
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
