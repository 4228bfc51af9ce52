"""The start-up calibration: both ways of using the cores measured on the real model, the faster
kept (a near tie goes to batches side by side), what a run costs fitted, and the plan and cost
exported and honoured."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.core.card import MODEL_FILE, TOKENIZER_FILE, read_card
from app.runtime.batching import BatchCost, plan_batches
from app.runtime.calibration import (
    LENGTH_SPREAD,
    PROBE_BATCH,
    Measurement,
    Plan,
    calibrate,
    candidate_plans,
    choose,
    fit_cost,
    predicted_throughput,
)
from app.runtime.cores import available_cores
from app.runtime.tokenizer import load_tokenizer
from app.settings import SHIPPED_REPOSITORY
from loadtests.cgroup import cpu_group, limits_available
from loadtests.processes import ROOT

SIDE_BY_SIDE, ONE_WIDE = Plan(1, 2), Plan(2, 1)


def test_candidates_bracket_the_choice():
    assert candidate_plans(1) == [Plan(1, 1)]
    assert candidate_plans(4) == [Plan(1, 4), Plan(4, 1)]


def test_the_faster_plan_wins_and_a_near_tie_goes_to_batches_side_by_side():
    cost = BatchCost(0.001, 0.0001)
    wide = Measurement(ONE_WIDE, texts_per_second=1000, lone_seconds=0.001, cost=cost)
    slower = Measurement(SIDE_BY_SIDE, texts_per_second=900, lone_seconds=0.002, cost=cost)
    assert choose([slower, wide]) is wide
    close = Measurement(SIDE_BY_SIDE, texts_per_second=960, lone_seconds=0.002, cost=cost)
    assert choose([close, wide]) is close


def test_throughput_is_predicted_with_padding_and_each_plans_cut():
    # No overhead per run: every text runs alone, padded to nothing, whatever the plan.
    per_token = BatchCost(0.0, 1e-4)
    rate = predicted_throughput(SIDE_BY_SIDE, per_token, 10, in_flight=32, max_tokens=4096)
    lengths = [max(2, round(10 * f)) for f in LENGTH_SPREAD]
    assert rate == pytest.approx(2 * 16 / (sum(lengths) * 1e-4))
    # Overhead only: one full batch per stream, 32 texts a run either way.
    overhead = BatchCost(0.01, 0.0)
    assert predicted_throughput(ONE_WIDE, overhead, 10, 32, 4096) == pytest.approx(3200)
    assert predicted_throughput(SIDE_BY_SIDE, overhead, 10, 32, 4096) == pytest.approx(3200)


def test_the_cost_of_a_run_is_fitted_through_both_timings():
    # 2 ms for one text of 10 tokens, 9 ms for 8 of them: 0.1 ms a token, 1 ms a run.
    cost = fit_cost(0.002, 0.009, 8, 10)
    assert cost.per_token == pytest.approx(1e-4) and cost.overhead == pytest.approx(1e-3)
    assert cost.seconds(8, 10) == pytest.approx(0.009)
    # Batches no dearer than one text (noise, or a machine that batches for free): fill them.
    assert fit_cost(0.002, 0.0019, 8, 10) == BatchCost(0.002, 0.0)


@pytest.mark.parametrize(
    ("cost", "cut"),
    [
        # A run costs far more than padding: one batch, however uneven.
        (BatchCost(0.010, 1e-6), [[0, 1, 2, 3]]),
        # Padding costs more than a run: the long text runs on its own.
        (BatchCost(0.001, 1e-4), [[0, 1, 2], [3]]),
        # No overhead at all: no text is padded.
        (BatchCost(0.0, 1e-4), [[0], [1], [2], [3]]),
    ],
)
def test_batches_are_cut_where_the_measured_cost_is_least(cost, cut):
    assert plan_batches([4, 5, 6, 60], max_size=32, max_tokens=4096, cost=cost) == cut


def test_calibration_measures_every_candidate_on_the_real_model():
    folder = SHIPPED_REPOSITORY / "minilm-l3-augmented-int8"
    tokenizer = load_tokenizer(folder / TOKENIZER_FILE, read_card(folder).max_length)
    text = "what is my balance"
    measured = calibrate(folder / MODEL_FILE, tokenizer, [SIDE_BY_SIDE, ONE_WIDE], text)
    measurements = measured.measurements
    assert [m.plan for m in measurements] == [SIDE_BY_SIDE, ONE_WIDE]
    assert all(m.texts_per_second > 0 and 0 < m.lone_seconds < 1 for m in measurements)
    assert measured.chosen in measurements
    tokens = tokenizer.encode_batch([text]).input_ids.shape[1]
    for m in measurements:
        # A run costs something, and the probe batch is no cheaper than one text. (How close
        # the fitted cost comes to the lone run, timed apart from it, depends on what else the
        # machine runs: a benchmark's question, not a test's.)
        one = m.cost.seconds(1, tokens)
        assert 0 < one < 1
        assert m.cost.seconds(PROBE_BATCH, tokens) >= one


CALIBRATE_UNDER_QUOTA = """
import json, sys
from app.core.card import MODEL_FILE, TOKENIZER_FILE, read_card
from app.runtime.calibration import Plan, calibrate
from app.runtime.cores import cpu_quota
from app.runtime.tokenizer import load_tokenizer
from app.settings import SHIPPED_REPOSITORY

folder = SHIPPED_REPOSITORY / "minilm-l3-augmented-int8"
tokenizer = load_tokenizer(folder / TOKENIZER_FILE, read_card(folder).max_length)
quota = cpu_quota()
text = "what is my balance"
measured = calibrate(folder / MODEL_FILE, tokenizer, [Plan(1, 2)], text, quota=quota)
print(json.dumps({"quota": quota, "texts_per_second": measured.chosen.texts_per_second}))
"""


@pytest.mark.skipif(
    not limits_available() or len(os.sched_getaffinity(0)) < 2,
    reason="needs two CPUs and a writable cgroup v1 (root)",
)
def test_under_a_cpu_quota_calibration_predicts_what_the_quota_allows():
    """Two streams on two cores under a 1-CPU quota: a short burst may run at full speed, but
    the quota allows half of it for long; calibration predicts the half."""
    folder = SHIPPED_REPOSITORY / "minilm-l3-augmented-int8"
    tokenizer = load_tokenizer(folder / TOKENIZER_FILE, read_card(folder).max_length)
    free = calibrate(folder / MODEL_FILE, tokenizer, [Plan(1, 2)], "what is my balance")
    with cpu_group(quota=1.0) as group:
        out = subprocess.run(
            [sys.executable, "-c", CALIBRATE_UNDER_QUOTA],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=group.enter,
        )
    limited = json.loads(out.stdout.splitlines()[-1])
    assert limited["quota"] == 1.0
    ratio = limited["texts_per_second"] / free.measurements[0].texts_per_second
    assert 0.3 < ratio < 0.75, ratio


def test_the_service_exports_the_plan_it_runs(server):
    text = httpx.get(server.url + "/metrics").text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    (plan,) = [s for s in samples if s.name == "brum_inference_plan_info"]
    cores = available_cores()
    if cores == 1:
        assert plan.labels == {"threads": "1", "side_by_side": "1", "source": "default"}
        return
    assert plan.labels["source"] == "calibrated"
    measured = {
        (s.labels["threads"], s.labels["side_by_side"])
        for s in samples
        if s.name == "brum_calibration_texts_per_second" and s.value > 0
    }
    assert measured == {("1", str(cores)), (str(cores), "1")}
    assert (plan.labels["threads"], plan.labels["side_by_side"]) in measured
    assert "inference plan (calibrated" in server.logs()
    (limit,) = [s.value for s in samples if s.name == "brum_batch_size_limit"]
    assert limit == 32  # BRUM_MAX_BATCH_SIZE's default: a cap, the cost decides the cut
    cost = {s.labels["part"]: s.value for s in samples if s.name == "brum_batch_cost_seconds"}
    assert cost.keys() == {"overhead", "token"} and 0 < sum(cost.values()) < 0.5
    assert cost["token"] > 0 or cost["overhead"] > 0
