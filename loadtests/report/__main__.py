"""A/B comparison report of brum's variants after a load run, from its Prometheus metrics.

The metrics come from two scrapes of ``/metrics`` (before and after the run: the report uses
the counters' differences) or from Prometheus's HTTP API (``increase(...[window])``, summed over
every replica). Writes ``NAME.md``, ``NAME.png`` and ``NAME.json``, prints the markdown, and ends
with a recommendation: the cheapest variant shown non-inferior to the control in online accuracy
(within ``--margin``), inside the p99 target and failing no more often; for a variant the
feedback cannot judge yet, how much more it needs. Every interval is valid at every look
(loadtests/report/analysis.py), so the report may be re-run while traffic flows.

    # scrape, run locust, scrape, report
    python -m loadtests.report --url http://127.0.0.1:8000 --scrape before.prom
    locust -f loadtests/locustfile.py --headless --host http://127.0.0.1:8000 --rate 50 ...
    python -m loadtests.report --url http://127.0.0.1:8000 --scrape after.prom
    python -m loadtests.report --metrics-before before.prom --metrics-after after.prom \\
        --url http://127.0.0.1:8000 --output-dir loadtests/results --name ab
    # the same in one command
    python -m loadtests.report --url http://127.0.0.1:8000 --run "locust -f ... --headless ..."
    # from Prometheus, over the last 5 minutes
    python -m loadtests.report --prometheus http://127.0.0.1:9090 --window 5m
    # the knee of a step run (loadtests/locustfile.py --mode step --csv PREFIX)
    python -m loadtests.report --steps PREFIX_steps.csv --slo-ms 100
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx

from loadtests.report.analysis import analyse
from loadtests.report.knee import plot_steps, read_steps, steps_markdown
from loadtests.report.metrics import Window, scrape, window_from_prometheus, window_from_scrapes
from loadtests.report.render import markdown, write_outputs

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "loadtests" / "results"


def find_control(args: argparse.Namespace, window: Window) -> tuple[str, str]:
    if args.control:
        return args.control, "--control"
    if args.url:
        models = httpx.get(args.url.rstrip("/") + "/v1/models", timeout=30).json()
        experiment = models.get("experiment") or {}
        if experiment.get("default"):
            return experiment["default"], f"the default of experiment `{experiment['name']}`"
        return models["default"], "the service's default variant (no experiment)"
    weights = window.series("brum_experiment_weight")
    if weights:
        labels, _ = max(weights, key=lambda lv: (lv[1], lv[0]["variant"]))
        return labels["variant"], "the heaviest arm of the experiment (pass --control to choose)"
    raise SystemExit("cannot tell the control arm: pass --control NAME or --url")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.report",
        description="A/B comparison report of brum's variants from their Prometheus metrics.",
    )
    source = parser.add_argument_group("where the metrics come from (one of)")
    source.add_argument("--metrics-before", type=Path, help="scrape of /metrics before the run")
    source.add_argument("--metrics-after", type=Path, help="scrape of /metrics after the run")
    source.add_argument("--prometheus", help="Prometheus base URL (HTTP API)")
    source.add_argument("--run", help="with --url: scrape, run this command, scrape, report")
    source.add_argument("--steps", type=Path, help="PREFIX_steps.csv of a step run: the knee")
    parser.add_argument("--url", help="the brum service: the control, --scrape and --run")
    parser.add_argument("--scrape", type=Path, help="with --url: save one scrape and exit")
    parser.add_argument("--seconds", type=float, help="window length (default: from the scrapes)")
    parser.add_argument("--window", default="5m", help="with --prometheus: range, e.g. 5m")
    parser.add_argument("--at", type=float, help="with --prometheus: end (unix time; now)")
    parser.add_argument("--control", help="control variant (default: the experiment's default)")
    parser.add_argument(
        "--alpha", type=float, default=0.05, help="error rate of the family of arms, at every look"
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=0.01,
        help="non-inferiority margin of online accuracy a cheaper variant may lose (0.01 = 1 pt)",
    )
    parser.add_argument("--slo-ms", type=float, default=100.0, help="p99 latency target (ms)")
    parser.add_argument(
        "--min-agreement", type=float, default=0.9, help="least shadow agreement to accept"
    )
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    parser.add_argument("--name", help="file name stem (default: ab-report, or knee)")
    args = parser.parse_args(argv)
    if (args.scrape or args.run) and not args.url:
        parser.error("--scrape and --run need --url")
    chosen = [
        bool(args.metrics_before or args.metrics_after),
        bool(args.prometheus),
        bool(args.run),
        bool(args.steps),
    ]
    if not args.scrape and sum(chosen) != 1:
        parser.error("give one of: --metrics-before/--metrics-after, --prometheus, --run, --steps")
    if bool(args.metrics_before) != bool(args.metrics_after):
        parser.error("--metrics-before and --metrics-after go together")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.scrape:
        scrape(args.url, args.scrape)
        print(f"scraped {args.url}/metrics -> {args.scrape}")
        return 0
    if args.steps:
        rows = read_steps(args.steps)
        text, crossing = steps_markdown(rows, args.slo_ms, args.steps)
        args.output_dir.mkdir(parents=True, exist_ok=True)
        name = args.name or "knee"
        (args.output_dir / f"{name}.md").write_text(text)
        plot_steps(rows, args.slo_ms, crossing, args.output_dir / f"{name}.png")
        print(text)
        return 0
    if args.run:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        before = args.output_dir / f"{args.name or 'ab-report'}-before.prom"
        after = args.output_dir / f"{args.name or 'ab-report'}-after.prom"
        scrape(args.url, before)
        status = subprocess.run(shlex.split(args.run), check=False).returncode
        time.sleep(1)  # let shadow scoring still running finish
        scrape(args.url, after)
        if status not in (0, 1):  # locust exits 1 when any request failed: still a result
            print(f"the load command failed with exit code {status}", file=sys.stderr)
            return status
        window = window_from_scrapes(before, after, args.seconds)
    elif args.prometheus:
        window = window_from_prometheus(args.prometheus, args.window, args.at)
    else:
        window = window_from_scrapes(args.metrics_before, args.metrics_after, args.seconds)
    control, reason = find_control(args, window)
    report = analyse(
        window, control, reason, args.alpha, args.margin, args.slo_ms, args.min_agreement
    )
    paths = write_outputs(report, args.output_dir, args.name or "ab-report")
    print(markdown(report))
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
