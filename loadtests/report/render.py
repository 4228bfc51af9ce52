"""The report as markdown, a plot and JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from app.rollout.sequential import Interval
from loadtests.report.analysis import (
    QUANTILES,
    Comparison,
    Difference,
    Report,
    VariantStats,
)


def fmt_cost(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def fmt_ms(seconds: float | None) -> str:
    return "–" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.2f}"


def fmt_interval(interval: tuple[float, float] | Interval | None) -> str:
    if interval is None:
        return "–"
    low, high = (interval.low, interval.high) if isinstance(interval, Interval) else interval
    return f"[{low:.3f}, {high:.3f}]"


def fmt_accuracy(s: VariantStats) -> str:
    if s.online_accuracy is None:
        return "–"
    return f"{s.online_accuracy:.3f} {fmt_interval(s.accuracy_interval)} (n={s.feedback})"


def fmt_points(d: Difference | None) -> str:
    if d is None:
        return "–"
    return (
        f"{d.estimate * 100:+.2f} pts [{d.interval.low * 100:+.2f}, {d.interval.high * 100:+.2f}]: "
        f"{d.outcome}"
    )


def shadow_cell(s: VariantStats) -> str:
    judged = [sh for sh in s.shadows if sh.judged]
    if not judged:
        return "–"
    return "; ".join(f"{sh.agreement:.3f} (n={sh.judged:.0f})" for sh in judged)


def slo_cell(s: VariantStats) -> str:
    if s.slo is None:
        return "–"
    return f"{s.slo} ({s.slow[0] / s.slow[1]:.2%} over)"


def accuracy_cells(c: Comparison) -> tuple[str, str, str]:
    verdict = c.accuracy
    if verdict is None:
        return "no feedback", "–", "–"
    low, high = verdict.interval.low, verdict.interval.high
    difference = f"{verdict.difference * 100:+.1f} pts [{low * 100:+.1f}, {high * 100:+.1f}]"
    needed = "–" if verdict.judgments_needed is None else f"~{verdict.judgments_needed:,}"
    return difference, verdict.outcome, needed


def variants_table(report: Report) -> list[str]:
    currency = next((s.currency for s in report.variants if s.currency), "")
    lines = [
        f"| variant | weight | requests | errors | throughput (req/s) | p50 ms | p95 ms | p99 ms "
        f"| p99 target {report.slo_ms:g} ms | cost per 1k ({currency}) | CPU ms per prediction "
        f"| shadow agreement | online accuracy [confidence sequence] | offline accuracy "
        "| offline macro F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|---:|---:|",
    ]
    for s in report.variants:
        name = f"`{s.name}`" + (" (control)" if s.name == report.control else "")
        offline = "–" if s.offline_accuracy is None else f"{s.offline_accuracy:.3f}"
        macro_f1 = "–" if s.offline_macro_f1 is None else f"{s.offline_macro_f1:.3f}"
        cpu = "–" if s.cpu_ms_per_prediction is None else f"{s.cpu_ms_per_prediction:.2f}"
        weight = "–" if s.weight is None else f"{s.weight:g}"
        lines.append(
            f"| {name} | {weight} | {s.requests:.0f} | {s.errors:.0f} | {s.throughput_rps:.2f} "
            f"| {fmt_ms(s.latency_s.get('p50'))} | {fmt_ms(s.latency_s.get('p95'))} "
            f"| {fmt_ms(s.latency_s.get('p99'))} | {slo_cell(s)} | {fmt_cost(s.cost_per_1k)} "
            f"| {cpu} | {shadow_cell(s)} | {fmt_accuracy(s)} | {offline} | {macro_f1} |"
        )
    return lines


def comparisons_table(report: Report) -> list[str]:
    lines = [
        "| variant | alpha | online accuracy difference [confidence sequence] "
        f"| verdict (margin {report.margin * 100:g} pts) | judgments still needed "
        "| error ratio difference | p50 / p99 difference (ms) "
        "| share slower than the control's p99 bound, difference | cost per 1k vs control |",
        "|---|---:|---|---|---:|---|---|---|---:|",
    ]
    for c in report.comparisons:
        difference, verdict, needed = accuracy_cells(c)
        latency = (
            "–"
            if c.latency_p50_ms is None or c.latency_p99_ms is None
            else f"{c.latency_p50_ms:+.2f} / {c.latency_p99_ms:+.2f}"
        )
        tail = (
            "–"
            if c.tail is None or c.tail_bound_s is None
            else f"{c.tail_bound_s * 1000:g} ms: {fmt_points(c.tail)}"
        )
        cost = "–" if c.cost_ratio is None else f"{(c.cost_ratio - 1) * 100:+.0f}%"
        lines.append(
            f"| `{c.variant}` | {c.alpha:.3g} | {difference} | {verdict} | {needed} "
            f"| {fmt_points(c.errors)} | {latency} | {tail} | {cost} |"
        )
    return lines


def shadow_table(report: Report) -> list[str]:
    rows = [
        f"| `{s.name}` | `{sh.shadow}` | {sh.agree:.0f} | {sh.disagree:.0f} "
        f"| {'–' if sh.agreement is None else f'{sh.agreement:.3f}'} {fmt_interval(sh.interval)} "
        f"| {sh.verdict or '–'} | {sh.shed:.0f} | {sh.error:.0f} |"
        for s in report.variants
        for sh in s.shadows
    ]
    if not rows:
        return []
    return [
        "",
        "## Shadow",
        "",
        "| served by | shadow | agree | disagree | agreement [confidence sequence] "
        f"| against {report.min_agreement:g} | shed | error |",
        "|---|---|---:|---:|---|---|---:|---:|",
        *rows,
    ]


def method(report: Report) -> list[str]:
    arms = max(1, len(report.comparisons))
    return [
        "",
        "## Method",
        "",
        "- Counts are the counters' increases over the window; throughput is successful "
        "requests per second of the window.",
        "- Every interval is a **confidence sequence** (mixture SPRT, Johari, Pekelis & Walsh "
        f"2017; `app/rollout/sequential.py`) at {1 - report.alpha:.0%}: valid at every look, so "
        "re-running this report while traffic flows and stopping at the first clear verdict keeps "
        "the error rate at alpha. It is wider than a fixed-horizon interval, which holds only at "
        "a sample size fixed in advance.",
        f"- The {arms} candidate arm(s) form one family: each is compared with the control at "
        f"alpha / {arms} = {report.alpha / arms:.3g} (Bonferroni).",
        "- Online accuracy: `brum_feedback_total` correct / judged. Verdict against the control: "
        f"**worse** when the difference's interval lies below -{report.margin * 100:g} points, "
        f"**non-inferior** when it lies above, **better** when above 0, else **undecided**, "
        "with the judgments still needed (both arms, split as now) if the observed difference "
        "held. Only a cheaper non-inferior variant is recommended over the control: not "
        "significantly worse is not shown as good.",
        "- Latency is `brum_request_duration_seconds` (inside the service): p50/p95/p99 from the "
        "bucket increases, interpolated like Prometheus's `histogram_quantile`. The p99 target "
        f"of {report.slo_ms:g} ms **meets** when surely under 1% of the requests are slower than "
        f"the bucket bound {report.slo_bounds_s[0] * 1000:g} ms, **breaks** when surely over 1% "
        f"are slower than {report.slo_bounds_s[1] * 1000:g} ms (the bounds around the target). "
        "Against the control: the share slower than the control's p99 bucket bound, candidate "
        "minus control (**higher** means a slower tail).",
        "- Errors: non-2xx answers / requests, candidate minus control.",
        "- Cost per 1,000 predictions: `brum_inference_cost_total` / `brum_texts_total` x 1000 "
        "(CPU time in `session.run` times the CPU-hour price; shadow scoring counts for the "
        "shadow variant). No test: a total, not a sample.",
        "- Shadow agreement: share of shadow-scored requests where the shadow's label equals the "
        f"served one, against the minimum {report.min_agreement:g}; shed = skipped because the "
        "queues were busy.",
        *[f"- Note: {note}" for note in report.notes],
    ]


def markdown(report: Report) -> str:
    lines = [
        f"# A/B report{f': {report.experiment}' if report.experiment else ''}",
        "",
        f"- Metrics: {report.source}, {report.seconds:.1f} s.",
        f"- Control: `{report.control}` ({report.control_reason}).",
        f"- Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
        "",
        *variants_table(report),
        "",
        f"## Against the control `{report.control}` (family alpha {report.alpha})",
        "",
        *comparisons_table(report),
        *shadow_table(report),
        *method(report),
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
    ax.axvline(report.slo_ms, color="red", linestyle="--", label="p99 target")
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
    ax.set_title("Online accuracy, confidence sequence (x: offline)")
    ax.grid(alpha=0.3)

    plot_non_inferiority(
        fig.add_subplot(grid[2, :]), report, dict(zip(names, colours, strict=True))
    )
    fig.suptitle(f"A/B report: control {report.control}, {report.seconds:.0f} s", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_non_inferiority(ax, report: Report, colours: dict[str, str]) -> None:
    """Each arm's accuracy difference from the control with its confidence sequence, beside the
    margin: an interval wholly right of the dashed line is non-inferior, one wholly left of it
    is worse."""
    judged = [c for c in report.comparisons if c.accuracy is not None]
    for y, c in enumerate(judged):
        assert c.accuracy is not None
        low, high = 100 * c.accuracy.interval.low, 100 * c.accuracy.interval.high
        difference = 100 * c.accuracy.difference
        ax.errorbar(
            difference,
            y,
            xerr=[[difference - low], [high - difference]],
            fmt="o",
            color=colours.get(c.variant, "black"),
            capsize=6,
        )
        ax.annotate(
            c.accuracy.outcome,
            (high, y),
            xytext=(8, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.axvline(0, color="grey", linestyle=":")
    ax.axvline(-100 * report.margin, color="red", linestyle="--", label="-margin")
    ax.set_yticks(range(len(judged)), [c.variant for c in judged], fontsize=8)
    ax.set_ylim(-0.7, max(len(judged), 1) - 0.3)
    ax.margins(x=0.12)  # room for the verdicts
    ax.set_xlabel("online accuracy minus the control's (points), confidence sequence")
    ax.set_title(
        f"Against the control: non-inferior if the interval clears -{report.margin * 100:g} pt "
        f"(valid at every look; alpha {report.alpha:g} over the arms)"
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
