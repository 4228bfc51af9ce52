"""Run the rollout controller: ``python -m app.rollout --brum URL --prometheus URL``.

It acts on the experiment that brum runs (read and written through the admin API, so through
the shared store to every replica) when that experiment has a ``rollout:`` section, and
exports its own metrics. ``--dry-run`` logs what it would do and changes nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import httpx
from prometheus_client import Counter, Gauge, start_http_server

from app.core.experiment import Experiment
from app.logs import configure_logging
from app.rollout.controller import PrometheusEvidence, apply, decide, describe

logger = logging.getLogger("brum.rollout")

STEP = Gauge(
    "brum_rollout_step",
    "The candidate's traffic share in percent (100 once promoted, 0 once rolled back).",
    ["experiment", "candidate"],
)
DECISIONS = Counter(
    "brum_rollout_decisions", "Rollout decisions by action.", ["experiment", "action"]
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m app.rollout", description=__doc__)
    parser.add_argument("--brum", required=True, help="brum's URL (the Service or balancer)")
    parser.add_argument("--prometheus", required=True, help="Prometheus's URL")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between looks")
    parser.add_argument("--metrics-port", type=int, default=9108, help="0: no metrics server")
    parser.add_argument("--dry-run", action="store_true", help="log decisions, change nothing")
    parser.add_argument("--once", action="store_true", help="one look, then exit")
    return parser.parse_args(argv)


def share(experiment: Experiment) -> float:
    rollout = experiment.rollout
    assert rollout is not None
    if rollout.status == "rolled-back":
        return 0.0
    return 100.0 if rollout.status == "promoted" else rollout.steps[rollout.step]


def look(brum: httpx.Client, evidence: PrometheusEvidence, dry_run: bool) -> None:
    found = brum.get("/admin/experiment")
    found.raise_for_status()
    if found.json() is None:
        logger.info("no experiment running")
        return
    experiment = Experiment.model_validate(found.json())
    rollout = experiment.rollout
    if rollout is None:
        logger.info("experiment %s has no rollout", experiment.name)
        return
    now = time.time()
    if rollout.status != "running":
        STEP.labels(experiment.name, rollout.candidate).set(share(experiment))
        return
    if rollout.started_at is None:
        changed, record = apply(experiment, None, now), {"action": "start"}
    else:
        gathered = evidence.gather(rollout, now)
        decision = decide(rollout, gathered, now)
        changed, record = apply(experiment, decision, now), describe(decision, gathered)
        DECISIONS.labels(experiment.name, decision.action).inc()
    record |= {"experiment": experiment.name, "candidate": rollout.candidate, "dry_run": dry_run}
    record["share_before"], record["share_after"] = share(experiment), share(changed)
    logger.info("rollout decision %s", json.dumps(record, default=str))
    if changed != experiment and not dry_run:
        put = brum.put("/admin/experiment", json=changed.model_dump(mode="json"))
        put.raise_for_status()
        experiment = changed
    STEP.labels(experiment.name, rollout.candidate).set(share(experiment))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(
        os.environ.get("BRUM_LOG_LEVEL", "info"), os.environ.get("BRUM_LOG_FORMAT", "text")
    )
    token = os.environ.get("BRUM_ADMIN_TOKEN")
    if not token:
        logger.error(
            "BRUM_ADMIN_TOKEN is not set: the controller changes weights through brum's admin API"
        )
        return 2
    if args.metrics_port:
        start_http_server(args.metrics_port)
    headers = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(base_url=args.brum, headers=headers, timeout=10) as brum,
        httpx.Client(base_url=args.prometheus, timeout=10) as prometheus,
    ):
        evidence = PrometheusEvidence(prometheus)
        while True:
            try:
                look(brum, evidence, args.dry_run)
            except (
                httpx.HTTPError,
                ValueError,
            ) as exc:  # keep looking: brum or Prometheus may be back
                logger.warning("look failed: %s", exc)
            if args.once:
                return 0
            time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
