"""N replicas, measured: three brum processes behind nginx with Redis, on the shipped repository.

    python -m loadtests.replicas [--before ../brum-before] [--seconds 10]

1. The prediction path, one replica, wrk at 32 connections, alternated over rounds: brum with
   no shared store (one replica, as before), brum with a feedback key and Redis (every answer
   signed and written behind), and optionally brum from another checkout (``--before``).
2. Three replicas behind nginx: the share of feedback calls counted (predictions, one replica
   restarted, then feedback through the balancer; with the shared parts and without), the time
   for an admin change to reach every replica, and the non-2xx answers while a variant is
   replaced and while the three replicas restart one by one, under load.

Writes loadtests/results/replicas/replicas.{json,md}. Needs nginx-light, redis-server and wrk.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from app.settings import SHIPPED_REPOSITORY
from loadtests.cluster import Cluster, Load, close_cluster, start_cluster, start_redis
from loadtests.processes import ROOT, cpu_model, free_port, running_service, stop
from loadtests.wrk import run_wrk
from models.sources.clinc150 import load_clinc150

RESULTS = ROOT / "loadtests" / "results" / "replicas"
TOKEN = "replicas-benchmark"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KEY = "replicas-benchmark-feedback-key"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests.replicas", description=__doc__)
    parser.add_argument("--repository", type=Path, default=SHIPPED_REPOSITORY)
    parser.add_argument("--before", type=Path, help="another brum checkout to measure beside")
    parser.add_argument("--seconds", type=float, default=10, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--feedback", type=int, default=300, help="predictions judged")
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def single_replica(args, texts: list[str], work: Path) -> dict:
    redis, redis_url = start_redis(work)
    setups = {
        "brum, no shared store": ({}, ROOT),
        "brum, feedback key + Redis": (
            {"BRUM_FEEDBACK_KEY": KEY, "BRUM_REDIS_URL": redis_url},
            ROOT,
        ),
    }
    if args.before:
        setups[f"brum at {args.before.name}"] = ({}, args.before.resolve())
    bodies = [{"text": t} for t in texts]
    runs: dict[str, list[dict]] = {name: [] for name in setups}
    names = list(setups)
    try:
        for round_ in range(args.rounds):
            # Each setup takes each place in the order in turn: the machine drifts within a round.
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                env, checkout = setups[name]
                port = free_port()
                full = {
                    **os.environ,
                    "BRUM_MODEL_REPOSITORY": str(args.repository),
                    "BRUM_HOST": "127.0.0.1",
                    "BRUM_PORT": str(port),
                    **env,
                }
                url = f"http://127.0.0.1:{port}"
                with running_service(full, url, cwd=checkout):
                    run_wrk(url + "/v1/predict", bodies, 32, 2)  # warm
                    runs[name].append(run_wrk(url + "/v1/predict", bodies, 32, args.seconds))
                print(f"  {name}: {runs[name][-1]['requests_per_second']} req/s", flush=True)
    finally:
        stop(redis)
    return {
        name: {
            "requests_per_second": [r["requests_per_second"] for r in rs],
            "median_requests_per_second": statistics.median(r["requests_per_second"] for r in rs),
            "p50_ms": statistics.median(r["p50_ms"] for r in rs),
            "p99_ms": statistics.median(r["p99_ms"] for r in rs),
            "errors": sum(r["errors"] for r in rs),
        }
        for name, rs in runs.items()
    }


def feedback_totals(cluster: Cluster) -> float:
    total = 0.0
    for replica in cluster.replicas:
        for line in httpx.get(replica.url + "/metrics", timeout=10).text.splitlines():
            if line.startswith("brum_feedback_total{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def feedback_share(cluster: Cluster, texts: list[str], shared: bool) -> dict:
    """Predictions through the balancer, one replica restarted, then each judged through it, in
    another order (truths arrive as they are found, not in the order of the predictions)."""
    with cluster.client() as client:
        answers = [
            client.post("/v1/predict", json={"text": t}, headers={"X-User-ID": f"u{i}"}).json()
            for i, t in enumerate(texts)
        ]
        cluster.replicas[1].terminate()
        cluster.replicas[1].start()
        before = feedback_totals(cluster)
        statuses: Counter = Counter()
        random.Random(0).shuffle(answers)
        for i, answer in enumerate(answers):
            label = answer["predictions"][0]["label"]
            body = (
                {"token": answer["feedback_token"], "label": label}
                if shared and i % 2
                else {"request_id": answer["request_id"], "label": label}
            )
            statuses[client.post("/v1/feedback", json=body).status_code] += 1
        counted = feedback_totals(cluster) - before
    return {
        "sent": len(answers),
        "counted": int(counted),
        "share": round(counted / len(answers), 3),
        "statuses": dict(statuses),
    }


def propagation(cluster: Cluster, changes: int = 5) -> dict:
    """Seconds from an admin PUT through the balancer until every replica runs it."""
    seconds = []
    with cluster.client() as client:
        original = client.get("/admin/experiment", headers=AUTH).json()
        for change in range(changes):
            experiment = {**original, "name": f"{original['name']}-{change}"}
            started = time.monotonic()
            assert client.put("/admin/experiment", json=experiment, headers=AUTH).status_code == 200
            while not all(
                httpx.get(r.url + "/admin/experiment", headers=AUTH).json()["name"]
                == experiment["name"]
                for r in cluster.replicas
            ):
                time.sleep(0.01)
            seconds.append(time.monotonic() - started)
        client.put("/admin/experiment", json=original, headers=AUTH)
    return {
        "changes": changes,
        "median_s": round(statistics.median(seconds), 3),
        "max_s": round(max(seconds), 3),
    }


def replace_under_load(cluster: Cluster, repository: Path, texts: list[str]) -> dict:
    """The default variant's files replaced by another variant's (a new version under the same
    name), then one rescan through the balancer, while load runs against that variant."""
    names = sorted(p.parent.name for p in repository.glob("*/variant.json"))
    target, source = names[0], names[-1]
    staged = repository.parent / "staged" / target
    shutil.copytree(repository / source, staged)
    card = json.loads((staged / "variant.json").read_text())
    card["name"] = target
    (staged / "variant.json").write_text(json.dumps(card, indent=2))
    with Load(cluster.balancer, f"/v1/models/{target}/predict", texts) as load:
        time.sleep(2)
        shutil.rmtree(repository / target)
        staged.rename(repository / target)
        started = time.monotonic()
        with cluster.client() as client:
            report = client.post("/admin/repository/rescan", headers=AUTH).json()

        def replaced_everywhere() -> bool:
            return all(
                httpx.get(f"{r.url}/v1/models/{target}").json()["description"]
                == card["description"]
                for r in cluster.replicas
            )

        while not replaced_everywhere():
            time.sleep(0.05)
        everywhere = time.monotonic() - started
        time.sleep(2)
    return {
        "variant": target,
        "new_files_from": source,
        "replaced": report["replaced"],
        "on_every_replica_s": round(everywhere, 2),
        "statuses": dict(load.statuses),
        "no_answer": len(load.failures),
        "non_2xx": load.not_2xx,
    }


def rolling_restart(cluster: Cluster, texts: list[str]) -> dict:
    with Load(cluster.balancer, "/v1/predict", texts) as load:
        time.sleep(2)
        for replica in cluster.replicas:
            code = replica.terminate()
            assert code == 0, f"replica exited with {code}"
            replica.start()
        time.sleep(2)
    return {
        "statuses": dict(load.statuses),
        "no_answer": len(load.failures),
        "non_2xx": load.not_2xx,
    }


def three_replicas(args, texts: list[str], work: Path) -> dict:
    repository = work / "repository"
    shutil.copytree(args.repository, repository)
    env = {"BRUM_MODEL_REPOSITORY": str(repository), "BRUM_ADMIN_TOKEN": TOKEN}
    result: dict = {}
    (work / "unshared").mkdir()
    cluster = start_cluster(work / "unshared", 3, env, shared=False)
    try:
        result["feedback_without_sharing"] = feedback_share(cluster, texts[: args.feedback], False)
    finally:
        close_cluster(cluster)
    print(f"  feedback without sharing: {result['feedback_without_sharing']}", flush=True)
    (work / "shared").mkdir()
    cluster = start_cluster(work / "shared", 3, {**env, "BRUM_FEEDBACK_KEY": KEY})
    try:
        result["feedback"] = feedback_share(cluster, texts[: args.feedback], True)
        print(f"  feedback: {result['feedback']}", flush=True)
        result["experiment_change"] = propagation(cluster)
        print(f"  experiment change: {result['experiment_change']}", flush=True)
        result["replace_under_load"] = replace_under_load(cluster, repository, texts)
        print(f"  replace under load: {result['replace_under_load']}", flush=True)
        result["rolling_restart"] = rolling_restart(cluster, texts)
        print(f"  rolling restart: {result['rolling_restart']}", flush=True)
    finally:
        close_cluster(cluster)
    return result


def render(result: dict) -> str:
    lines = [
        f"# N replicas — {result['date']}",
        "",
        f"`{result['command']}` on {result['machine']}",
        "",
        "## The prediction path, one replica (wrk -c32, POST /v1/predict, one text)",
        "",
        "| setup | req/s per round | median req/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, row in result["single_replica"].items():
        rounds = " / ".join(f"{x:g}" for x in row["requests_per_second"])
        lines.append(
            f"| {name} | {rounds} | {row['median_requests_per_second']:g} | "
            f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']} |"
        )
    three = result["three_replicas"]
    off, on = three["feedback_without_sharing"], three["feedback"]
    change, replace, restart = (
        three["experiment_change"],
        three["replace_under_load"],
        three["rolling_restart"],
    )
    lines += [
        "",
        "## Three replicas behind nginx (round robin), Redis shared",
        "",
        "| measure | result |",
        "|---|---|",
        f"| feedback counted, no shared store (by request id) | {off['counted']} of {off['sent']}"
        f" ({off['share']:.0%}); answers {off['statuses']} |",
        f"| feedback counted, key + Redis (half token, half request id) | {on['counted']} of "
        f"{on['sent']} ({on['share']:.0%}); answers {on['statuses']} |",
        f"| admin change on every replica | median {change['median_s']} s, max "
        f"{change['max_s']} s ({change['changes']} changes) |",
        f"| variant {replace['variant']} replaced under load | {replace['non_2xx']} non-2xx, "
        f"{replace['no_answer']} unanswered of {sum(replace['statuses'].values())}; on every "
        f"replica after {replace['on_every_replica_s']} s |",
        f"| rolling restart of the 3 under load | {restart['non_2xx']} non-2xx, "
        f"{restart['no_answer']} unanswered of {sum(restart['statuses'].values())} |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    texts = load_clinc150().splits["test"].texts[:1000]
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python -m loadtests.replicas " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} cores, {cpu_model()}",
    }
    with tempfile.TemporaryDirectory(prefix="brum-replicas-") as tmp:
        work = Path(tmp)
        print("one replica, prediction path:", flush=True)
        result["single_replica"] = single_replica(args, texts, work)
        print("three replicas behind nginx:", flush=True)
        result["three_replicas"] = three_replicas(args, texts, work)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "replicas.json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = render(result)
    (args.output / "replicas.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
