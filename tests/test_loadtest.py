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

from loadtests.report import (
    Window,
    analyse,
    knee,
    markdown,
    parse_duration,
    parse_exposition,
)
from loadtests.stats import (
    bucket_counts,
    chi2_sf,
    chi_square_homogeneity,
    compare_proportions,
    fisher_exact,
    histogram_quantile,
    merge_sparse_bins,
    newcombe_interval,
    non_inferiority_sample_size,
    normal_sf,
    two_proportion_z_test,
    wilson_interval,
)
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
        assert comparison["accuracy_test"] in ("two-proportion z-test", "Fisher exact")
        assert 0 <= comparison["accuracy_p"] <= 1
    assert result["recommended"] in run["variants"]


def test_report_files_and_printed_table(run: dict) -> None:
    md = (run["work"] / "report" / "ab.md").read_text()
    assert (run["work"] / "report" / "ab.png").read_bytes().startswith(b"\x89PNG")
    for text in (md, run["printed"]):
        assert "| variant | weight | requests |" in text
        for variant in run["variants"]:
            assert f"`{variant}`" in text
        assert "two-proportion z-test" in text and "chi-square" in text
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


def test_wilson_interval() -> None:
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)  # z²/(n+z²)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # The observed proportion is always inside, also at 0 and n successes (the report's error
    # bars are p - low and high - p, which matplotlib refuses when negative).
    for n in range(1, 120):
        for k in range(n + 1):
            low, high = wilson_interval(k, n)
            assert 0.0 <= low <= k / n <= high <= 1.0, (k, n)
    low, high = wilson_interval(900, 1000)
    assert low < 0.9 < high and high - low == pytest.approx(0.0372, abs=2e-4)


def test_newcombe_interval() -> None:
    # Newcombe (1998), example (a): 56/70 against 48/80.
    assert newcombe_interval(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_two_proportion_z_test() -> None:
    # 45/100 against 56/100: z = -1.5557, p = 0.1198 (R: prop.test(correct = FALSE)).
    z, p = two_proportion_z_test(45, 100, 56, 100)
    assert z == pytest.approx(-1.5557, abs=1e-4)
    assert p == pytest.approx(0.1198, abs=1e-4)
    assert normal_sf(1.959964) == pytest.approx(0.025, abs=1e-7)
    assert two_proportion_z_test(10, 10, 20, 20) == (0.0, 1.0)


def test_fisher_exact_and_the_choice_of_test() -> None:
    assert fisher_exact(3, 1, 1, 3) == pytest.approx(0.4857, abs=1e-4)  # lady tasting tea
    assert fisher_exact(1, 9, 11, 3) == pytest.approx(0.002759, abs=1e-6)  # R's fisher.test
    assert compare_proportions(9, 10, 5, 10)[0] == "Fisher exact"  # expected failures < 5
    name, p = compare_proportions(45, 100, 56, 100)
    assert name == "two-proportion z-test" and p == pytest.approx(0.1198, abs=1e-4)


def test_chi_square() -> None:
    assert chi2_sf(2.0, 2) == pytest.approx(math.exp(-1), rel=1e-12)  # df 2: exp(-x/2)
    assert chi2_sf(3.841459, 1) == pytest.approx(0.05, abs=1e-6)
    assert chi2_sf(11.0705, 5) == pytest.approx(0.05, abs=1e-5)
    assert chi2_sf(0.0, 3) == 1.0
    # chisq.test(rbind(c(10, 20, 30), c(20, 20, 10))) in R: X-squared = 12.528, df = 2
    statistic, df, p = chi_square_homogeneity([10, 20, 30], [20, 20, 10])
    assert (round(statistic, 3), df) == (12.528, 2)
    assert p == pytest.approx(math.exp(-statistic / 2), rel=1e-12)  # df 2
    assert p == pytest.approx(0.0019, abs=1e-5)
    # Sparse buckets merge into their neighbours until every expected count is >= 5.
    assert merge_sparse_bins([0, 1, 9, 10, 0, 1], [0, 2, 8, 10, 1, 0]) == (
        [10, 11],
        [10, 11],
    )
    assert chi_square_homogeneity([3, 0], [2, 0]) is None


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
        "cheap-close": (1000, 18160, 0.001, [400, 500, 80, 20], 20000),  # -0.2 pt [-0.8, +0.4]
        "cheapest-worse": (1000, 17000, 0.0005, [600, 350, 40, 10], 20000),  # -6 pts
    }
    result = analyse(window(arms), "control", "test", margin=0.01)
    assert result.recommended == "cheap-close"
    assert "shown non-inferior" in result.recommendation
    assert "significantly less accurate" in result.recommendation  # cheapest-worse left out
    by_name = {c.variant: c for c in result.comparisons}
    assert by_name["cheap-close"].non_inferior
    assert -0.01 < by_name["cheap-close"].accuracy_interval[0] < -0.005
    assert by_name["cheapest-worse"].accuracy_worse
    assert not by_name["cheapest-worse"].non_inferior
    # A stricter margin than the interval's lower end: not shown, so the control stays.
    strict = analyse(window(arms), "control", "test", margin=0.005)
    assert strict.recommended == "control"
    assert "`cheap-close` is undecided" in strict.recommendation
    assert by_name["cheapest-worse"].accuracy_test == "two-proportion z-test"
    assert not by_name["cheap-close"].accuracy_significant
    assert by_name["cheap-close"].latency_significant  # a different latency histogram
    assert by_name["cheap-close"].cost_ratio == pytest.approx(0.5)
    assert "| non-inferior (margin 1 pts) |" in markdown(result)
    control = result.variants[0]
    assert control.name == "control" and control.throughput_rps == 20
    assert control.cost_per_1k == pytest.approx(0.002)
    assert control.latency_s["p50"] == pytest.approx(0.001 + 0.004 * 900 / 1500)


def test_not_significantly_worse_is_not_enough_to_switch() -> None:
    """1,000 judgments per arm cannot tell a 1-point drop from none: the cheaper variant is
    undecided, the control stays, and the report says how much feedback would decide it."""
    arms = {
        "control": (1000, 910, 0.002, [100, 800, 50, 50]),
        "cheap-close": (1000, 900, 0.001, [100, 800, 50, 50]),  # -1 pt, p = 0.45
    }
    result = analyse(window(arms), "control", "test", margin=0.01)
    (comparison,) = result.comparisons
    assert not comparison.accuracy_significant and not comparison.non_inferior
    assert result.recommended == "control"
    needed = non_inferiority_sample_size(0.91, 0.01)
    assert comparison.judgments_needed == needed
    assert f"about {needed:,} judgments per arm" in result.recommendation
    assert "`cheap-close` is undecided" in result.recommendation


def test_non_inferiority_panel_shows_each_judged_arm_and_its_verdict() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from loadtests.report import plot_non_inferiority

    arms = {
        "control": (2000, 18200, 0.004, [100, 1500, 300, 100], 20000),
        "close": (1000, 18160, 0.001, [400, 500, 80, 20], 20000),
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


def test_non_inferiority_sample_size_gives_its_power() -> None:
    """Simulated A/B runs of two equally accurate arms with the planned feedback per arm pass
    the report's non-inferiority check about 80% of the time, and far less with a quarter."""
    numpy = pytest.importorskip("numpy")
    rng = numpy.random.default_rng(0)
    accuracy, margin = 0.92, 0.02
    n = non_inferiority_sample_size(accuracy, margin)
    assert n == math.ceil((1.959964 + 0.841621) ** 2 * 2 * 0.92 * 0.08 / 0.02**2)

    def power(judged: int) -> float:
        a, b = rng.binomial(judged, accuracy, 4000), rng.binomial(judged, accuracy, 4000)
        lows = [newcombe_interval(x, judged, y, judged)[0] for x, y in zip(a, b, strict=True)]
        return sum(low > -margin for low in lows) / len(lows)

    assert 0.77 < power(n) < 0.83
    assert power(n // 4) < 0.4
    with pytest.raises(ValueError):
        non_inferiority_sample_size(0.9, 0.0)


def test_recommendation_keeps_the_control_when_alternatives_are_worse() -> None:
    arms = {
        "control": (1000, 910, 0.002, [100, 800, 50, 50]),
        "cheap-worse": (1000, 800, 0.001, [100, 800, 50, 50]),
    }
    result = analyse(window(arms), "control", "test")
    assert result.recommended == "control"
    assert result.recommendation.startswith("**Recommendation: keep the control `control`.**")
    (comparison,) = result.comparisons
    assert comparison.latency_p is not None and not comparison.latency_significant


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
