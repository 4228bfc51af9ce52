"""A/B comparison report of brum's variants after a load run, from its Prometheus metrics.

The metrics come from two scrapes of ``/metrics`` (before and after the run: the report uses
the counters' differences) or from Prometheus's HTTP API (``increase(...[window])``). Per
variant: requests, errors, throughput, p50/p95/p99 latency (from the histogram's bucket
differences, interpolated like ``histogram_quantile``), cost per 1,000 predictions, shadow
agreement, online accuracy with a 95% Wilson interval; and against the control arm (``--control``,
else the experiment's ``default``): whether online accuracy and latency differ significantly.
Writes ``NAME.md``, ``NAME.png`` and ``NAME.json``, prints the markdown, and ends with a
recommendation: the cheapest variant shown non-inferior to the control in online accuracy
(within ``--margin``), and, for a variant the feedback cannot yet judge, how much more it needs.

Tests (stated in the report too):
- online accuracy: two-sided two-proportion z-test (pooled), or Fisher's exact test when an
  expected cell count is below 5; the difference's 95% interval is Newcombe's (from Wilson's);
- latency: the histograms are all there is (no per-request samples, so no Mann-Whitney): a
  chi-square test of homogeneity on the two variants' bucket counts, sparse buckets merged so
  every expected count is at least 5. It says whether the distributions differ, not by how much;
  the p50/p99 differences say which way;
- cost: a total of CPU time, not a sample: the difference is stated without a test;
- switching: "not significantly worse" is not evidence of "as good" (a small run is never
  significant), so a variant replaces the control only if it is non-inferior: the lower end of its
  accuracy difference's 95% interval lies above ``-margin`` (a one-sided test at 2.5%).
Each comparison is at ``--alpha`` (0.05) on its own, without a multiple-comparison correction.

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
import csv
import json
import math
import re
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtests.stats import (
    bucket_counts,
    chi_square_homogeneity,
    compare_proportions,
    histogram_quantile,
    newcombe_interval,
    non_inferiority_sample_size,
    wilson_interval,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "loadtests" / "results"
SCRAPED_AT = "# brum-report scraped-at "
NO_VARIANT = "none"
QUANTILES = (0.5, 0.95, 0.99)

# (sample name, labels kept) of every counter the report reads, and the gauges.
COUNTERS = {
    "brum_requests_total": ("variant", "status"),
    "brum_request_duration_seconds_bucket": ("variant", "le"),
    "brum_texts_total": ("variant",),
    "brum_inference_cost_total": ("variant", "currency"),
    "brum_inference_cpu_seconds_total": ("variant",),
    "brum_shadow_requests_total": ("variant", "shadow", "outcome"),
    "brum_feedback_total": ("variant", "outcome"),
}
GAUGES = {
    "brum_model_size_bytes": ("variant",),
    "brum_model_offline_accuracy": ("variant",),
    "brum_experiment_weight": ("experiment", "variant"),
}

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


# --- reading the metrics ----------------------------------------------------------------------


@dataclass
class Window:
    """Counter increases over a window, the gauges at its end, and how long it was."""

    counters: Samples
    gauges: Samples
    seconds: float
    source: str
    notes: list[str] = field(default_factory=list)

    def series(self, name: str) -> list[tuple[dict[str, str], float]]:
        samples = self.gauges if name in GAUGES else self.counters
        return [(dict(labels), value) for (n, labels), value in samples.items() if n == name]


def parse_exposition(text: str) -> Samples:
    wanted = COUNTERS | GAUGES
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            keep = wanted.get(sample.name)
            if keep is None:
                continue
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k in keep))
            samples[(sample.name, labels)] = samples.get((sample.name, labels), 0.0) + sample.value
    return samples


def scraped_at(path: Path) -> float:
    """When a scrape was taken: its ``# brum-report scraped-at`` line, else the file's mtime."""
    with path.open() as f:
        first = f.readline()
    if first.startswith(SCRAPED_AT):
        return float(first.removeprefix(SCRAPED_AT))
    return path.stat().st_mtime


def scrape(url: str, path: Path) -> None:
    response = httpx.get(url.rstrip("/") + "/metrics", timeout=30)
    response.raise_for_status()
    path.write_text(f"{SCRAPED_AT}{time.time():.3f}\n{response.text}")


def window_from_scrapes(before: Path, after: Path, seconds: float | None = None) -> Window:
    first, last = parse_exposition(before.read_text()), parse_exposition(after.read_text())
    notes = []
    counters: Samples = {}
    for key, value in last.items():
        if key[0] not in COUNTERS:
            continue
        delta = value - first.get(key, 0.0)
        if delta < 0:  # the counter was reset (a restart): count from zero
            notes.append(f"{key[0]}{dict(key[1])} went down (restart?): counted from zero")
            delta = value
        counters[key] = delta
    gauges = {k: v for k, v in last.items() if k[0] in GAUGES}
    measured = seconds if seconds is not None else scraped_at(after) - scraped_at(before)
    source = f"two scrapes of /metrics: `{before.name}` -> `{after.name}`"
    return Window(counters, gauges, measured, source, notes)


def parse_duration(text: str) -> float:
    """Prometheus durations: 90s, 5m, 1h30m, 2d; a bare number is seconds."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (e.g. 90s, 5m, 1h)")
    return sum(int(n) * units[u] for n, u in parts)


def window_from_prometheus(url: str, window: str, at: float | None = None) -> Window:
    """``sum by (labels) (increase(counter[window]))`` and the gauges, evaluated at ``at``."""
    seconds = parse_duration(window)
    at = time.time() if at is None else at
    client = httpx.Client(base_url=url.rstrip("/"), timeout=30)

    def query(promql: str) -> list[dict]:
        response = client.get("/api/v1/query", params={"query": promql, "time": f"{at:.3f}"})
        response.raise_for_status()
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus refused {promql!r}: {body}")
        return body["data"]["result"]

    def collect(name: str, keep: tuple[str, ...], promql: str, into: Samples) -> None:
        for result in query(promql):
            labels = tuple(sorted((k, v) for k, v in result["metric"].items() if k in keep))
            value = float(result["value"][1])
            if not math.isnan(value):
                into[(name, labels)] = value

    counters: Samples = {}
    gauges: Samples = {}
    with client:
        for name, keep in COUNTERS.items():
            by = ", ".join(keep)
            collect(name, keep, f"sum by ({by}) (increase({name}[{window}]))", counters)
        for name, keep in GAUGES.items():
            collect(name, keep, f"max by ({', '.join(keep)}) ({name})", gauges)
    end = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    source = f"Prometheus `{url}`, `increase(...[{window}])` at {end}"
    notes = [
        "increase() extrapolates to the window's edges, so counts are not whole numbers; they "
        "are rounded for the tests. Throughput divides by the whole window: match it to the run."
    ]
    return Window(counters, gauges, seconds, source, notes)


# --- the analysis -----------------------------------------------------------------------------


@dataclass
class Shadow:
    shadow: str
    agree: float = 0
    disagree: float = 0
    shed: float = 0
    error: float = 0

    @property
    def judged(self) -> float:
        return self.agree + self.disagree

    @property
    def agreement(self) -> float | None:
        return self.agree / self.judged if self.judged else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.agree, self.judged) if self.judged else None


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
    shadows: list[Shadow] = field(default_factory=list)
    feedback: int = 0
    correct: int = 0
    online_accuracy: float | None = None
    accuracy_interval: tuple[float, float] | None = None
    offline_accuracy: float | None = None
    size_bytes: float | None = None
    weight: float | None = None


@dataclass
class Comparison:
    variant: str
    accuracy_difference: float | None = None
    accuracy_interval: tuple[float, float] | None = None
    accuracy_test: str | None = None
    accuracy_p: float | None = None
    accuracy_significant: bool = False
    accuracy_worse: bool = False
    non_inferior: bool = False
    judgments_needed: int | None = None  # per arm, for non-inferiority if the arms are equal
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_chi2: float | None = None
    latency_df: int | None = None
    latency_p: float | None = None
    latency_significant: bool = False
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
    variants: list[VariantStats]
    comparisons: list[Comparison]
    recommendation: str
    recommended: str | None
    notes: list[str]


def analyse(
    window: Window,
    control: str,
    control_reason: str,
    alpha: float = 0.05,
    margin: float = 0.01,
) -> Report:
    per: dict[str, VariantStats] = {}

    def stats(name: str) -> VariantStats:
        return per.setdefault(name, VariantStats(name))

    for labels, value in window.series("brum_model_size_bytes"):
        stats(labels["variant"]).size_bytes = value
    for labels, value in window.series("brum_model_offline_accuracy"):
        stats(labels["variant"]).offline_accuracy = value
    experiments = set()
    for labels, value in window.series("brum_experiment_weight"):
        stats(labels["variant"]).weight = value
        experiments.add(labels["experiment"])
    for labels, value in window.series("brum_requests_total"):
        if labels["variant"] == NO_VARIANT:
            continue
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
        key = (labels["variant"], labels["shadow"])
        shadow = shadows.setdefault(key, Shadow(labels["shadow"]))
        outcome = labels["outcome"]
        if outcome in ("agree", "disagree", "shed", "error"):
            setattr(shadow, outcome, getattr(shadow, outcome) + value)
    feedback: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for labels, value in window.series("brum_feedback_total"):
        feedback[labels["variant"]][labels["outcome"]] += value
    per.pop(NO_VARIANT, None)
    if control not in per:
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
        correct = round(feedback[name]["correct"])
        s.feedback = correct + round(feedback[name]["incorrect"])
        s.correct = correct
        if s.feedback:
            s.online_accuracy = correct / s.feedback
            s.accuracy_interval = wilson_interval(correct, s.feedback)

    control_stats = per[control]
    comparisons = [
        compare(s, control_stats, alpha, margin)
        for name, s in sorted(per.items())
        if name != control
    ]
    variants = [control_stats] + [s for name, s in sorted(per.items()) if name != control]
    recommended, recommendation = recommend(control_stats, variants, comparisons, margin)
    notes = list(window.notes)
    if any(s.errors for s in variants):
        notes.append("latency histograms include the failed requests (429/503) of a variant")
    return Report(
        source=window.source,
        seconds=window.seconds,
        control=control,
        control_reason=control_reason,
        experiment=", ".join(sorted(experiments)) or None,
        alpha=alpha,
        margin=margin,
        variants=variants,
        comparisons=comparisons,
        recommendation=recommendation,
        recommended=recommended,
        notes=notes,
    )


def compare(s: VariantStats, control: VariantStats, alpha: float, margin: float) -> Comparison:
    c = Comparison(s.name)
    if s.feedback and control.feedback:
        c.accuracy_difference = s.correct / s.feedback - control.correct / control.feedback
        c.accuracy_interval = newcombe_interval(
            s.correct, s.feedback, control.correct, control.feedback
        )
        c.accuracy_test, c.accuracy_p = compare_proportions(
            s.correct, s.feedback, control.correct, control.feedback
        )
        c.accuracy_significant = c.accuracy_p < alpha
        c.accuracy_worse = c.accuracy_significant and c.accuracy_difference < 0
        c.non_inferior = c.accuracy_interval[0] > -margin
        c.judgments_needed = non_inferiority_sample_size(control.correct / control.feedback, margin)
    if s.latency_s and control.latency_s:
        c.latency_p50_ms = (s.latency_s["p50"] - control.latency_s["p50"]) * 1000
        c.latency_p99_ms = (s.latency_s["p99"] - control.latency_s["p99"]) * 1000
        ours = bucket_counts(s.buckets)
        theirs = bucket_counts(control.buckets)
        if len(ours) == len(theirs):
            result = chi_square_homogeneity([round(x) for x in ours], [round(x) for x in theirs])
            if result is not None:
                c.latency_chi2, c.latency_df, c.latency_p = result
                c.latency_significant = c.latency_p < alpha
    if s.cost_per_1k is not None and control.cost_per_1k:
        c.cost_ratio = s.cost_per_1k / control.cost_per_1k
    return c


def recommend(
    control: VariantStats,
    variants: list[VariantStats],
    comparisons: list[Comparison],
    margin: float,
) -> tuple[str | None, str]:
    """The cheapest variant (cost per 1k) shown non-inferior to the control in online accuracy
    (the lower end of the difference's 95% interval above ``-margin``); the control is always a
    candidate. A variant neither worse nor shown non-inferior is undecided, and the text says
    how many judgments per arm would decide it."""
    if control.cost_per_1k is None:
        return None, f"No recommendation: the control `{control.name}` served no prediction."
    by_name = {c.variant: c for c in comparisons}
    candidates = [control]
    left_out = []
    for s in variants:
        if s is control:
            continue
        c = by_name[s.name]
        if s.cost_per_1k is None:
            left_out.append(f"`{s.name}` served nothing")
        elif c.accuracy_p is None or c.accuracy_interval is None:
            left_out.append(f"`{s.name}` has no feedback (its accuracy cannot be judged)")
        elif c.accuracy_worse:
            left_out.append(
                f"`{s.name}` is significantly less accurate ({c.accuracy_test}, "
                f"p = {c.accuracy_p:.3g})"
            )
        elif not c.non_inferior:
            left_out.append(
                f"`{s.name}` is undecided: not significantly worse, but a drop of up to "
                f"{-c.accuracy_interval[0] * 100:.1f} points cannot be ruled out, beyond the "
                f"{margin * 100:g}-point margin; about {c.judgments_needed:,} judgments per arm "
                f"would show it if the two are equally accurate (it has {s.feedback:,})"
            )
        else:
            candidates.append(s)
    best = min(candidates, key=lambda s: s.cost_per_1k or math.inf)
    currency = best.currency or "(currency)"
    if best is control:
        text = (
            f"**Recommendation: keep the control `{control.name}`.** No other variant is both "
            f"cheaper per 1,000 predictions ({fmt_cost(control.cost_per_1k)} {currency}) and "
            f"shown non-inferior online (a {margin * 100:g}-point margin on its accuracy)."
        )
    else:
        c = by_name[best.name]
        assert c.accuracy_interval is not None and c.accuracy_difference is not None
        low, high = c.accuracy_interval
        text = (
            f"**Recommendation: run `{best.name}`.** It is the cheapest variant "
            f"({fmt_cost(best.cost_per_1k)} {currency} per 1,000 predictions, "
            f"{(1 - (c.cost_ratio or 1)) * 100:.0f}% below the control `{control.name}`) shown "
            f"non-inferior online: {fmt_accuracy(best)} against {fmt_accuracy(control)}, a "
            f"difference of {c.accuracy_difference * 100:+.1f} points (95% CI {low * 100:+.1f} "
            f"to {high * 100:+.1f}, above the -{margin * 100:g}-point margin; "
            f"{c.accuracy_test}, p = {c.accuracy_p:.3g})."
        )
    if left_out:
        text += " Left out: " + "; ".join(left_out) + "."
    return best.name, text


# --- output -----------------------------------------------------------------------------------


def fmt_cost(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def fmt_ms(seconds: float | None) -> str:
    return "–" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.2f}"


def fmt_interval(interval: tuple[float, float] | None) -> str:
    return "–" if interval is None else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def fmt_accuracy(s: VariantStats) -> str:
    if s.online_accuracy is None:
        return "–"
    return f"{s.online_accuracy:.3f} {fmt_interval(s.accuracy_interval)} (n={s.feedback})"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "–"
    return "< 1e-6" if p < 1e-6 else f"{p:.3g}"


def shadow_cell(s: VariantStats) -> str:
    judged = [sh for sh in s.shadows if sh.judged]
    if not judged:
        return "–"
    return "; ".join(f"{sh.agreement:.3f} (n={sh.judged:.0f})" for sh in judged)


def markdown(report: Report) -> str:
    control = report.control
    currency = next((s.currency for s in report.variants if s.currency), "")
    lines = [
        f"# A/B report{f': {report.experiment}' if report.experiment else ''}",
        "",
        f"- Metrics: {report.source}, {report.seconds:.1f} s.",
        f"- Control: `{control}` ({report.control_reason}).",
        f"- Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
        "",
        f"| variant | weight | requests | errors | throughput (req/s) | p50 ms | p95 ms | p99 ms "
        f"| cost per 1k ({currency}) | CPU ms per prediction | shadow agreement "
        f"| online accuracy [95% CI] | offline accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for s in report.variants:
        name = f"`{s.name}`" + (" (control)" if s.name == control else "")
        offline = "–" if s.offline_accuracy is None else f"{s.offline_accuracy:.3f}"
        cpu = "–" if s.cpu_ms_per_prediction is None else f"{s.cpu_ms_per_prediction:.2f}"
        weight = "–" if s.weight is None else f"{s.weight:g}"
        lines.append(
            f"| {name} | {weight} | {s.requests:.0f} | {s.errors:.0f} | {s.throughput_rps:.2f} "
            f"| {fmt_ms(s.latency_s.get('p50'))} | {fmt_ms(s.latency_s.get('p95'))} "
            f"| {fmt_ms(s.latency_s.get('p99'))} | {fmt_cost(s.cost_per_1k)} | {cpu} "
            f"| {shadow_cell(s)} | {fmt_accuracy(s)} | {offline} |"
        )
    lines += [
        "",
        f"## Differences from the control `{control}` (alpha = {report.alpha})",
        "",
        "| variant | online accuracy difference [95% CI] | test | p | significant "
        f"| non-inferior (margin {report.margin * 100:g} pts) "
        "| p50 / p99 difference (ms) | latency chi-square (df) | p | significant "
        "| cost per 1k vs control |",
        "|---|---|---|---:|---|---|---|---|---:|---|---:|",
    ]
    for c in report.comparisons:
        if c.accuracy_difference is not None and c.accuracy_interval is not None:
            low, high = c.accuracy_interval
            accuracy = (
                f"{c.accuracy_difference * 100:+.1f} pts [{low * 100:+.1f}, {high * 100:+.1f}]"
            )
            significant = (
                ("yes, worse" if c.accuracy_worse else "yes, better")
                if (c.accuracy_significant)
                else "no"
            )
            non_inferior = (
                "yes" if c.non_inferior else f"no (needs ~{c.judgments_needed:,} per arm)"
            )
        else:
            accuracy, significant, non_inferior = "no feedback", "–", "–"
        if c.latency_p50_ms is not None and c.latency_p99_ms is not None:
            latency = f"{c.latency_p50_ms:+.2f} / {c.latency_p99_ms:+.2f}"
        else:
            latency = "–"
        chi2 = "–" if c.latency_chi2 is None else f"{c.latency_chi2:.1f} ({c.latency_df})"
        lat_sig = "–" if c.latency_p is None else ("yes" if c.latency_significant else "no")
        cost = "–" if c.cost_ratio is None else f"{(c.cost_ratio - 1) * 100:+.0f}%"
        lines.append(
            f"| `{c.variant}` | {accuracy} | {c.accuracy_test or '–'} | {fmt_p(c.accuracy_p)} "
            f"| {significant} | {non_inferior} | {latency} | {chi2} | {fmt_p(c.latency_p)} "
            f"| {lat_sig} | {cost} |"
        )
    shadow_lines = []
    for s in report.variants:
        for sh in s.shadows:
            agreement = "–" if sh.agreement is None else f"{sh.agreement:.3f}"
            shadow_lines.append(
                f"| `{s.name}` | `{sh.shadow}` | {sh.agree:.0f} | {sh.disagree:.0f} "
                f"| {agreement} {fmt_interval(sh.interval)} | {sh.shed:.0f} | {sh.error:.0f} |"
            )
    if shadow_lines:
        lines += [
            "",
            "## Shadow",
            "",
            "| served by | shadow | agree | disagree | agreement [95% CI] | shed | error |",
            "|---|---|---:|---:|---|---:|---:|",
            *shadow_lines,
        ]
    lines += [
        "",
        "## Method",
        "",
        "- Counts are the counters' increases over the window; throughput is successful "
        "requests per second of the window.",
        "- Latency is `brum_request_duration_seconds` (inside the service): p50/p95/p99 from the "
        "bucket increases, interpolated linearly inside a bucket like Prometheus's "
        "`histogram_quantile` (so a quantile is only as fine as the buckets).",
        "- Cost per 1,000 predictions: `brum_inference_cost_total` / `brum_texts_total` x 1000 "
        "(process CPU time in `session.run` times the CPU-hour price; shadow scoring counts for "
        "the shadow variant). No test: a total, not a sample.",
        "- Online accuracy: `brum_feedback_total` correct / judged, with a 95% Wilson interval. "
        "Against the control: a two-sided two-proportion z-test (pooled), or Fisher's exact test "
        "when an expected cell count is below 5; the difference's interval is Newcombe's.",
        "- Latency against the control: a chi-square test of homogeneity on the two histograms' "
        "bucket counts (adjacent sparse buckets merged until every expected count is >= 5). It "
        "tells whether the latency distributions differ, not by how much; the p50/p99 "
        "differences say which way. There are no per-request samples for a rank test.",
        "- Shadow agreement: share of shadow-scored requests where the shadow variant's label "
        "equals the served one (Wilson interval); shed = skipped because queues were busy.",
        "- Non-inferior: the lower end of the accuracy difference's 95% interval is above "
        f"-{report.margin * 100:g} points (a one-sided test at 2.5%). Only a cheaper non-inferior "
        "variant is recommended over the control: not significantly worse is not shown as good. "
        "Judgments needed: per arm, for 80% power if both arms are as accurate as the control.",
        f"- Each comparison is tested at alpha = {report.alpha} on its own (no correction for "
        "multiple comparisons).",
        *[f"- Note: {note}" for note in report.notes],
        "",
        "## Recommendation",
        "",
        report.recommendation,
        "",
    ]
    return "\n".join(lines)


def plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [s for s in report.variants if s.requests > 0 or s.name == report.control]
    names = [s.name for s in variants]
    colours = [f"C{i}" for i in range(len(variants))]
    fig = plt.figure(figsize=(12, 12))
    grid = fig.add_gridspec(3, 2, height_ratios=[1, 1, 0.8])
    ax = fig.add_subplot(grid[0, 0])
    for s, colour in zip(variants, colours, strict=True):
        finite = [(le, c) for le, c in s.buckets if math.isfinite(le)]
        total = s.buckets[-1][1] if s.buckets else 0
        if total:
            ax.step(
                [le * 1000 for le, _ in finite],
                [c / total for _, c in finite],
                where="post",
                color=colour,
                label=s.name,
            )
    ax.set_xscale("log")
    reached = [  # where every variant has all its requests: no need to draw further
        next(le for le, c in s.buckets if c >= s.buckets[-1][1])
        for s in variants
        if s.buckets and s.buckets[-1][1]
    ]
    if reached and all(math.isfinite(le) for le in reached):
        ax.set_xlim(right=max(reached) * 1000 * 1.5)
    ax.set_xlabel("request duration (ms, bucket bounds)")
    ax.set_ylabel("share of requests at most")
    ax.set_title("Latency distribution (cumulative)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)

    ax = fig.add_subplot(grid[0, 1])
    width = 0.8 / len(QUANTILES)
    for i, q in enumerate(QUANTILES):
        key = f"p{round(q * 100)}"
        values = [s.latency_s.get(key, math.nan) * 1000 for s in variants]
        ax.bar([x + (i - 1) * width for x in range(len(variants))], values, width, label=key)
    ax.set_xticks(range(len(variants)), names, rotation=12, fontsize=8)
    ax.set_ylabel("ms")
    ax.set_title("Latency quantiles (histogram_quantile)")
    ax.legend(fontsize=8)

    ax = fig.add_subplot(grid[1, 0])
    costs = [s.cost_per_1k if s.cost_per_1k is not None else math.nan for s in variants]
    ax.bar(range(len(variants)), costs, color=colours)
    ax.set_xticks(range(len(variants)), names, rotation=12, fontsize=8)
    currency = next((s.currency for s in variants if s.currency), "")
    ax.set_ylabel(f"{currency} per 1,000 predictions")
    ax.set_title("Cost per 1,000 predictions")

    ax = fig.add_subplot(grid[1, 1])
    for x, (s, colour) in enumerate(zip(variants, colours, strict=True)):
        if s.online_accuracy is None or s.accuracy_interval is None:
            continue
        low, high = s.accuracy_interval
        ax.errorbar(
            x,
            s.online_accuracy,
            yerr=[[s.online_accuracy - low], [high - s.online_accuracy]],
            fmt="o",
            color=colour,
            capsize=6,
        )
        if s.offline_accuracy is not None:
            ax.plot(x, s.offline_accuracy, "x", color="black")
    control = next(s for s in variants if s.name == report.control)
    if control.online_accuracy is not None:
        ax.axhline(control.online_accuracy, color="grey", linestyle=":", label="control")
    ax.set_xticks(range(len(variants)), names, rotation=12, fontsize=8)
    ax.set_xlim(-0.5, len(variants) - 0.5)
    ax.set_ylabel("accuracy")
    ax.set_title("Online accuracy, 95% Wilson interval (x: offline)")
    ax.grid(alpha=0.3)

    plot_non_inferiority(
        fig.add_subplot(grid[2, :]), report, dict(zip(names, colours, strict=True))
    )
    fig.suptitle(f"A/B report: control {report.control}, {report.seconds:.0f} s", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_non_inferiority(ax, report: Report, colours: dict[str, str]) -> None:
    """Each arm's accuracy difference from the control with its 95% interval, beside the margin:
    an interval wholly right of the dashed line is non-inferior, one wholly left of 0 is worse."""
    judged = [c for c in report.comparisons if c.accuracy_interval is not None]
    for y, c in enumerate(judged):
        assert c.accuracy_interval is not None and c.accuracy_difference is not None
        low, high = (100 * v for v in c.accuracy_interval)
        difference = 100 * c.accuracy_difference
        ax.errorbar(
            difference,
            y,
            xerr=[[difference - low], [high - difference]],
            fmt="o",
            color=colours.get(c.variant, "black"),
            capsize=6,
        )
        verdict = "worse" if c.accuracy_worse else "non-inferior" if c.non_inferior else "undecided"
        ax.annotate(
            verdict, (high, y), xytext=(8, 0), textcoords="offset points", va="center", fontsize=8
        )
    ax.axvline(0, color="grey", linestyle=":")
    ax.axvline(-100 * report.margin, color="red", linestyle="--", label="-margin")
    ax.set_yticks(range(len(judged)), [c.variant for c in judged], fontsize=8)
    ax.set_ylim(-0.7, max(len(judged), 1) - 0.3)
    ax.margins(x=0.12)  # room for the verdicts
    ax.set_xlabel("online accuracy minus the control's (points), 95% Newcombe interval")
    ax.set_title(
        f"Against the control: non-inferior if the interval clears -{report.margin * 100:g} pt"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def write_outputs(report: Report, directory: Path, name: str) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {ext: directory / f"{name}.{ext}" for ext in ("md", "png", "json")}
    paths["md"].write_text(markdown(report))
    plot(report, paths["png"])
    paths["json"].write_text(json.dumps(asdict(report), indent=2, default=str) + "\n")
    return paths


# --- the knee of a step run -------------------------------------------------------------------


def read_steps(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def number(text: str) -> float:
    return float(text) if text not in ("", None) else math.nan


def knee(rows: list[dict], slo_ms: float, max_failed: float = 0.01) -> tuple[float | None, str]:
    """Throughput at which p99 crosses ``slo_ms`` for good: the first step from which on every
    step is over (p99 above the target, or more than ``max_failed`` of its arrivals failed or
    dropped), interpolated linearly between it and the step before (achieved throughput against
    p99). A single noisy step over the target followed by steps under it is not the knee."""
    points = []
    for r in rows:
        if r["arm"] != "all":
            continue
        throughput, p99, offered = (
            number(r["throughput_rps"]),
            number(r["p99_ms"]),
            number(r["offered_rps"]),
        )
        sent = number(r["sent"]) + number(r["dropped"])
        failed = number(r["failures"]) + number(r["dropped"])
        over = math.isnan(p99) or p99 > slo_ms or (sent > 0 and failed / sent > max_failed)
        points.append((throughput, p99, offered, over))
    if not points:
        return None, "no steps"
    first_over = len(points)
    while first_over > 0 and points[first_over - 1][3]:
        first_over -= 1
    if first_over == 0:
        return None, (
            f"p99 is over {slo_ms:g} ms (or over {max_failed:.0%} failed) from the first step on "
            f"({points[0][2]:g} req/s offered): the knee is below it; start lower."
        )
    t0, p0, o0, _ = points[first_over - 1]
    if first_over == len(points):
        return None, (
            f"p99 stays under {slo_ms:g} ms up to the last step ({t0:.1f} req/s, p99 "
            f"{p0:.1f} ms): no knee within the range; step higher."
        )
    t1, p1, o1, _ = points[first_over]
    if math.isnan(p1) or p1 <= slo_ms or p1 == p0:  # over by failures, not by latency
        crossing = t0
    else:
        crossing = t0 + (slo_ms - p0) / (p1 - p0) * (t1 - t0)
    return crossing, (
        f"The knee: p99 crosses {slo_ms:g} ms at about **{crossing:.0f} req/s** (interpolated "
        f"between {t0:.1f} req/s achieved with p99 {p0:.1f} ms and {t1:.1f} req/s with p99 "
        f"{p1:.1f} ms; {o0:g} and {o1:g} req/s offered). A step counts as over when its p99 "
        f"exceeds {slo_ms:g} ms or more than {max_failed:.0%} of its arrivals failed."
    )


def cell(text: str | None) -> str:
    return "–" if text in (None, "", "nan") else text


def steps_markdown(rows: list[dict], slo_ms: float, source: Path) -> tuple[str, float | None]:
    crossing, sentence = knee(rows, slo_ms)
    arms = sorted({r["arm"] for r in rows} - {"all"})
    header = (
        "| step | offered (req/s) | achieved (req/s) | failures | dropped | p50 ms | p95 ms "
        "| p99 ms | generator lag p99 ms | " + " | ".join(f"p99 `{a}`" for a in arms) + " |"
    )
    lines = [
        f"# Step run: the knee (p99 over {slo_ms:g} ms)",
        "",
        f"From `{source.name}` (client-side latency measured by locust, open loop).",
        "",
        header,
        "|" + "---:|" * (9 + len(arms)),
    ]
    by_step: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        by_step[r["step"]][r["arm"]] = r
    for step, arms_rows in sorted(by_step.items(), key=lambda kv: int(kv[0])):
        a = arms_rows["all"]
        per_arm = " | ".join(cell(arms_rows.get(x, {}).get("p99_ms")) for x in arms)
        columns = ("offered_rps", "throughput_rps", "failures", "dropped", "p50_ms", "p95_ms")
        values = " | ".join(cell(a[c]) for c in (*columns, "p99_ms", "lag_p99_ms"))
        lines.append(f"| {step} | {values} | {per_arm} |")
    lines += ["", sentence, ""]
    return "\n".join(lines), crossing


def plot_steps(rows: list[dict], slo_ms: float, crossing: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r for r in rows if r["arm"] == "all"]
    offered = [number(r["offered_rps"]) for r in steps]
    achieved = [number(r["throughput_rps"]) for r in steps]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.plot(offered, achieved, "o-", label="achieved")
    left.plot(offered, offered, ":", color="grey", label="offered")
    left.set_xlabel("offered (req/s)")
    left.set_ylabel("achieved (req/s)")
    left.set_title("Throughput")
    left.legend()
    left.grid(alpha=0.3)
    for key in ("p50_ms", "p95_ms", "p99_ms"):  # against the offered rate: past the knee the
        # achieved rate falls back, which would fold the curves over themselves
        right.plot(offered, [number(r[key]) for r in steps], "o-", label=key.removesuffix("_ms"))
    right.axhline(slo_ms, color="red", linestyle="--", label=f"{slo_ms:g} ms")
    if crossing is not None:
        right.axvline(crossing, color="red", alpha=0.4, label=f"knee {crossing:.0f} req/s")
    right.set_yscale("log")
    right.set_xlabel("offered (req/s)")
    right.set_ylabel("client-side latency (ms)")
    right.set_title("Latency against load (knee in achieved req/s)")
    right.legend()
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the command ------------------------------------------------------------------------------


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
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level")
    parser.add_argument(
        "--margin",
        type=float,
        default=0.01,
        help="non-inferiority margin of online accuracy a cheaper variant may lose (0.01 = 1 pt)",
    )
    parser.add_argument("--slo-ms", type=float, default=100.0, help="with --steps: p99 target")
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
    report = analyse(window, control, reason, args.alpha, args.margin)
    paths = write_outputs(report, args.output_dir, args.name or "ab-report")
    print(markdown(report))
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
