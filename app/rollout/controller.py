"""The rollout controller: reads the evidence from Prometheus (so summed over every replica),
decides with always-valid statistics, and moves the traffic through brum's experiment source.

One decision per look:
- **roll back** at once when a gate fails: the candidate is worse than the control beyond the
  accuracy margin, its p99 latency or error ratio is over the gate, its shadow agreement is
  surely under the minimum, or the step has lasted ``max_step_seconds`` still undecided;
- **promote** to the next step when every gate passes: at least ``min_judgments`` per arm, the
  candidate non-inferior (or better), the step at least ``min_step_seconds`` old;
- **hold** otherwise, saying what is still missing.

The rollout's state (step, when it began, status) lives in the experiment itself, written
through brum's admin API to the shared store: a restarted controller resumes where it was, and
every replica follows the same weights.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Literal

import httpx

from app.core.experiment import Arm, Experiment, Rollout
from app.rollout.sequential import Verdict, compare, proportion_interval

logger = logging.getLogger("brum.rollout")

Action = Literal["promote", "hold", "rollback"]


@dataclass(frozen=True)
class Evidence:
    control: tuple[int, int]  # (correct, judged) since the rollout began
    candidate: tuple[int, int]
    requests: float  # the candidate's, during this step
    error_ratio: float | None
    p99_seconds: float | None
    agreement: tuple[int, int] | None  # (agree, compared), if the candidate is shadowed


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    verdict: Verdict | None = None


def gained(start: float, values: list[float]) -> int:
    """Events a counter gained from ``start`` through its samples ``values``; a drop is its
    process's restart, from 0, so the new value counts whole."""
    total, previous = 0.0, start
    for value in values:
        total += value - previous if value >= previous else value
        previous = value
    return round(total)


class PrometheusEvidence:
    """The evidence, from Prometheus's HTTP API, summed over every replica.

    Judgments are counted exactly from each series' raw samples since the rollout began (a
    drop is a replica's restart: its new value counts whole). PromQL's ``increase()`` would
    miss what came between the last sample before the start and the first after it, and
    extrapolate the rest to the window's edges: counts the always-valid intervals cannot use."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def _query(self, promql: str) -> list[dict]:
        response = self.client.get("/api/v1/query", params={"query": promql})
        response.raise_for_status()
        return response.json()["data"]["result"]

    def _scalar(self, promql: str) -> float | None:
        rows = self._query(promql)
        value = float(rows[0]["value"][1]) if rows else None
        return None if value is None or math.isnan(value) else value

    def _counted(self, selector: str, by: str, since: float, now: float) -> dict[str, int]:
        """Events each counter series gained since ``since``, summed by the label ``by``."""

        def series(row: dict) -> frozenset:
            return frozenset(row["metric"].items())

        # The last sample at or before the start; a series born later (a new replica) starts at 0.
        baseline = {
            series(row): float(row["value"][1]) for row in self._query(f"{selector} @ {since:.3f}")
        }
        window = f"{max(1, math.ceil(now - since))}s"
        counted: dict[str, int] = defaultdict(int)
        for row in self._query(f"{selector}[{window}]"):
            values = [float(value) for _, value in row["values"]]
            counted[row["metric"].get(by, "")] += gained(baseline.get(series(row), 0.0), values)
        return counted

    def gather(self, rollout: Rollout, now: float) -> Evidence:
        since = rollout.started_at or now
        step = f"{max(1, math.ceil(now - (rollout.step_started_at or now)))}s"
        control, candidate = rollout.control, rollout.candidate

        def judged(variant: str) -> tuple[int, int]:
            outcomes = self._counted(
                f'brum_feedback_total{{variant="{variant}"}}', "outcome", since, now
            )
            return outcomes["correct"], outcomes["correct"] + outcomes["incorrect"]

        # Ratios and a quantile over the step: extrapolation cancels out of them.
        requests = self._scalar(
            f'sum(increase(brum_requests_total{{variant="{candidate}"}}[{step}]))'
        )
        errors = self._scalar(
            f'sum(increase(brum_requests_total{{variant="{candidate}",status=~"5..|429"}}[{step}]))'
        )
        p99 = self._scalar(
            "histogram_quantile(0.99, sum by (le) (rate(brum_request_duration_seconds_bucket"
            f'{{variant="{candidate}"}}[{step}])))'
        )
        shadow = self._counted(
            f'brum_shadow_requests_total{{variant="{control}",shadow="{candidate}"}}',
            "outcome",
            since,
            now,
        )
        compared = shadow["agree"] + shadow["disagree"]
        return Evidence(
            control=judged(control),
            candidate=judged(candidate),
            requests=requests or 0.0,
            error_ratio=(errors or 0.0) / requests if requests else None,
            p99_seconds=p99,
            agreement=(shadow["agree"], compared) if compared else None,
        )


def decide(rollout: Rollout, evidence: Evidence, now: float) -> Decision:
    gates = rollout.gates
    verdict = compare(evidence.control, evidence.candidate, gates.accuracy_margin, gates.alpha)
    if verdict.outcome == "worse":
        return Decision(
            "rollback",
            f"online accuracy worse than the control beyond the margin: difference "
            f"{verdict.difference:+.4f}, interval [{verdict.interval.low:+.4f}, "
            f"{verdict.interval.high:+.4f}] below -{gates.accuracy_margin}",
            verdict,
        )
    p99 = evidence.p99_seconds
    if gates.p99_latency_ms is not None and p99 is not None and p99 * 1000 > gates.p99_latency_ms:
        return Decision(
            "rollback",
            f"p99 latency {p99 * 1000:.1f} ms over the gate {gates.p99_latency_ms:g} ms",
            verdict,
        )
    if evidence.error_ratio is not None and evidence.error_ratio > gates.max_error_ratio:
        return Decision(
            "rollback",
            f"error ratio {evidence.error_ratio:.3%} over the gate {gates.max_error_ratio:.3%}",
            verdict,
        )
    if gates.min_agreement is not None and evidence.agreement is not None:
        agree = proportion_interval(*evidence.agreement, gates.alpha, gates.accuracy_margin * 2)
        if agree.high < gates.min_agreement:
            return Decision(
                "rollback",
                f"shadow agreement at most {agree.high:.3f}, under {gates.min_agreement}",
                verdict,
            )
    age = now - (rollout.step_started_at or now)
    missing = []
    judged = min(evidence.control[1], evidence.candidate[1])
    if judged < gates.min_judgments:
        missing.append(f"{judged:,.0f} of {gates.min_judgments:,} judgments per arm")
    if verdict.outcome not in ("non-inferior", "better"):
        needed = verdict.judgments_needed
        missing.append(
            f"accuracy undecided ({verdict.difference:+.4f}, interval "
            f"[{verdict.interval.low:+.4f}, {verdict.interval.high:+.4f}]"
            + (f"; about {needed:,} more judgments)" if needed else ")")
        )
    if age < rollout.min_step_seconds:
        missing.append(f"{age:.0f} of {rollout.min_step_seconds:g} s at this step")
    if not missing:
        return Decision("promote", f"every gate passed ({verdict.outcome})", verdict)
    if age >= rollout.max_step_seconds:
        return Decision(
            "rollback",
            f"still undecided after {age:.0f} s at this step: " + "; ".join(missing),
            verdict,
        )
    return Decision("hold", "; ".join(missing), verdict)


def weights(rollout: Rollout) -> list[Arm]:
    share = rollout.steps[rollout.step]
    if rollout.status == "rolled-back":
        return [Arm(variant=rollout.control, weight=1)]
    if rollout.status == "promoted" or share >= 100:
        return [Arm(variant=rollout.candidate, weight=1)]
    return [
        Arm(variant=rollout.control, weight=100 - share),
        Arm(variant=rollout.candidate, weight=share),
    ]


def apply(experiment: Experiment, decision: Decision | None, now: float) -> Experiment:
    """The experiment after the decision (None: start the rollout at its first step)."""
    rollout = experiment.rollout
    assert rollout is not None
    if decision is None:
        rollout = rollout.model_copy(
            update={"started_at": rollout.started_at or now, "step_started_at": now}
        )
    elif decision.action == "rollback":
        rollout = rollout.model_copy(update={"status": "rolled-back", "reason": decision.reason})
    elif decision.action == "promote":
        last = rollout.step + 1 >= len(rollout.steps)
        rollout = rollout.model_copy(
            update={
                "step": rollout.step if last else rollout.step + 1,
                "step_started_at": now,
                "status": "promoted" if last else "running",
                "reason": decision.reason,
            }
        )
    else:
        return experiment
    return experiment.model_copy(update={"rollout": rollout, "arms": weights(rollout)})


def describe(decision: Decision, evidence: Evidence) -> dict:
    """One log line's worth: the decision and everything it rested on."""
    verdict = decision.verdict
    return {
        "action": decision.action,
        "reason": decision.reason,
        "evidence": asdict(evidence),
        "verdict": asdict(verdict) if verdict else None,
        "at": time.time(),
    }
