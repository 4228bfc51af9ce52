"""Check a running compose stack (`make docker-test` starts it): brum answers, Prometheus scrapes
it, loads the rules, and has per-variant series, raw and recorded. Standard library only.

    python deploy/compose_check.py --brum http://127.0.0.1:18000 --prometheus http://127.0.0.1:19090
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

TEXTS = [
    "how much money is in my checking account",
    "set an alarm for 7 am",
    "what is the weather like in paris",
    "book a table for two at an italian restaurant",
    "tell me a joke about cats",
    "i lost my credit card",
]


def call(url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, {}


def wait(what: str, check, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    sys.exit(f"FAIL: {what} within {timeout:.0f} s")


def query(prometheus: str, promql: str) -> list[dict]:
    status, body = call(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    return body.get("data", {}).get("result", []) if status == 200 else []


def send_traffic(brum: str, variants: list[str], requests: int) -> None:
    """Experiment traffic with distinct user keys (so every arm is drawn), then each variant."""
    for i in range(requests):
        status, _ = call(
            f"{brum}/v1/predict", {"text": TEXTS[i % len(TEXTS)]}, {"X-User-ID": f"user-{i}"}
        )
        if status != 200:
            sys.exit(f"FAIL: POST /v1/predict answered {status}")
    for variant in variants:
        status, _ = call(f"{brum}/v1/models/{variant}/predict", {"texts": TEXTS})
        if status != 200:
            sys.exit(f"FAIL: POST /v1/models/{variant}/predict answered {status}")
    print(f"sent {requests} experiment requests and {len(variants)} direct ones")


def show(promql: str, args: argparse.Namespace, variants: list[str], minimum: float) -> None:
    """Wait until `promql` has a series above `minimum` for every variant, and print them."""

    def found() -> dict[str, float] | None:
        result = query(args.prometheus, promql)
        series = {s["metric"].get("variant"): float(s["value"][1]) for s in result}
        ok = all(series.get(v, float("nan")) > minimum for v in variants)
        return series if ok else None

    series = wait(f"{promql} above {minimum} for every variant", found, args.timeout)
    print(f"{promql}:")
    for variant in variants:
        print(f"  {variant:32s} {series[variant]:.4g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brum", default="http://127.0.0.1:18000")
    parser.add_argument("--prometheus", default="http://127.0.0.1:19090")
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument("--replicas", type=int, default=3, help="brum replicas behind --brum")
    args = parser.parse_args()

    wait("brum ready", lambda: call(f"{args.brum}/readyz")[0] == 200, args.timeout)
    variants = sorted(call(f"{args.brum}/readyz")[1].get("variants", {}))
    print(f"brum ready with {len(variants)} variants: {', '.join(variants)}")

    send_traffic(args.brum, variants, args.requests)
    wait(
        f"{args.replicas} brum replicas up in Prometheus",
        lambda: (
            len([s for s in query(args.prometheus, 'up{job="brum"}') if s["value"][1] == "1"])
            >= args.replicas
        ),
        args.timeout,
    )
    print(f"Prometheus scrapes {args.replicas} replicas")
    _, rules = call(f"{args.prometheus}/api/v1/rules")
    groups = [g["name"] for g in rules.get("data", {}).get("groups", [])]
    if not {"brum-variant", "brum-alerts"} <= set(groups):
        sys.exit(f"FAIL: rule groups loaded: {groups}")
    print(f"Prometheus scrapes brum; rule groups loaded: {', '.join(groups)}")

    show("sum by (variant) (brum_requests_total)", args, variants, minimum=0)
    # A rate needs traffic between two scrapes: a second round, now that one scrape has the first.
    send_traffic(args.brum, variants, args.requests)
    show("variant:brum_requests:rate5m", args, variants, minimum=0)
    show("variant:brum_request_duration_seconds:p99_rate5m", args, variants, minimum=0)
    print("OK: per-variant series found through Prometheus's HTTP API")
    check_feedback(args)


def total_feedback(prometheus: str) -> float:
    return sum(float(s["value"][1]) for s in query(prometheus, "sum(brum_feedback_total)"))


def check_feedback(args: argparse.Namespace, count: int = 30) -> None:
    """Predictions through the balancer, each judged through it (by its token, half of them by
    request id): every one counted, whichever replica gets it, summed by Prometheus."""
    before = total_feedback(args.prometheus)
    for i in range(count):
        status, answer = call(f"{args.brum}/v1/predict", {"text": TEXTS[i % len(TEXTS)]})
        label = answer["predictions"][0]["label"]
        body = (
            {"token": answer.get("feedback_token"), "label": label}
            if i % 2
            else {"request_id": answer["request_id"], "label": label}
        )
        status, _ = call(f"{args.brum}/v1/feedback", body)
        if status != 200:
            sys.exit(f"FAIL: feedback {i} through the balancer answered {status}")
    wait(
        f"Prometheus counting all {count} feedback calls",
        lambda: total_feedback(args.prometheus) >= before + count,
        args.timeout,
    )
    print(f"OK: {count} of {count} feedback calls through the balancer counted")


if __name__ == "__main__":
    main()
