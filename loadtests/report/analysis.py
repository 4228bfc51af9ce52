"""The variants compared over a window, on statistics that stay valid at every look.

The report may be re-run at any moment against Prometheus while traffic flows, so every
interval is a confidence sequence (app/rollout/sequential.py, the statistics the rollout
controller decides with): stopping at the first look that shows a difference keeps the error
rate at alpha. The candidate arms form one family: each is compared with the control at
alpha / arms (Bonferroni), measure by measure.

- Online accuracy: the difference from the control, a verdict (better, non-inferior within the
  margin, worse beyond it, or undecided with the judgments still needed).
- Errors: the error ratio's difference from the control (more errors, fewer, or none shown).
- Latency: against the p99 target, the share of the arm's requests slower than the target's
  bucket bound (meets the target when surely under 1%, breaks it when surely over); against the
  control, the share slower than the control's p99 bucket bound, candidate minus control.
- Shadow agreement: against the minimum agreement (above, below or undecided).
- Cost: a total of CPU time, not a sample: the ratio is stated without a test.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from app.rollout import sequential
from app.rollout.sequential import Interval, Verdict
from loadtests.report.histogram import histogram_quantile, tail, tail_bound
from loadtests.report.metrics import Window

NO_VARIANT = "none"
QUANTILES = (0.5, 0.95, 0.99)
SLO_QUANTILE = 0.99
# Error ratios and latency tails sit near 1%: the mixture resolves differences of about a point
# fastest (see app/rollout/sequential.py on tau).
TAIL_TAU = 0.01

Against = Literal["higher", "lower", "no difference shown"]
Bound = Literal["above", "below", "undecided"]


@dataclass
class Difference:
    """Candidate minus control of a rate, with its confidence sequence."""

    estimate: float
    interval: Interval
    outcome: Against


def difference(control: tuple[float, float], candidate: tuple[float, float], alpha: float):
    estimate, interval = sequential.difference_interval(control, candidate, alpha, TAIL_TAU)
    outcome: Against = (
        "higher" if interval.low > 0 else "lower" if interval.high < 0 else "no difference shown"
    )
    return Difference(estimate, interval, outcome)


def against_level(interval: Interval, level: float) -> Bound:
    return "above" if interval.low > level else "below" if interval.high < level else "undecided"


@dataclass
class Shadow:
    shadow: str
    agree: float = 0
    disagree: float = 0
    shed: float = 0
    error: float = 0
    interval: Interval | None = None
    verdict: Bound | None = None  # against the minimum agreement

    @property
    def judged(self) -> float:
        return self.agree + self.disagree

    @property
    def agreement(self) -> float | None:
        return self.agree / self.judged if self.judged else None


@dataclass
class VariantStats:
    name: str
    requests: float = 0
    ok: float = 0
    errors: float = 0
    throughput_rps: float = 0
    texts: float = 0
    cost: float = 0
    currency: str = ""
    cost_per_1k: float | None = None
    cpu_ms_per_prediction: float | None = None
    latency_s: dict[str, float] = field(default_factory=dict)
    buckets: list[tuple[float, float]] = field(default_factory=list)
    slow: tuple[float, float] = (0, 0)  # (slower than the p99 target's lower bound, all)
    slo: Literal["meets", "breaks", "undecided"] | None = None
    shadows: list[Shadow] = field(default_factory=list)
    feedback: int = 0
    correct: int = 0
    online_accuracy: float | None = None
    accuracy_interval: tuple[float, float] | None = None
    offline_accuracy: float | None = None
    offline_macro_f1: float | None = None
    size_bytes: float | None = None
    weight: float | None = None


@dataclass
class Comparison:
    variant: str
    alpha: float  # this arm's share of the family's alpha
    accuracy: Verdict | None = None
    errors: Difference | None = None
    tail_bound_s: float | None = None  # the control's p99 bucket bound
    tail: Difference | None = None  # share slower than tail_bound_s, against the control's
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    cost_ratio: float | None = None


@dataclass
class Report:
    source: str
    seconds: float
    control: str
    control_reason: str
    experiment: str | None
    alpha: float
    margin: float
    slo_ms: float
    # The bucket bounds on either side of the p99 target (the same when it is a bound): it is
    # met when surely under 1% of the requests are slower than the lower one, broken when surely
    # over 1% are slower than the upper one.
    slo_bounds_s: tuple[float, float]
    min_agreement: float
    variants: list[VariantStats]
    comparisons: list[Comparison]
    recommendation: str
    recommended: str | None
    notes: list[str]


def collect(window: Window, control: str) -> dict[str, VariantStats]:
    """Per-variant sums of every series the report reads."""
    per: dict[str, VariantStats] = {}

    def stats(name: str) -> VariantStats:
        return per.setdefault(name, VariantStats(name))

    for labels, value in window.series("brum_model_size_bytes"):
        stats(labels["variant"]).size_bytes = value
    for labels, value in window.series("brum_model_offline_accuracy"):
        stats(labels["variant"]).offline_accuracy = value
    for labels, value in window.series("brum_model_offline_macro_f1"):
        stats(labels["variant"]).offline_macro_f1 = value
    for labels, value in window.series("brum_experiment_weight"):
        stats(labels["variant"]).weight = value
    for labels, value in window.series("brum_requests_total"):
        s = stats(labels["variant"])
        s.requests += value
        if labels["status"].startswith("2"):
            s.ok += value
        else:
            s.errors += value
    for labels, value in window.series("brum_texts_total"):
        stats(labels["variant"]).texts += value
    cpu: dict[str, float] = defaultdict(float)
    for labels, value in window.series("brum_inference_cpu_seconds_total"):
        cpu[labels["variant"]] += value
    for labels, value in window.series("brum_inference_cost_total"):
        s = stats(labels["variant"])
        s.cost += value
        s.currency = labels["currency"]
    buckets: dict[str, dict[float, float]] = defaultdict(dict)
    for labels, value in window.series("brum_request_duration_seconds_bucket"):
        le = float(labels["le"])
        buckets[labels["variant"]][le] = buckets[labels["variant"]].get(le, 0.0) + value
    shadows: dict[tuple[str, str], Shadow] = {}
    for labels, value in window.series("brum_shadow_requests_total"):
        shadow = shadows.setdefault((labels["variant"], labels["shadow"]), Shadow(labels["shadow"]))
        if labels["outcome"] in ("agree", "disagree", "shed", "error"):
            setattr(shadow, labels["outcome"], getattr(shadow, labels["outcome"]) + value)
    feedback: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for labels, value in window.series("brum_feedback_total"):
        feedback[labels["variant"]][labels["outcome"]] += value
    per.pop(NO_VARIANT, None)
    stats(control)
    for name, s in per.items():
        s.throughput_rps = s.ok / window.seconds if window.seconds > 0 else 0.0
        if s.texts > 0:
            s.cost_per_1k = s.cost / s.texts * 1000
            s.cpu_ms_per_prediction = cpu[name] / s.texts * 1000
        s.buckets = sorted(buckets.get(name, {}).items())
        if s.buckets and s.buckets[-1][1] > 0:
            s.latency_s = {
                f"p{round(q * 100)}": histogram_quantile(q, s.buckets) for q in QUANTILES
            }
        s.shadows = [shadow for (served, _), shadow in sorted(shadows.items()) if served == name]
        s.correct = round(feedback[name]["correct"])
        s.feedback = s.correct + round(feedback[name]["incorrect"])
        if s.feedback:
            s.online_accuracy = s.correct / s.feedback
    return per


def judge_slo(buckets: list[tuple[float, float]], bounds: tuple[float, float], alpha: float):
    share = 1 - SLO_QUANTILE
    within = sequential.proportion_interval(*tail(buckets, bounds[0]), alpha, TAIL_TAU)
    beyond = sequential.proportion_interval(*tail(buckets, bounds[1]), alpha, TAIL_TAU)
    return "meets" if within.high < share else "breaks" if beyond.low > share else "undecided"


def judge_arms(
    per: dict[str, VariantStats],
    alpha: float,
    margin: float,
    slo_bounds_s: tuple[float, float],
    min_agreement: float,
) -> None:
    """Each arm on its own: accuracy, the p99 target and shadow agreement, at alpha."""
    tau = sequential.default_tau(margin)
    for s in per.values():
        if s.feedback:
            interval = sequential.proportion_interval(s.correct, s.feedback, alpha, tau)
            s.accuracy_interval = (interval.low, interval.high)
        if s.buckets and s.buckets[-1][1] > 0:
            s.slow = tail(s.buckets, slo_bounds_s[0])
            s.slo = judge_slo(s.buckets, slo_bounds_s, alpha)
        for shadow in s.shadows:
            if shadow.judged:
                shadow.interval = sequential.proportion_interval(
                    shadow.agree, shadow.judged, alpha, tau
                )
                shadow.verdict = against_level(shadow.interval, min_agreement)


def compare(s: VariantStats, control: VariantStats, alpha: float, margin: float) -> Comparison:
    """One candidate against the control; ``alpha`` is already its share of the family's."""
    c = Comparison(s.name, alpha)
    if s.feedback and control.feedback:
        c.accuracy = sequential.compare(
            (control.correct, control.feedback), (s.correct, s.feedback), margin, alpha
        )
    if s.requests and control.requests:
        c.errors = difference((control.errors, control.requests), (s.errors, s.requests), alpha)
    if s.latency_s and control.latency_s:
        c.latency_p50_ms = (s.latency_s["p50"] - control.latency_s["p50"]) * 1000
        c.latency_p99_ms = (s.latency_s["p99"] - control.latency_s["p99"]) * 1000
        c.tail_bound_s = tail_bound(control.buckets, SLO_QUANTILE)
        c.tail = difference(
            tail(control.buckets, c.tail_bound_s), tail(s.buckets, c.tail_bound_s), alpha
        )
    if s.cost_per_1k is not None and control.cost_per_1k:
        c.cost_ratio = s.cost_per_1k / control.cost_per_1k
    return c


def slo_bounds(bounds: list[float], target: float) -> tuple[float, float]:
    close = 1e-12  # 0.1 written as a label and parsed back
    below = max((b for b in bounds if b <= target + close), default=0.0)
    above = min((b for b in bounds if b >= target - close), default=math.inf)
    return below, above


def analyse(
    window: Window,
    control: str,
    control_reason: str,
    alpha: float = 0.05,
    margin: float = 0.01,
    slo_ms: float = 100.0,
    min_agreement: float = 0.9,
) -> Report:
    per = collect(window, control)
    experiments = {labels["experiment"] for labels, _ in window.series("brum_experiment_weight")}
    others = [s for name, s in sorted(per.items()) if name != control]
    family = max(1, len(others))
    bounds = sorted({le for s in per.values() for le, _ in s.buckets if math.isfinite(le)})
    report = Report(
        source=window.source,
        seconds=window.seconds,
        control=control,
        control_reason=control_reason,
        experiment=", ".join(sorted(experiments)) or None,
        alpha=alpha,
        margin=margin,
        slo_ms=slo_ms,
        slo_bounds_s=slo_bounds(bounds, slo_ms / 1000),
        min_agreement=min_agreement,
        variants=[per[control], *others],
        comparisons=[],
        recommendation="",
        recommended=None,
        notes=list(window.notes),
    )
    judge_arms(per, alpha, margin, report.slo_bounds_s, min_agreement)
    report.comparisons = [compare(s, per[control], alpha / family, margin) for s in others]
    report.recommended, report.recommendation = recommend(report)
    if any(s.errors for s in report.variants):
        report.notes.append("latency histograms include the failed requests (429/503) of a variant")
    return report


def points(value: float) -> str:
    return f"{value * 100:+.1f}"


def left_out_because(s: VariantStats, c: Comparison, report: Report) -> str | None:
    """Why an arm cannot replace the control (every reason), or None when it can."""
    if s.cost_per_1k is None:
        return f"`{s.name}` served nothing"
    reasons = []
    verdict = c.accuracy
    if verdict is None:
        reasons.append("has no feedback (its accuracy cannot be judged)")
    elif verdict.outcome == "worse":
        reasons.append(
            f"is less accurate beyond the margin ({points(verdict.difference)} points, interval "
            f"[{points(verdict.interval.low)}, {points(verdict.interval.high)}] below "
            f"-{report.margin * 100:g})"
        )
    elif verdict.outcome == "undecided":
        needed = (
            f"about {verdict.judgments_needed:,} more judgments (both arms, split as now) would "
            "decide it if the difference holds"
            if verdict.judgments_needed is not None
            else "it sits on the margin, where no number of judgments decides it"
        )
        reasons.append(
            f"is undecided: {points(verdict.difference)} points, interval "
            f"[{points(verdict.interval.low)}, {points(verdict.interval.high)}] reaches below "
            f"the -{report.margin * 100:g}-point margin; {needed} (it has {s.feedback:,})"
        )
    if s.slo == "breaks":
        reasons.append(
            f"breaks the p99 target of {report.slo_ms:g} ms ({s.slow[0] / s.slow[1]:.1%} of its "
            f"requests took over {report.slo_bounds_s[0] * 1000:g} ms)"
        )
    if c.errors is not None and c.errors.outcome == "higher":
        reasons.append(f"fails more often than the control ({points(c.errors.estimate)} points)")
    return f"`{s.name}` " + ", and ".join(reasons) if reasons else None


def recommend(report: Report) -> tuple[str | None, str]:
    """The cheapest arm (cost per 1k) shown non-inferior to the control in online accuracy,
    within the p99 target and failing no more often; the control is always a candidate."""
    control = report.variants[0]
    if control.cost_per_1k is None:
        return None, f"No recommendation: the control `{control.name}` served no prediction."
    by_name = {c.variant: c for c in report.comparisons}
    candidates, left_out = [control], []
    for s in report.variants[1:]:
        reason = left_out_because(s, by_name[s.name], report)
        if reason is None:
            candidates.append(s)
        else:
            left_out.append(reason)
    best = min(candidates, key=lambda s: s.cost_per_1k or math.inf)
    currency = best.currency or "(currency)"
    if best is control:
        text = (
            f"**Recommendation: keep the control `{control.name}`.** No other variant is both "
            f"cheaper per 1,000 predictions ({control.cost_per_1k:.3g} {currency}) and shown "
            f"non-inferior online (a {report.margin * 100:g}-point margin on its accuracy)."
        )
    else:
        c = by_name[best.name]
        assert c.accuracy is not None
        text = (
            f"**Recommendation: run `{best.name}`.** It is the cheapest variant "
            f"({best.cost_per_1k:.3g} {currency} per 1,000 predictions, "
            f"{(1 - (c.cost_ratio or 1)) * 100:.0f}% below the control `{control.name}`) shown "
            f"{c.accuracy.outcome} online: {best.online_accuracy:.3f} (n={best.feedback:,}) "
            f"against {control.online_accuracy:.3f} (n={control.feedback:,}), a difference of "
            f"{points(c.accuracy.difference)} points (confidence sequence "
            f"[{points(c.accuracy.interval.low)}, {points(c.accuracy.interval.high)}] at alpha "
            f"{c.alpha:.3g}, above the -{report.margin * 100:g}-point margin)."
        )
    if left_out:
        text += " Left out: " + "; ".join(left_out) + "."
    return best.name, text
