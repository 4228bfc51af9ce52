"""The start-up calibration: both ways of using the cores measured on the real model, the faster
kept (a near tie goes to the faster lone answer), and the plan exported and honoured."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.core.card import MODEL_FILE, TOKENIZER_FILE, read_card
from app.runtime.calibration import (
    Measurement,
    Plan,
    batch_sizes,
    calibrate,
    candidate_plans,
    choose,
)
from app.runtime.cores import available_cores
from app.runtime.tokenizer import load_tokenizer
from app.settings import SHIPPED_REPOSITORY

SIDE_BY_SIDE, ONE_WIDE = Plan(1, 2), Plan(2, 1)


def test_candidates_bracket_the_choice():
    assert candidate_plans(1) == [Plan(1, 1)]
    assert candidate_plans(4) == [Plan(1, 4), Plan(4, 1)]
    assert batch_sizes(32) == [32, 16, 8]
    assert batch_sizes(8) == [8] and batch_sizes(3) == [3]


def test_the_faster_plan_wins_and_a_near_tie_goes_to_the_faster_lone_answer():
    fast = Measurement(SIDE_BY_SIDE, texts_per_second=1000, lone_seconds=0.002)
    slow = Measurement(ONE_WIDE, texts_per_second=700, lone_seconds=0.001)
    assert choose([fast, slow]) is fast
    close = Measurement(ONE_WIDE, texts_per_second=980, lone_seconds=0.001)
    assert choose([fast, close]) is close


def test_calibration_measures_every_candidate_on_the_real_model():
    folder = SHIPPED_REPOSITORY / "minilm-l3-augmented-int8"
    tokenizer = load_tokenizer(folder / TOKENIZER_FILE, read_card(folder).max_length)
    measured = calibrate(
        folder / MODEL_FILE, tokenizer, 2, "what is my balance", texts_in_flight=16, seconds=0.05
    )
    measurements = measured.measurements
    assert [m.plan for m in measurements] == [SIDE_BY_SIDE, ONE_WIDE]
    assert all(m.texts_per_second > 0 and 0 < m.lone_seconds < 1 for m in measurements)
    assert measured.chosen in measurements
    assert set(measured.batch_rates) == {16, 8} and all(measured.batch_rates.values())
    best = max(measured.batch_rates.values())
    assert measured.batch_rates[measured.batch_size] >= best * 0.95


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
    assert limit in batch_sizes(32)  # measured: BRUM_MAX_BATCH_SIZE is left at its default
