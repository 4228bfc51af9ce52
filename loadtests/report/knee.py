"""The knee of a step run (``loadtests/locustfile.py --mode step --csv PREFIX``): the throughput
at which client-side p99 crosses the target for good, as a table and a plot."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path


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
