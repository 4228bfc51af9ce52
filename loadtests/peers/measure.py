"""One server through the benchmark: start it, check it answers with the model's own label, warm
it up, run every load level with wrk, and read its process tree's CPU and memory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtests.machine import machine_cpu, own_cpu_seconds
from loadtests.peers.servers import Context, Server
from loadtests.processes import (
    free_port,
    listening_addresses,
    only_loopback,
    running_service,
    tree_cpu_seconds,
    tree_rss_bytes,
)
from loadtests.wrk import run_wrk


@dataclass(frozen=True)
class Level:
    connections: int
    texts: int  # per request

    @property
    def key(self) -> str:
        return f"{self.connections}x{self.texts}"

    @classmethod
    def parse(cls, text: str) -> Level:
        connections, _, texts = text.partition("x")
        return cls(int(connections), int(texts or 1))


def request_bodies(server: Server, texts: list[str], per_request: int) -> list[dict]:
    groups = range(0, len(texts) - per_request + 1, per_request)
    return [server.body(texts[start : start + per_request]) for start in groups]


def measure(
    server: Server,
    ctx: Context,
    texts: list[str],
    reference: tuple[str, str],
    levels: list[Level],
    seconds: float,
    warmup: float,
) -> dict:
    """Figures of one server; ``reference`` is a (text, label the model gives it in-process)."""
    url = f"http://127.0.0.1:{ctx.port}"
    launch = server.launch(ctx)
    log = ctx.workdir / f"{server.name}.log"
    with running_service(
        launch.env,
        url,
        launch.command,
        launch.ready_path,
        ctx.python,
        log,
        preexec_fn=ctx.enter,
    ) as (process, ready_seconds):
        pid = process.pid
        addresses = listening_addresses(pid)
        if not only_loopback(addresses):
            raise RuntimeError(f"listens beyond loopback: {sorted(addresses)}")
        result = {
            "settings": ctx.describe(server),
            "ready_seconds": round(ready_seconds, 3),
            "rss_ready_bytes": tree_rss_bytes(pid),
            "listening": sorted(addresses),
        }
        endpoint = url + server.path(ctx.variant)
        text, expected = reference
        answer = httpx.post(endpoint, json=server.body([text]), timeout=30)
        answer.raise_for_status()
        label = server.labels(answer.json())[0]
        result["verified"] = {"text": text, "expected": expected, "label": label}
        result["verified"]["match"] = label == expected
        print(f"  ready in {ready_seconds:.2f} s; {text!r} -> {label!r} (expected {expected!r})")
        if not result["verified"]["match"]:
            raise RuntimeError(f"answers {label!r} where the model says {expected!r}")
        bodies = request_bodies(server, texts, 1)
        run_wrk(endpoint, bodies, 8, warmup, threads=2, cpus=ctx.load_cpus)
        result["levels"] = {}
        metrics_url = url + "/metrics" if server.name.startswith("brum") else None
        for level in levels:
            result["levels"][level.key] = run_level(
                server, pid, endpoint, texts, level, seconds, ctx.load_cpus, metrics_url
            )
        result["rss_after_bytes"] = tree_rss_bytes(pid)
        if server.name == "brum":
            result["chosen"] = brum_choices(url)
            print(f"  brum chose: {result['chosen']}")
    return result


def brum_choices(url: str) -> dict:
    """What brum measured and chose at start-up, from its /metrics: the run is read with it."""
    chosen: dict = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for sample in family.samples:
            if sample.name == "brum_inference_plan_info":
                chosen["plan"] = sample.labels
            elif sample.name == "brum_batch_size_limit":
                chosen["max_batch_size"] = int(sample.value)
            elif sample.name == "brum_batch_cost_seconds":
                chosen.setdefault("batch_cost_ms", {})[sample.labels["part"]] = round(
                    sample.value * 1000, 4
                )
            elif sample.name == "brum_inline_session_threads":
                chosen["inline_session_threads"] = int(sample.value)
    return chosen


def lone_session_threads(metrics_url: str) -> list[int]:
    """The threads of the session each brum process runs lone texts on now, by pid: a lone
    route follows whichever of its sessions it timed faster, so one start's one-connection
    figure depends on which that was."""
    by_pid: dict[str, int] = {}
    for family in text_string_to_metric_families(httpx.get(metrics_url).text):
        for sample in family.samples:
            if sample.name == "brum_inline_session_threads":
                by_pid[sample.labels.get("pid", "")] = int(sample.value)
    return [by_pid[pid] for pid in sorted(by_pid)]


def batches_run(metrics_url: str) -> tuple[float, float]:
    """brum's texts and batches run so far, over every variant, from its /metrics."""
    texts = batches = 0.0
    for family in text_string_to_metric_families(httpx.get(metrics_url).text):
        for sample in family.samples:
            if sample.name == "brum_batch_size_sum":
                texts += sample.value
            elif sample.name == "brum_batch_size_count":
                batches += sample.value
    return texts, batches


def run_level(
    server: Server,
    pid: int,
    endpoint: str,
    texts: list[str],
    level: Level,
    seconds: float,
    load_cpus: frozenset[int] | None = None,
    metrics_url: str | None = None,
) -> dict:
    """wrk at one level; with ``metrics_url`` (brum's), also how many texts a batch held."""
    bodies = request_bodies(server, texts, level.texts)
    before = batches_run(metrics_url) if metrics_url else None
    cpu, machine, own = tree_cpu_seconds(pid), machine_cpu(), own_cpu_seconds()
    threads = 1 if level.connections == 1 else 2
    run = run_wrk(endpoint, bodies, level.connections, seconds, threads=threads, cpus=load_cpus)
    served = tree_cpu_seconds(pid) - cpu
    spent, own = machine_cpu() - machine, own_cpu_seconds() - own
    run["texts_per_request"] = level.texts
    run["texts_per_second"] = round(run["requests_per_second"] * level.texts, 1)
    run["server_cpu_cores"] = round(served / run["seconds"], 2)
    run["load_cpu_cores"] = round(own / run["seconds"], 2)  # wrk, and this process
    # Everything else on the machine: another job running beside the level skews its figures.
    run["other_cpu_cores"] = round(max(0.0, spent.busy - served - own) / run["seconds"], 2)
    run["stolen_cpu_cores"] = round(spent.stolen / run["seconds"], 2)
    batching = ""
    if metrics_url is not None and before is not None:
        after = batches_run(metrics_url)
        batches = after[1] - before[1]
        run["texts_per_batch"] = round((after[0] - before[0]) / batches, 2) if batches else 0.0
        batching = f"  texts a batch {run['texts_per_batch']:.2f}"
        if level.connections == 1:
            run["lone_session_threads"] = lone_session_threads(metrics_url)
            batching += f"  lone texts on {'+'.join(map(str, run['lone_session_threads']))}"
    print(
        f"  {level.key:>5}: {run['requests_per_second']:8.1f} req/s {run['texts_per_second']:8.1f}"
        f" texts/s  p50 {run['p50_ms']:7.2f}  p99 {run['p99_ms']:7.2f} ms  errors"
        f" {run['errors']}  CPU {run['server_cpu_cores']:.2f}{batching}"
        f"  others' CPU {run['other_cpu_cores']:.2f}",
        flush=True,
    )
    return run


def context(
    folder: Path,
    workdir: Path,
    python: str,
    cores: int,
    brum_env: dict,
    peer_workers: int,
    load_cpus: frozenset[int] | None = None,
    enter: Callable[[], None] | None = None,
) -> Context:
    return Context(
        folder, free_port(), workdir, python, cores, brum_env, peer_workers, load_cpus, enter
    )
