"""One real progressive rollout in the docker-compose stack, with its timeline (issue 16).

    make rollout-demo                       # image, stack (project brum-rollout), this, down -v
    BRUM_PORT=18100 PROMETHEUS_PORT=19190 python -m loadtests.compose_rollout \\
        --compose "docker-compose -p brum-rollout" [--rate 50 --margin 0.04 --steps 20,50,100]

1. ``docker-compose up`` (attached, so the stack lives as long as this process watches it) of
   the balancer, Prometheus and the rollout controller, with the three brum replicas and Redis;
   waits until every replica is ready and Prometheus scrapes the replicas and the controller.
2. ``PUT /admin/experiment`` through the balancer: control ``minilm-l6-augmented-int8``,
   candidate ``minilm-l3-augmented-int8``, with a ``rollout:`` section.
3. locust, open loop at ``--rate`` predictions/s, every prediction followed by feedback with
   its true CLINC150 label.
4. Every ``--poll`` seconds: the experiment (``GET /v1/models``: weights and rollout state) and,
   from Prometheus, ``brum_rollout_step``, ``brum_rollout_decisions_total``, the served share
   and the feedback per arm; until the rollout is promoted or rolled back, or ``--timeout``.
5. The controller's decision log (``docker-compose logs rollout``), then
   ``loadtests/results/rollout/compose-rollout.{md,json,png}``: the timeline, the log lines, and
   the candidate's share over time with the decisions and each arm's online accuracy.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx

from app.rollout.sequential import compare, default_tau, proportion_interval
from app.settings import SHIPPED_REPOSITORY
from loadtests.processes import ROOT, cpu_model, stop, wait_for

RESULTS = ROOT / "loadtests" / "results" / "rollout"
CONTROL = "minilm-l6-augmented-int8"
CANDIDATE = "minilm-l3-augmented-int8"
# The compose file's default token (docker-compose.yml): this stack is on 127.0.0.1 only.
DEFAULT_TOKEN = "compose-demo-admin-token-change-me"
DECISION_PREFIX = "rollout decision "
SETTLE_SECONDS = 20  # longer than a scrape interval of the compose Prometheus (15 s)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.compose_rollout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    brum_port = os.environ.get("BRUM_PORT", "8000")
    prometheus_port = os.environ.get("PROMETHEUS_PORT", "9090")
    parser.add_argument("--compose", default="docker-compose -p brum-rollout")
    parser.add_argument("--brum", default=f"http://127.0.0.1:{brum_port}", help="the balancer")
    parser.add_argument("--prometheus", default=f"http://127.0.0.1:{prometheus_port}")
    parser.add_argument("--token", default=os.environ.get("BRUM_ADMIN_TOKEN", DEFAULT_TOKEN))
    parser.add_argument("--rate", type=float, default=50.0, help="predictions per second")
    parser.add_argument("--steps", default="20,50,100", help="candidate's shares, percent")
    parser.add_argument("--margin", type=float, default=0.04, help="accuracy non-inferiority")
    parser.add_argument("--min-judgments", type=int, default=200)
    parser.add_argument("--min-step-seconds", type=float, default=30.0)
    parser.add_argument("--max-step-seconds", type=float, default=480.0)
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between polls")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds of traffic at most")
    # Keys from a pool this large rarely repeat, so locust's stickiness check (a key answered by
    # two variants is a failure) seldom meets a key that the rollout moved to the candidate by
    # design; with its default 2,000 keys most keys would move at the first promotion.
    parser.add_argument("--user-keys", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args(argv)


# --- the settings, and why --------------------------------------------------------------------


def card_accuracy(variant: str) -> dict[str, float]:
    """The card's offline test accuracy, served alone and in batches (as brum serves)."""
    metrics = json.loads((SHIPPED_REPOSITORY / variant / "variant.json").read_text())["metrics"]
    return {
        "accuracy": metrics["accuracy"],
        "accuracy_batched": metrics.get("accuracy_batched", metrics["accuracy"]),
        "p50_ms": metrics["latency_batch1"]["p50_ms"],
        "size_bytes": metrics["size_bytes"],
    }


def experiment(args: argparse.Namespace) -> dict:
    return {
        "name": "l3-rollout",
        "arms": [{"variant": CONTROL, "weight": 1}],  # the controller sets the weights
        "default": CONTROL,
        "rollout": {
            "control": CONTROL,
            "candidate": CANDIDATE,
            "steps": [float(s) for s in args.steps.split(",")],
            "gates": {"accuracy_margin": args.margin, "min_judgments": args.min_judgments},
            "min_step_seconds": args.min_step_seconds,
            "max_step_seconds": args.max_step_seconds,
        },
    }


def planned_promotions(
    args: argparse.Namespace, control: float, candidate: float, margin: float
) -> list[float] | None:
    """Seconds from the start at which each step would be promoted if every arm answered
    exactly at its offline accuracy (expected counts, no scrape or look delay); None when a
    step would outlive max_step_seconds undecided."""
    steps = [float(s) for s in args.steps.split(",")]
    judged = {"control": 0.0, "candidate": 0.0}
    promotions, step_began, second = [], 0.0, 0.0
    while len(promotions) < len(steps):
        second += 1
        share = steps[len(promotions)] / 100
        judged["control"] += args.rate * (1 - share)
        judged["candidate"] += args.rate * share
        verdict = compare(
            (control * judged["control"], judged["control"]),
            (candidate * judged["candidate"], judged["candidate"]),
            margin,
        )
        age = second - step_began
        if (
            age >= args.min_step_seconds
            and min(judged.values()) >= args.min_judgments
            and verdict.outcome in ("non-inferior", "better")
        ):
            promotions.append(second)
            step_began = second
        elif age >= args.max_step_seconds:
            return None
    return promotions


def rationale(args: argparse.Namespace) -> dict:
    control, candidate = card_accuracy(CONTROL), card_accuracy(CANDIDATE)
    expected = (control["accuracy_batched"], candidate["accuracy_batched"])
    return {
        "control_card": control,
        "candidate_card": candidate,
        "offline_difference": candidate["accuracy"] - control["accuracy"],
        "offline_difference_batched": expected[1] - expected[0],
        "speedup_p50": control["p50_ms"] / candidate["p50_ms"],
        "size_ratio": candidate["size_bytes"] / control["size_bytes"],
        "planned_promotions_s": planned_promotions(args, *expected, args.margin),
        "planned_at_margin_0.01": planned_promotions(args, *expected, 0.01),
    }


# --- the stack ---------------------------------------------------------------------------------


def compose_up(compose: list[str], log: Path) -> subprocess.Popen:
    with log.open("wb") as output:
        return subprocess.Popen(
            [*compose, "up", "--no-color", "balancer", "prometheus", "rollout"],
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def query(prometheus: httpx.Client, promql: str) -> list[dict]:
    response = prometheus.get("/api/v1/query", params={"query": promql})
    response.raise_for_status()
    return response.json()["data"]["result"]


def scalar(prometheus: httpx.Client, promql: str) -> float | None:
    rows = query(prometheus, promql)
    return float(rows[0]["value"][1]) if rows else None


def wait_until_scraped(prometheus: httpx.Client, stack: subprocess.Popen, limit: float) -> None:
    """Every replica ready and the controller scraped: the balancer answering means only that
    one replica is (nginx passes a 503 on to the next)."""
    deadline, ready, controller = time.monotonic() + limit, None, None
    while time.monotonic() < deadline:
        if stack.poll() is not None:
            raise RuntimeError(f"docker-compose up exited with {stack.returncode}")
        ready = scalar(prometheus, 'sum(brum_ready{job="brum"})')
        controller = scalar(prometheus, 'sum(up{job="brum-rollout"})')
        if ready == 3 and controller == 1:
            return
        time.sleep(2)
    raise TimeoutError(
        f"Prometheus saw {ready} ready replicas of 3 and the controller up {controller} (of 1)"
    )


def start_rollout(brum: httpx.Client, body: dict) -> float:
    response = brum.put("/admin/experiment", json=body)
    response.raise_for_status()
    return time.time()


def start_locust(args: argparse.Namespace, work: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "loadtests" / "locustfile.py"),
        "--headless",
        "--only-summary",
        "--host",
        args.brum,
        "--mode",
        "open",
        "--rate",
        f"{args.rate:g}",
        "--run-time",
        f"{args.timeout:.0f}s",
        "--feedback-share",
        "1.0",
        "--no-sticky-check",  # each promotion moves keys from the control to the candidate
        "--user-keys",
        str(args.user_keys),
        "--seed",
        str(args.seed),
        "--csv",
        str(work / "locust"),
    ]
    with (work / "locust.log").open("wb") as output:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            # A shell starts background jobs with SIGINT ignored, and an ignored signal stays
            # ignored across exec: locust would never see the interrupt stop_locust sends.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def stop_locust(locust: subprocess.Popen, grace: float = 60) -> None:
    """SIGINT, not SIGTERM: locust dies of a SIGTERM at once, while an interrupt ends the test
    (the locustfile drains requests in flight and writes its steps CSV)."""
    if locust.poll() is None:
        locust.send_signal(signal.SIGINT)
        try:
            locust.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            stop(locust)


# --- watching ----------------------------------------------------------------------------------


def share(rollout: dict) -> float:
    if rollout["status"] == "rolled-back":
        return 0.0
    return 100.0 if rollout["status"] == "promoted" else rollout["steps"][rollout["step"]]


def by_label(rows: list[dict], label: str) -> dict[str, float]:
    return {row["metric"].get(label, ""): float(row["value"][1]) for row in rows}


def sample(brum: httpx.Client, prometheus: httpx.Client, started: float) -> dict:
    """One poll: the experiment as a replica runs it, and the rollout's series in Prometheus."""
    models = brum.get("/v1/models")
    models.raise_for_status()
    running = models.json()["experiment"] or {}
    rollout = running.get("rollout") or {}
    feedback = query(
        prometheus, "sum by (variant, outcome) (brum_feedback_total)"
    )  # raw counters: nothing restarts in this run
    judged: dict[str, dict[str, float]] = {}
    for row in feedback:
        labels = row["metric"]
        judged.setdefault(labels["variant"], {})[labels["outcome"]] = float(row["value"][1])
    return {
        "t": round(time.time() - started, 1),
        "weights": {arm["variant"]: arm["weight"] for arm in running.get("arms", [])},
        "status": rollout.get("status"),
        "share": share(rollout) if rollout else None,
        "reason": rollout.get("reason"),
        "prometheus_step": scalar(prometheus, "max(brum_rollout_step)"),
        "decisions": by_label(
            query(prometheus, "sum by (action) (brum_rollout_decisions_total)"), "action"
        ),
        "served_rps": by_label(
            query(prometheus, "sum by (variant) (rate(brum_requests_total[30s]))"), "variant"
        ),
        "feedback": judged,
    }


def watch(
    args: argparse.Namespace,
    brum: httpx.Client,
    prometheus: httpx.Client,
    locust: subprocess.Popen,
    started: float,
) -> list[dict]:
    """Poll until the rollout is decided, then for ``SETTLE_SECONDS`` more (so Prometheus has
    scraped the controller after its last decision), or until the timeout; locust ending first
    also ends it."""
    samples: list[dict] = []
    deadline, decided = time.monotonic() + args.timeout, None
    while time.monotonic() < deadline and locust.poll() is None:
        try:
            samples.append(sample(brum, prometheus, started))
        except (httpx.HTTPError, ValueError) as exc:  # a poll lost is a gap, not a failure
            print(f"  poll failed: {exc}", flush=True)
            time.sleep(args.poll)
            continue
        last = samples[-1]
        print(
            f"  {last['t']:6.0f} s  share {last['share']}  status {last['status']}  "
            f"gauge {last['prometheus_step']}  decisions {last['decisions']}",
            flush=True,
        )
        if last["status"] in ("promoted", "rolled-back"):
            decided = decided or time.monotonic()
            if time.monotonic() - decided >= SETTLE_SECONDS:
                break
        time.sleep(args.poll)
    return samples


def decision_log(compose: list[str]) -> tuple[list[str], list[dict]]:
    """The controller's JSON log lines (``brum.rollout``) and the decision records in them."""
    output = subprocess.run(
        [*compose, "logs", "--no-color", "--no-log-prefix", "rollout"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines, records = [], []
    for line in output.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # not one of the controller's lines
        if entry.get("logger") != "brum.rollout":
            continue
        lines.append(line)
        message = entry.get("message", "")
        if message.startswith(DECISION_PREFIX):
            record = json.loads(message.removeprefix(DECISION_PREFIX))
            # A "start" record carries no time of its own: its log line's.
            record.setdefault("at", datetime.fromisoformat(entry["time"]).timestamp())
            records.append(record)
    return lines, records


def locust_summary(work: Path) -> dict:
    """Per arm, from the locustfile's steps CSV, and the failures by kind."""
    arms = {}
    steps = work / "locust_steps.csv"
    if steps.exists():
        with steps.open() as rows:
            for row in csv.DictReader(rows):
                if row["arm"] not in ("all", CONTROL, CANDIDATE):
                    continue  # the repository's other variants: no traffic in this experiment
                arms[row["arm"]] = {
                    key: row[key]
                    for key in ("sent", "completed", "failures", "p50_ms", "p99_ms", "feedback")
                }
                arms[row["arm"]]["feedback_correct"] = row["feedback_correct"]
    failures: Counter[tuple[str, str]] = Counter()
    failures_csv = work / "locust_failures.csv"
    if failures_csv.exists():
        with failures_csv.open() as rows:
            for row in csv.DictReader(rows):
                # One row per message, and a sticky failure's message names its key: by kind.
                failures[row["Name"], row["Error"].split(":", 1)[0]] += int(row["Occurrences"])
    return {
        "arms": arms,
        "failures": [
            {"name": name, "error": error, "count": count}
            for (name, error), count in failures.most_common()
        ],
    }


# --- the timeline ------------------------------------------------------------------------------


def timeline(records: list[dict], started: float) -> list[dict]:
    rows = []
    for record in records:
        evidence, verdict = record.get("evidence") or {}, record.get("verdict") or {}
        interval = verdict.get("interval") or {}
        rows.append(
            {
                "t": round(record["at"] - started, 1),
                "share_before": record["share_before"],
                "share_after": record["share_after"],
                "action": record["action"],
                "reason": record.get("reason", ""),
                "control": evidence.get("control"),
                "candidate": evidence.get("candidate"),
                "difference": verdict.get("difference"),
                "low": interval.get("low"),
                "high": interval.get("high"),
                "p99_ms": (evidence["p99_seconds"] * 1000)
                if evidence.get("p99_seconds") is not None
                else None,
            }
        )
    return rows


def accuracy(pair: list[float] | None) -> str:
    if not pair or not pair[1]:
        return "–"
    return f"{pair[0] / pair[1]:.3f} ({pair[1]:,.0f})"


def outcome(samples: list[dict], rows: list[dict]) -> dict:
    final = next((s for s in reversed(samples) if s["status"]), {})
    status = final.get("status") or "unknown"
    # A rollback, or the promotion of the last step, ends the rollout: the last change.
    last = next((r for r in reversed(rows) if r["action"] in ("promote", "rollback")), None)
    decided = last if status in ("promoted", "rolled-back") else None
    return {
        "status": status,
        "share": final.get("share"),
        "at_s": decided["t"] if decided else None,
        "reason": final.get("reason") or "",
    }


def online_accuracy(samples: list[dict], margin: float) -> dict[str, dict]:
    """Each arm's feedback over the whole run, with its always-valid 95% interval (tau as the
    controller's: twice the margin)."""
    last = samples[-1]["feedback"] if samples else {}
    result = {}
    for variant in (CONTROL, CANDIDATE):
        counts = last.get(variant, {})
        correct, judged = counts.get("correct", 0.0), sum(counts.values())
        interval = proportion_interval(correct, judged, 0.05, default_tau(margin))
        result[variant] = {
            "correct": correct,
            "judged": judged,
            "accuracy": correct / judged if judged else None,
            "interval": [interval.low, interval.high],
        }
    return result


def raw_accuracy(sample: dict, variant: str) -> tuple[float | None, float]:
    """An arm's accuracy from the raw counters at one poll (every judgment since the stack
    started, none lost), against the controller's ``increase()`` over the rollout."""
    counts = sample["feedback"].get(variant, {})
    judged = sum(counts.values())
    return (counts.get("correct", 0.0) / judged if judged else None), judged


def evidence_check(samples: list[dict], rows: list[dict]) -> list[dict]:
    """At each promotion or rollback: the candidate's accuracy as the controller saw it, and
    from the raw counters at the last poll before it."""
    checks = []
    for row in rows:
        before = [s for s in samples if s["t"] <= row["t"]]
        if row["action"] not in ("promote", "rollback") or not before or not row["candidate"]:
            continue
        raw, judged = raw_accuracy(before[-1], CANDIDATE)
        seen = row["candidate"]
        checks.append(
            {
                "t": row["t"],
                "action": row["action"],
                "controller": seen[0] / seen[1] if seen[1] else None,
                "controller_n": seen[1],
                "raw_t": before[-1]["t"],
                "raw": raw,
                "raw_n": judged,
            }
        )
    return checks


# --- the report --------------------------------------------------------------------------------


def render(result: dict) -> str:
    why, settings, end = result["rationale"], result["experiment"]["rollout"], result["outcome"]
    planned = why["planned_promotions_s"]
    lines = [
        f"# Progressive rollout in the compose stack — {result['date']}",
        "",
        f"`{result['command']}` on {result['machine']}; 3 brum replicas behind nginx, Redis, "
        "Prometheus (15 s scrapes) and the rollout controller (a look every 10 s), all in "
        "docker-compose; locust on the host, open loop at "
        f"{result['rate']:g} predictions/s, every one followed by feedback with its true label.",
        "",
        f"**Outcome: {end['status']}** at {end['share']}% candidate share"
        + (f", {end['at_s']:.0f} s after the rollout was put" if end["at_s"] is not None else "")
        + f": {end['reason']}",
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(result["experiment"], indent=2),
        "```",
        "",
        f"- Margin {settings['gates']['accuracy_margin']:g}: a choice, not a measurement. The "
        f"cards' offline test accuracies are {why['control_card']['accuracy']:.4f} (control) "
        f"and {why['candidate_card']['accuracy']:.4f} (L3), "
        f"{why['offline_difference'] * 100:+.2f} points; "
        f"{why['offline_difference_batched'] * 100:+.2f} in batches, as brum serves. L3 is "
        f"{why['speedup_p50']:.2f}x faster at p50 and {why['size_ratio']:.0%} of the size. A "
        "candidate really that much worse can be shown non-inferior only at a margin wider than "
        "its drop, and the nearer the margin the more judgments it takes.",
        "- Planned from the cards (every arm at its batched accuracy, expected counts, no scrape "
        "or look delay): "
        + (
            "promotions at " + ", ".join(f"{s:.0f}" for s in planned) + " s"
            if planned
            else "a step outlives max_step_seconds: rollback"
        )
        + "; at the README's 1-point margin: "
        + (
            "promotions at " + ", ".join(f"{s:.0f}" for s in why["planned_at_margin_0.01"]) + " s."
            if why["planned_at_margin_0.01"]
            else "never promoted (L3's drop is beyond that margin), rolled back after "
            f"max_step_seconds ({settings['max_step_seconds']:g} s) undecided."
        ),
        "- Other gates at their defaults: p99 latency 100 ms, error ratio 1%, alpha 0.05.",
        "",
        "## Timeline (the controller's decisions)",
        "",
        "| t (s) | share % | action | control acc (n) | L3 acc (n) | difference [interval] "
        "| L3 p99 ms | reason |",
        "|---:|---|---|---|---|---|---:|---|",
    ]
    for row in result["timeline"]:
        shares = f"{row['share_before']:g}" + (
            f" → {row['share_after']:g}" if row["share_after"] != row["share_before"] else ""
        )
        difference = (
            f"{row['difference']:+.4f} [{row['low']:+.4f}, {row['high']:+.4f}]"
            if row["difference"] is not None
            else "–"
        )
        p99 = f"{row['p99_ms']:.1f}" if row["p99_ms"] is not None else "–"
        lines.append(
            f"| {row['t']:.0f} | {shares} | {row['action']} | {accuracy(row['control'])} | "
            f"{accuracy(row['candidate'])} | {difference} | {p99} | {row['reason']} |"
        )
    lines += [
        "",
        "![share over time](compose-rollout.png)",
        "",
        "## The candidate's evidence at each decision: the controller's and the raw counters'",
        "",
        "The controller counts each `brum_feedback_total` series' raw samples since the start "
        "(app/rollout/controller.py); the raw counters are `sum(brum_feedback_total)` at this "
        "script's last poll before the decision, up to 5 s and one 15 s scrape earlier.",
        "",
        "| t (s) | action | L3 accuracy, controller (n) | raw counters at t (n) |",
        "|---:|---|---|---|",
    ]
    for check in evidence_check(result["samples"], result["timeline"]):
        lines.append(
            f"| {check['t']:.0f} | {check['action']} | {check['controller']:.3f} "
            f"({check['controller_n']:,.0f}) | {check['raw']:.3f} ({check['raw_n']:,.0f}) at "
            f"{check['raw_t']:.0f} s |"
        )
    lines += [
        "",
        "## Online accuracy over the run (Prometheus, `brum_feedback_total`)",
        "",
        "| variant | judged | accuracy [always-valid 95%] | offline (card, batched) |",
        "|---|---:|---|---:|",
    ]
    for variant, arm in result["online_accuracy"].items():
        card = why["control_card"] if variant == CONTROL else why["candidate_card"]
        value = (
            f"{arm['accuracy']:.4f} [{arm['interval'][0]:.4f}, {arm['interval'][1]:.4f}]"
            if arm["accuracy"] is not None
            else "–"
        )
        lines.append(
            f"| `{variant}` | {arm['judged']:,.0f} | {value} | {card['accuracy_batched']:.4f} |"
        )
    lines += ["", "## Traffic (locust, client side)", ""]
    lines += ["| arm | completed | failures | p50 ms | p99 ms | feedback (correct) |"]
    lines += ["|---|---:|---:|---:|---:|---|"]
    for arm, row in result["locust"]["arms"].items():
        lines.append(
            f"| {arm} | {row['completed']} | {row['failures']} | {row['p50_ms']} | "
            f"{row['p99_ms']} | {row['feedback']} ({row['feedback_correct']}) |"
        )
    if result["locust"]["failures"]:
        lines.append("")
    for failure in result["locust"]["failures"]:
        lines.append(f"- {failure['count']:,} × {failure['name']}: {failure['error']}")
    lines += [
        "",
        "Grafana's rollout panels plot `max by (experiment, candidate) (brum_rollout_step)` and "
        "the decisions by action; the same series, read from Prometheus every "
        f"{result['poll']:g} s, are in the JSON (`samples`).",
        "",
        "## Decision log (`docker-compose logs rollout`)",
        "",
        "```",
        *result["log_lines"],
        "```",
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples, rows = result["samples"], result["timeline"]
    margin = result["experiment"]["rollout"]["gates"]["accuracy_margin"]
    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    times = [s["t"] for s in samples]
    top.step(
        times, [s["share"] for s in samples], where="post", label="experiment (GET /v1/models)"
    )
    top.plot(
        times, [s["prometheus_step"] for s in samples], ":", label="brum_rollout_step (Prometheus)"
    )
    served = [
        100 * s["served_rps"].get(CANDIDATE, 0) / total
        if (total := sum(s["served_rps"].values()))
        else None
        for s in samples
    ]
    top.plot(times, served, ".", markersize=3, alpha=0.6, label="served share (30 s rate)")
    for row in rows:
        if row["action"] in ("promote", "rollback"):
            color = "tab:green" if row["action"] == "promote" else "tab:red"
            for axis in (top, middle, bottom):
                axis.axvline(row["t"], color=color, alpha=0.5)
            top.annotate(
                f" {row['action']} → {row['share_after']:g}%",
                (row["t"], 0.02),
                xycoords=("data", "axes fraction"),
                rotation=90,
                color=color,
                fontsize=8,
            )
    top.set_ylabel("L3 share of traffic, %")
    top.legend(fontsize=8, loc="upper left")
    judged = [r for r in rows if r["control"] and r["candidate"] and r["candidate"][1]]
    for arm, name in (("control", CONTROL), ("candidate", CANDIDATE)):
        middle.plot(
            [r["t"] for r in judged],
            [r[arm][0] / r[arm][1] if r[arm][1] else None for r in judged],
            marker=".",
            label=f"{name} (since the start)",
        )
    for name, color in ((CONTROL, "tab:blue"), (CANDIDATE, "tab:orange")):
        raw = [(s["t"], raw_accuracy(s, name)[0]) for s in samples]
        raw = [(t, value) for t, value in raw if value is not None]
        middle.plot(
            [t for t, _ in raw], [v for _, v in raw], "x", color=color, markersize=4, alpha=0.6
        )
    middle.plot([], [], "kx", markersize=4, label="raw counters (every poll)")
    cards = result["rationale"]
    for key, color in (("control_card", "tab:blue"), ("candidate_card", "tab:orange")):
        offline = cards[key]["accuracy_batched"]
        middle.axhline(offline, color=color, linestyle="--", linewidth=0.8, alpha=0.7)
    middle.plot([], [], "k--", linewidth=0.8, label="offline, card (batched)")
    middle.set_ylabel("online accuracy")
    middle.legend(fontsize=8)
    decided = [r for r in judged if r["difference"] is not None]
    bottom.fill_between(
        [r["t"] for r in decided],
        [r["low"] for r in decided],
        [r["high"] for r in decided],
        alpha=0.3,
        label="confidence sequence (alpha 0.05)",
    )
    bottom.plot([r["t"] for r in decided], [r["difference"] for r in decided], marker=".")
    bottom.axhline(-margin, color="tab:red", linestyle="--", label=f"-margin ({margin:g})")
    bottom.axhline(0, color="grey", linewidth=0.5)
    bottom.set_ylim(max(-0.3, min((r["low"] for r in decided), default=-0.1)), 0.1)
    bottom.set_ylabel("L3 - control accuracy")
    bottom.set_xlabel("seconds since the rollout was put")
    bottom.legend(fontsize=8)
    figure.suptitle(f"{CANDIDATE} against {CONTROL}: {result['outcome']['status']}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --- the run -----------------------------------------------------------------------------------


def run(args: argparse.Namespace, work: Path) -> dict:
    compose = shlex.split(args.compose)
    body = experiment(args)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": shlex.join(["python", "-m", "loadtests.compose_rollout", *sys.argv[1:]]),
        "machine": f"{os.cpu_count()} cores, {cpu_model()}",
        "rate": args.rate,
        "poll": args.poll,
        "experiment": body,
        "rationale": rationale(args),
    }
    stack = compose_up(compose, work / "compose.log")
    headers = {"Authorization": f"Bearer {args.token}"}
    try:
        with (
            httpx.Client(base_url=args.brum, headers=headers, timeout=10) as brum,
            httpx.Client(base_url=args.prometheus, timeout=10) as prometheus,
        ):
            deadline = time.monotonic() + 300  # the first start builds nothing, but loads 4x3
            wait_for(args.brum, "/readyz", deadline, stack)
            wait_for(args.prometheus, "/-/ready", deadline, stack)
            wait_until_scraped(prometheus, stack, deadline - time.monotonic())
            print("stack ready; putting the rollout", flush=True)
            started = start_rollout(brum, body)
            locust = start_locust(args, work)
            try:
                samples = watch(args, brum, prometheus, locust, started)
            finally:
                stop_locust(locust)
            if locust.returncode not in (0, 1):  # 1: some request failed, still a result
                print((work / "locust.log").read_text(errors="replace")[-3000:], flush=True)
        result["log_lines"], records = decision_log(compose)
    finally:
        stop(stack, grace=60)  # compose stops the containers; the Makefile then removes them
    result["samples"] = samples
    result["timeline"] = timeline(records, started)
    result["outcome"] = outcome(samples, result["timeline"])
    result["online_accuracy"] = online_accuracy(samples, args.margin)
    result["locust"] = locust_summary(work)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="brum-rollout-") as tmp:
        result = run(args, Path(tmp))
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "compose-rollout.json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = render(result)
    (args.output / "compose-rollout.md").write_text(markdown)
    plot(result, args.output / "compose-rollout.png")
    print(markdown)
    return 0 if result["outcome"]["status"] in ("promoted", "rolled-back") else 1


if __name__ == "__main__":
    sys.exit(main())
