"""What the report reads: counter increases over a window and the gauges at its end, from two
scrapes of ``/metrics`` or from Prometheus's HTTP API (``increase(...[window])``, so summed over
every replica it scrapes)."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

SCRAPED_AT = "# brum-report scraped-at "

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
    "brum_model_offline_macro_f1": ("variant",),
    "brum_experiment_weight": ("experiment", "variant"),
}

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


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
