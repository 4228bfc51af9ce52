"""Load tests and the A/B report against a real server: a short headless locust run (open loop,
with feedback and a shadow set through the admin API) and a short step run, the report from two
/metrics scrapes (and from a real Prometheus where one is installed); plus the report's
statistics on known numbers.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.rollout import sequential
from loadtests.report.analysis import analyse
from loadtests.report.histogram import bucket_counts, histogram_quantile, tail, tail_bound
from loadtests.report.knee import knee
from loadtests.report.metrics import Window, parse_duration, parse_exposition
from loadtests.report.render import markdown, plot_non_inferiority
from tests.server import ROOT, run_server, start_prometheus, stop

TOKEN = "load-test-token"
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
OPEN_SECONDS = 10
RATE = 25
IN_FLIGHT = 5  # requests a stopping locust may leave unrecorded


def locust(host: str, prefix: Path, *options: str, timeout: float = 90) -> None:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        host,
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        *options,
    ]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, f"locust failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"


def report(*options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "loadtests.report", *options]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"report failed:\n{run.stdout}\n{run.stderr}"
    return run


def prometheus_for(target: str, work: Path) -> tuple[subprocess.Popen, str] | None:
    binary = shutil.which("prometheus")
    if binary is None:
        return None
    config = work / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        f"scrape_configs: [{{job_name: brum, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    return start_prometheus(binary, config, work)


def read_csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One server; a shadow through the admin API; scrape, open-loop run, scrape, step run; the
    reports (from the scrapes, and from Prometheus when it is installed)."""
    work = tmp_path_factory.mktemp("loadtest")
    with run_server(work, {"BRUM_ADMIN_TOKEN": TOKEN}) as server:
        models = httpx.get(server.url + "/v1/models", timeout=30).json()
        experiment = models["experiment"]
        variants = sorted(card["name"] for card in models["models"])
        arms = [a["variant"] for a in experiment["arms"]]
        shadow = next(v for v in arms if v != experiment["default"])
        response = httpx.put(
            server.url + "/admin/experiment",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={**experiment, "shadow": {"variant": shadow, "fraction": 1.0}},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        prometheus = prometheus_for(server.url.removeprefix("http://"), work)
        try:
            report("--url", server.url, "--scrape", str(work / "before.prom"))
            locust(
                server.url,
                work / "open",
                "--mode",
                "open",
                "--rate",
                str(RATE),
                "--run-time",
                f"{OPEN_SECONDS}s",
                "--feedback-share",
                "0.5",
            )
            time.sleep(0.5)  # shadow scoring still running
            report("--url", server.url, "--scrape", str(work / "after.prom"))
            locust(
                server.url,
                work / "step",
                "--mode",
                "step",
                "--step-start",
                "10",
                "--step-increment",
                "10",
                "--step-seconds",
                "2",
                "--steps",
                "3",
                "--feedback-share",
                "0",
            )
            printed = report(
                "--metrics-before",
                str(work / "before.prom"),
                "--metrics-after",
                str(work / "after.prom"),
                "--url",
                server.url,
                "--output-dir",
                str(work / "report"),
                "--name",
                "ab",
            ).stdout
            from_prometheus = None
            if prometheus is not None:
                time.sleep(2.5)  # two more scrapes after the last request
                report(
                    "--prometheus",
                    prometheus[1],
                    "--window",
                    "2m",
                    "--control",
                    experiment["default"],
                    "--output-dir",
                    str(work / "report"),
                    "--name",
                    "prometheus",
                )
                from_prometheus = json.loads((work / "report" / "prometheus.json").read_text())
        finally:
            if prometheus is not None:
                stop(prometheus[0])
        yield {
            "work": work,
            "variants": variants,
            "control": experiment["default"],
            "shadow": shadow,
            "printed": printed,
            "report": json.loads((work / "report" / "ab.json").read_text()),
            "prometheus": from_prometheus,
        }


def test_locust_csvs_have_rows_per_arm(run: dict) -> None:
    stats = {row["Name"]: row for row in read_csv(run["work"] / "open_stats.csv")}
    for variant in run["variants"]:
        assert int(stats[f"predict {variant}"]["Request Count"]) > 0
        assert int(stats[f"predict {variant}"]["Failure Count"]) == 0
        assert int(stats[f"feedback {variant}"]["Request Count"]) > 0
    predictions = sum(int(stats[f"predict {v}"]["Request Count"]) for v in run["variants"])
    assert predictions == pytest.approx(RATE * OPEN_SECONDS, rel=0.35)  # Poisson arrivals
    feedback = sum(int(stats[f"feedback {v}"]["Request Count"]) for v in run["variants"])
    assert feedback == pytest.approx(predictions * 0.5, rel=0.35)

    steps = read_csv(run["work"] / "open_steps.csv")
    assert {row["arm"] for row in steps} == {"all", *run["variants"]}
    overall = next(row for row in steps if row["arm"] == "all")
    # Requests still in flight when the run stops are counted by one side only.
    assert abs(int(overall["completed"]) - predictions) <= IN_FLIGHT
    assert float(overall["offered_rps"]) == RATE


def test_step_run_steps_the_rate(run: dict) -> None:
    rows = [row for row in read_csv(run["work"] / "step_steps.csv") if row["arm"] == "all"]
    assert [float(row["offered_rps"]) for row in rows] == [10, 20, 30]
    assert all(int(row["sent"]) > 0 and int(row["completed"]) > 0 for row in rows)
    assert int(rows[-1]["sent"]) > int(rows[0]["sent"])
    assert (run["work"] / "step_stats.csv").exists()
    printed = report(
        "--steps", str(run["work"] / "step_steps.csv"), "--output-dir", str(run["work"])
    ).stdout
    assert "| 2 | 30.0 |" in printed
    assert "knee" in printed.lower()
    assert (run["work"] / "knee.png").read_bytes().startswith(b"\x89PNG")


def test_report_covers_every_variant(run: dict) -> None:
    result = run["report"]
    assert result["control"] == run["control"]
    assert "experiment" in result["control_reason"]
    by_name = {v["name"]: v for v in result["variants"]}
    assert set(by_name) == set(run["variants"])
    stats = {row["Name"]: row for row in read_csv(run["work"] / "open_stats.csv")}
    arms = {row["arm"]: row for row in read_csv(run["work"] / "open_steps.csv")}
    for name, variant in by_name.items():
        # The server counted what locust sent, and judged what it fed back, but for requests
        # still in flight when locust stopped (answered by the server, not recorded by locust).
        sent = int(stats[f"predict {name}"]["Request Count"])
        assert sent > 0 and sent <= variant["requests"] <= sent + IN_FLIGHT
        assert variant["throughput_rps"] > 0
        fed_back = int(arms[name]["feedback"])
        assert fed_back > 0 and fed_back <= variant["feedback"] <= fed_back + IN_FLIGHT
        correct = int(arms[name]["feedback_correct"])
        assert correct <= variant["correct"] <= correct + IN_FLIGHT
        low, high = variant["accuracy_interval"]
        assert 0 <= low <= variant["online_accuracy"] <= high <= 1
        p50, p95, p99 = (variant["latency_s"][q] for q in ("p50", "p95", "p99"))
        assert 0 < p50 <= p95 <= p99 < 2.5
        assert variant["cost_per_1k"] > 0
        assert variant["offline_accuracy"] is not None
        if name != run["shadow"]:  # every other arm's requests were also scored by the shadow
            (shadow,) = variant["shadows"]
            assert shadow["shadow"] == run["shadow"]
            assert shadow["agree"] + shadow["disagree"] + shadow["shed"] > 0
    assert {c["variant"] for c in result["comparisons"]} == set(run["variants"]) - {run["control"]}
    for comparison in result["comparisons"]:
        verdict = comparison["accuracy"]
        assert verdict["outcome"] in ("better", "non-inferior", "worse", "undecided")
        assert verdict["interval"]["low"] <= verdict["difference"] <= verdict["interval"]["high"]
        assert comparison["alpha"] == pytest.approx(0.05 / len(result["comparisons"]))
    assert result["recommended"] in run["variants"]


def test_report_files_and_printed_table(run: dict) -> None:
    md = (run["work"] / "report" / "ab.md").read_text()
    assert (run["work"] / "report" / "ab.png").read_bytes().startswith(b"\x89PNG")
    for text in (md, run["printed"]):
        assert "| variant | weight | requests |" in text
        for variant in run["variants"]:
            assert f"`{variant}`" in text
        assert "confidence sequence" in text and "Bonferroni" in text
    last = md.strip().splitlines()[-1]
    assert last.startswith("**Recommendation: ")


def test_report_from_prometheus(run: dict) -> None:
    result = run["prometheus"]
    if result is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is required in CI (apt-get install prometheus)")
        pytest.skip("prometheus not installed")
    by_name = {v["name"]: v for v in result["variants"]}
    assert set(by_name) == set(run["variants"])
    for variant in by_name.values():
        assert variant["requests"] > 0
        assert variant["latency_s"]["p99"] > 0
        low, high = variant["accuracy_interval"]
        assert 0 <= low <= high <= 1
    assert result["recommendation"].startswith("**Recommendation: ")


# --- the statistics on known numbers ----------------------------------------------------------


def test_histogram_quantile_like_prometheus() -> None:
    buckets = [(0.1, 10), (0.2, 30), (0.4, 40), (math.inf, 40)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.04)  # first bucket starts at 0
    assert histogram_quantile(0.875, buckets) == pytest.approx(0.3)  # rank 35: half of (0.2, 0.4]
    with_inf = [(0.1, 10), (0.2, 30), (0.4, 40), (math.inf, 50)]
    assert histogram_quantile(0.99, with_inf) == 0.4  # in +Inf: the highest finite bound
    assert math.isnan(histogram_quantile(0.5, [(0.1, 0), (math.inf, 0)]))
    assert math.isnan(histogram_quantile(0.5, [(0.1, 3)]))  # no +Inf bucket
    assert bucket_counts(with_inf) == [10, 20, 10, 10]


def test_parse_duration() -> None:
    assert parse_duration("5m") == 300
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90
    with pytest.raises(ValueError):
        parse_duration("5 minutes")


def exposition(arms: dict[str, tuple]) -> str:
    """Metrics text of variants: (requests, correct, cost, per-bucket counts[, judged = 1000])."""
    lines = []
    les = ["0.001", "0.005", "0.01", "+Inf"]
    for name, (requests, correct, cost, per_bucket, *rest) in arms.items():
        judged = rest[0] if rest else 1000
        lines += [
            f'brum_requests_total{{status="200",variant="{name}"}} {requests}',
            f'brum_texts_total{{variant="{name}"}} {requests}',
            f'brum_inference_cost_total{{currency="USD",variant="{name}"}} {cost}',
            f'brum_feedback_total{{outcome="correct",variant="{name}"}} {correct}',
            f'brum_feedback_total{{outcome="incorrect",variant="{name}"}} {judged - correct}',
            f'brum_experiment_weight{{experiment="e",variant="{name}"}} 1',
        ]
        cumulative = 0
        for le, count in zip(les, per_bucket, strict=True):
            cumulative += count
            lines.append(
                f'brum_request_duration_seconds_bucket{{le="{le}",variant="{name}"}} {cumulative}'
            )
    types = (
        "# TYPE brum_requests_total counter\n# TYPE brum_texts_total counter\n"
        "# TYPE brum_inference_cost_total counter\n# TYPE brum_feedback_total counter\n"
        "# TYPE brum_request_duration_seconds histogram\n"
    )
    return types + "\n".join(lines) + "\n"


def window(arms: dict) -> Window:
    samples = parse_exposition(exposition(arms))
    counters = {k: v for k, v in samples.items() if k[0] != "brum_experiment_weight"}
    gauges = {k: v for k, v in samples.items() if k[0] == "brum_experiment_weight"}
    return Window(counters, gauges, 100.0, "test")


def test_recommendation_cheapest_non_inferior() -> None:
    arms = {
        "control": (2000, 18200, 0.004, [100, 1500, 300, 100], 20000),
        "cheap-close": (1000, 18300, 0.001, [400, 500, 80, 20], 20000),  # +0.5 pt
        "cheapest-worse": (1000, 17000, 0.0005, [600, 350, 40, 10], 20000),  # -6 pts
    }
    result = analyse(window(arms), "control", "test", margin=0.01)
    assert result.recommended == "cheap-close"
    assert "shown non-inferior online" in result.recommendation
    assert "`cheapest-worse` is less accurate beyond the margin" in result.recommendation
    by_name = {c.variant: c for c in result.comparisons}
    close, worse = by_name["cheap-close"].accuracy, by_name["cheapest-worse"].accuracy
    # Two candidates: each at alpha / 2, and the interval is the confidence sequence's.
    assert by_name["cheap-close"].alpha == 0.025
    assert close == sequential.compare((18200, 20000), (18300, 20000), 0.01, 0.05, arms=2)
    assert close.outcome == "non-inferior" and -0.01 < close.interval.low < 0
    assert worse.outcome == "worse" and worse.interval.high < -0.01
    # Wider than the fixed-horizon interval (+-0.56 pts here), which holds at one look only.
    assert close.interval.high - close.interval.low > 2 * 1.96 * math.sqrt(2 * 0.91 * 0.09 / 20000)
    # A margin the interval does not clear: undecided, with the judgments still needed.
    strict = analyse(window(arms), "control", "test", margin=0.003)
    (strict_close, _) = strict.comparisons
    assert strict.recommended == "control"
    assert strict_close.accuracy.outcome == "undecided"
    needed = strict_close.accuracy.judgments_needed
    assert needed == sequential.judgments_needed(
        (18200, 20000), (18300, 20000), 0.025, 0.003, sequential.default_tau(0.003)
    )
    assert f"about {needed:,} more judgments" in strict.recommendation
    # The tail: the control's p99 falls in +Inf, so its bound is the largest finite one (10 ms);
    # 5% of the control's requests are over it, 2% of cheap-close's: a lighter tail, shown.
    assert by_name["cheap-close"].tail_bound_s == 0.01
    assert by_name["cheap-close"].tail.outcome == "lower"
    assert by_name["cheap-close"].errors.outcome == "no difference shown"
    assert by_name["cheap-close"].cost_ratio == pytest.approx(0.5)
    text = markdown(result)
    assert "| verdict (margin 1 pts) |" in text and "Bonferroni" in text
    control = result.variants[0]
    assert control.name == "control" and control.throughput_rps == 20
    assert control.cost_per_1k == pytest.approx(0.002)
    assert control.latency_s["p50"] == pytest.approx(0.001 + 0.004 * 900 / 1500)


def test_not_significantly_worse_is_not_enough_to_switch() -> None:
    """1,000 judgments per arm cannot tell a 1-point drop from none: the cheaper variant is
    undecided and the control stays; a drop of half the margin would be decided with more."""
    arms = {
        "control": (1000, 910, 0.002, [100, 800, 50, 50]),
        "cheap-close": (1000, 900, 0.001, [100, 800, 50, 50]),  # -1 pt: on the margin
    }
    result = analyse(window(arms), "control", "test", margin=0.01)
    (comparison,) = result.comparisons
    assert comparison.accuracy.outcome == "undecided"
    assert comparison.accuracy.interval.low < -0.01 < 0 < comparison.accuracy.interval.high
    assert result.recommended == "control"
    assert "sits on the margin" in result.recommendation
    assert "`cheap-close` is undecided" in result.recommendation
    half = {**arms, "cheap-close": (1000, 905, 0.001, [100, 800, 50, 50])}
    (comparison,) = analyse(window(half), "control", "test", margin=0.01).comparisons
    assert comparison.accuracy.judgments_needed > 2000


def test_p99_target_and_shadow_agreement_verdicts() -> None:
    arms = {
        "control": (1000, 910, 0.002, [100, 898, 1, 1]),  # 0.2% over 5 ms
        "slow": (1000, 910, 0.001, [100, 500, 200, 200]),  # 40% over 5 ms
    }
    exposition_text = exposition(arms) + (
        'brum_shadow_requests_total{outcome="agree",shadow="slow",variant="control"} 700\n'
        'brum_shadow_requests_total{outcome="disagree",shadow="slow",variant="control"} 300\n'
    )
    samples = parse_exposition(exposition_text)
    result = analyse(Window(samples, {}, 100.0, "test"), "control", "test", slo_ms=5)
    control, slow = result.variants
    assert result.slo_bounds_s == (0.005, 0.005)
    assert control.slo == "meets" and slow.slo == "breaks"
    assert "breaks the p99 target of 5 ms (40.0% of its requests" in result.recommendation
    (shadow,) = control.shadows
    assert shadow.agreement == 0.7 and shadow.verdict == "below"  # the minimum is 0.9
    between = analyse(Window(samples, {}, 100.0, "test"), "control", "test", slo_ms=7)
    assert between.slo_bounds_s == (0.005, 0.01)  # not a bucket bound: the bounds around it


def test_non_inferiority_panel_shows_each_judged_arm_and_its_verdict() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = {
        "control": (2000, 18200, 0.004, [100, 1500, 300, 100], 20000),
        "close": (1000, 18300, 0.001, [400, 500, 80, 20], 20000),
        "worse": (1000, 17000, 0.0005, [600, 350, 40, 10], 20000),
        "unjudged": (1000, 0, 0.001, [400, 500, 80, 20], 0),
        "few": (1000, 90, 0.001, [400, 500, 80, 20], 100),
    }
    report = analyse(window(arms), "control", "test", margin=0.01)
    fig, ax = plt.subplots()
    plot_non_inferiority(ax, report, {})
    labels = [t.get_text() for t in ax.get_yticklabels()]
    verdicts = [t.get_text() for t in ax.texts]
    assert labels == ["close", "few", "worse"]  # the arm with no feedback is not drawn
    assert verdicts == ["non-inferior", "undecided", "worse"]
    margin_lines = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert [line.get_xdata()[0] for line in margin_lines] == [-1.0]
    plt.close(fig)


def test_recommendation_keeps_the_control_when_alternatives_are_worse() -> None:
    arms = {
        "control": (1000, 910, 0.002, [100, 800, 50, 50]),
        "cheap-worse": (1000, 800, 0.001, [100, 800, 50, 50]),
    }
    result = analyse(window(arms), "control", "test")
    assert result.recommended == "control"
    assert result.recommendation.startswith("**Recommendation: keep the control `control`.**")
    (comparison,) = result.comparisons
    assert comparison.accuracy.outcome == "worse" and comparison.alpha == 0.05
    assert comparison.tail.outcome == "no difference shown"  # the same histogram


def test_histogram_tails() -> None:
    buckets = [(0.1, 10), (0.2, 30), (0.4, 40), (math.inf, 50)]
    assert tail(buckets, 0.2) == (20, 50)
    assert tail(buckets, 0.3) == (20, 50)  # between bounds: counted from the bound below
    assert tail(buckets, 0.05) == (50, 50)
    assert tail_bound(buckets, 0.5) == 0.2
    assert tail_bound(buckets, 0.99) == 0.4  # in +Inf: the largest finite bound
    assert tail([], 0.1) == (0, 0)


def step_rows(points: list[tuple[float, float, float, int]]) -> list[dict]:
    return [
        {
            "step": str(i),
            "arm": "all",
            "offered_rps": str(offered),
            "throughput_rps": str(achieved),
            "p99_ms": str(p99),
            "sent": str(int(achieved * 10)),
            "failures": str(failures),
            "dropped": "0",
        }
        for i, (offered, achieved, p99, failures) in enumerate(points)
    ]


def test_knee_interpolates_the_lasting_crossing() -> None:
    # p99 over 100 ms at 100 req/s is a blip: the lasting crossing is between 190 and 200 req/s.
    points = [(50, 50, 20, 0), (100, 100, 120, 0), (150, 150, 40, 0), (200, 190, 80, 0)]
    rows = step_rows([*points, (250, 200, 300, 0)])
    crossing, sentence = knee(rows, 100)
    assert crossing == pytest.approx(190 + (100 - 80) / (300 - 80) * 10)
    assert "req/s" in sentence
    under = step_rows([(50, 50, 20, 0), (100, 100, 30, 0)])
    assert knee(under, 100)[0] is None and "no knee" in knee(under, 100)[1]
    failing = step_rows([(50, 50, 20, 0), (100, 100, 30, 50)])  # 5% failed: over
    assert knee(failing, 100)[0] == 50
