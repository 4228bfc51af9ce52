"""Batch planning: similar lengths together, within the size and padded-token budgets; the
inference threads share waiting texts among themselves, and a lone text runs inline on an idle
process."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.batcher import Batcher, BatchPolicy
from app.core.card import MODEL_FILE, TOKENIZER_FILE, read_card
from app.core.lone import BLOCK, EXPLORE_EVERY, LoneRoute
from app.core.prediction import softmax
from app.core.workers import InferenceWorkers
from app.runtime.batching import BatchCost, plan_batches
from app.runtime.classifier import OnnxClassifier, load_classifier
from app.runtime.session import SessionConfig
from app.settings import SHIPPED_REPOSITORY


def test_texts_are_sorted_by_length_and_cut_by_size():
    lengths = [5, 30, 6, 31, 7, 29]
    assert plan_batches(lengths, max_size=3, max_tokens=10_000) == [[0, 2, 4], [5, 1, 3]]


def test_the_padded_token_budget_cuts_batches():
    # Three texts of 40 tokens padded together make 120 > 100: two batches.
    assert plan_batches([40, 40, 40], max_size=32, max_tokens=100) == [[0, 1], [2]]
    # A text longer than the budget still runs, alone.
    assert plan_batches([500, 3], max_size=32, max_tokens=100) == [[1], [0]]


@given(
    st.lists(st.integers(1, 64), min_size=1, max_size=200),
    st.integers(1, 40),
    st.integers(1, 3000),
)
def test_every_text_is_in_exactly_one_batch_within_budget(lengths, max_size, max_tokens):
    batches = plan_batches(lengths, max_size, max_tokens)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= max_size
        longest = max(lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * longest <= max_tokens


# The Batcher itself, on a real onnxruntime session of the smallest shipped variant.

SMALLEST = SHIPPED_REPOSITORY / "minilm-l3-augmented-int8"


@pytest.fixture(scope="module")
def classifier() -> OnnxClassifier:
    card = read_card(SMALLEST)
    return load_classifier(
        SMALLEST / MODEL_FILE, SMALLEST / TOKENIZER_FILE, card.max_length, SessionConfig(1)
    )


def run_batcher(
    classifier,
    policy,
    texts_per_request,
    threads=2,
    lone=None,
    busy_elsewhere=False,
    connections=None,
    top_ks=None,
):
    """Submit every request at once; the sizes of the batches run, the answers, and the
    threads each batch ran on. ``connections`` defaults to one per request; ``top_ks``, the
    best labels each request asks for, to 1."""

    async def scenario():
        count = len(texts_per_request) if connections is None else connections
        workers = InferenceWorkers(threads, connections=lambda: count)
        workers.running = int(busy_elsewhere)
        batches: list[tuple[int, str]] = []
        batcher = Batcher(
            classifier,
            workers,
            policy,
            on_batch=lambda run: batches.append((run.texts, threading.current_thread().name)),
            lone=lone,
        )
        batcher.start()
        workers.start()
        try:
            depths = top_ks or [1] * len(texts_per_request)
            asked = zip(texts_per_request, depths, strict=True)
            scored = await asyncio.gather(*(batcher.submit(texts, k) for texts, k in asked))
        finally:
            workers.running -= int(busy_elsewhere)
            await workers.stop()
            await batcher.stop()
        return batches, scored

    return asyncio.run(scenario())


def test_waiting_texts_are_shared_evenly_among_free_batch_slots(classifier, clinc):
    texts = clinc.splits["test"].texts[:32]
    batches, scored = run_batcher(classifier, BatchPolicy(max_batch_size=32), [[t] for t in texts])
    assert sorted(batches) == [(16, "brum-infer-0"), (16, "brum-infer-1")]
    for text, answer in zip(texts, scored, strict=True):
        alone = classifier.classify([text]).logits[0]
        assert np.argmax(answer.logits[0]) == np.argmax(alone)


def test_the_batches_of_one_take_run_on_every_free_thread(classifier, clinc):
    """One request of 64 texts is one take. Cut into batches of two, it is run by both inference
    threads, not batch after batch by the thread that took it, and its rows come back in order."""
    texts = clinc.splits["test"].texts[:64]
    batches, (scored,) = run_batcher(classifier, BatchPolicy(max_batch_size=2), [texts])
    assert sum(size for size, _ in batches) == 64 and max(size for size, _ in batches) == 2
    assert {thread for _, thread in batches} == {"brum-infer-0", "brum-infer-1"}
    alone = np.stack([classifier.classify([text]).logits[0] for text in texts])
    assert np.argmax(scored.logits, axis=1).tolist() == np.argmax(alone, axis=1).tolist()


# Static int8 fixes its activation scales, so a text's logits do not depend on the texts batched
# with it: every row can be checked exactly against the text run alone.
STATIC = SHIPPED_REPOSITORY / "minilm-l6-augmented-static-pc-int8"


@pytest.fixture(scope="module")
def static_alone(clinc) -> tuple[OnnxClassifier, list[str], np.ndarray]:
    card = read_card(STATIC)
    static = load_classifier(
        STATIC / MODEL_FILE, STATIC / TOKENIZER_FILE, card.max_length, SessionConfig(1)
    )
    texts = clinc.splits["test"].texts[:200]
    return static, texts, np.stack([static.classify([text]).logits[0] for text in texts])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=st.lists(
        st.lists(st.integers(0, 199), min_size=1, max_size=6), min_size=1, max_size=24
    ),
    max_batch_size=st.integers(1, 8),
    max_batch_tokens=st.integers(16, 256),
    threads=st.integers(1, 3),
)
def test_every_caller_gets_its_own_rows_whatever_the_mix(
    static_alone, requests, max_batch_size, max_batch_tokens, threads
):
    """Requests of one to six texts, all at once, on one to three threads, cut every way the
    budgets allow: each caller gets exactly the rows its texts get alone, in its order."""
    static, texts, alone = static_alone
    asked = [[texts[i] for i in request] for request in requests]
    policy = BatchPolicy(max_batch_size=max_batch_size, max_batch_tokens=max_batch_tokens)
    batches, scored = run_batcher(static, policy, asked, threads=threads)
    assert sum(size for size, _ in batches) == sum(len(request) for request in requests)
    for request, answer in zip(requests, scored, strict=True):
        np.testing.assert_array_equal(answer.logits, alone[request])


def test_a_failing_batch_fails_only_its_own_callers(clinc):
    """A real onnxruntime error: loaded with a maximum length past the model's 512 positions, the
    session fails on a 700-token text. Taken together with short texts, in batches of its own
    and theirs, only the requests in its batches get the error; the others, and a request after
    them, get the answers the model gives."""
    card = read_card(SMALLEST)
    loose = load_classifier(
        SMALLEST / MODEL_FILE, SMALLEST / TOKENIZER_FILE, 2000, SessionConfig(1)
    )
    assert card.max_length < 700
    short = clinc.splits["test"].texts[:6]
    too_long = "hello " * 700
    requests = [[short[0]], [too_long], [short[1], short[2]], [short[3], too_long], [short[4]]]

    async def scenario():
        workers = InferenceWorkers(2, connections=lambda: len(requests))
        batcher = Batcher(loose, workers, BatchPolicy(max_batch_size=2, max_batch_tokens=64))
        batcher.start()
        workers.start()
        try:
            outcomes = await asyncio.gather(
                *(batcher.submit(texts) for texts in requests), return_exceptions=True
            )
            after = await batcher.submit([short[5]])
        finally:
            await workers.stop()
            await batcher.stop()
        return outcomes, after, batcher.requests_in_flight

    outcomes, after, in_flight = asyncio.run(scenario())
    failed = [isinstance(outcome, Exception) for outcome in outcomes]
    assert failed == [False, True, False, True, False]
    assert "index out of range" in str(outcomes[1])
    for texts, outcome in zip(requests, outcomes, strict=True):
        if not isinstance(outcome, Exception):
            expected = [np.argmax(loose.classify([text]).logits[0]) for text in texts]
            assert np.argmax(outcome.logits, axis=1).tolist() == expected
    assert np.argmax(after.logits[0]) == np.argmax(loose.classify([short[5]]).logits[0])
    assert in_flight == 0


def test_each_request_gets_its_rows_ranked_as_deep_as_it_asked(classifier, clinc):
    """Requests asking for 1, 3 and every label share batches; each gets its own probabilities
    and its best labels in order, ties to the lower id, as far as it asked."""
    texts = clinc.splits["test"].texts[:12]
    labels = len(clinc.labels)
    top_ks = [1, 3, labels] * 3 + [1]
    requests = [[text] for text in texts[:9]] + [texts[9:]]
    _, scored = run_batcher(classifier, BatchPolicy(max_batch_size=32), requests, top_ks=top_ks)
    for texts_asked, k, answer in zip(requests, top_ks, scored, strict=True):
        expected = softmax(answer.logits)
        np.testing.assert_allclose(answer.ranking.probabilities, expected, rtol=1e-6)
        order = np.argsort(-expected, axis=1, kind="stable")
        assert len(answer.ranking.top_ids) == len(texts_asked)
        for row, (ids, scores) in enumerate(
            zip(answer.ranking.top_ids, answer.ranking.top_scores, strict=True)
        ):
            assert len(ids) >= k
            assert ids[:k] == order[row, :k].tolist()
            np.testing.assert_allclose(scores[:k], expected[row, order[row, :k]], rtol=1e-6)


@pytest.mark.parametrize(
    ("inline", "busy_elsewhere", "connections", "handed_off"),
    [
        (True, False, 1, False),  # the only connection, an idle process: on the loop
        (False, False, 1, True),  # no inline classifier (too slow for the loop)
        (True, True, 1, True),  # another variant's batch is running
        (True, False, 2, True),  # another connection may have a request behind this one
    ],
)
def test_a_lone_text_runs_inline_only_when_nothing_else_can_run(
    classifier, clinc, inline, busy_elsewhere, connections, handed_off
):
    text = clinc.splits["test"].texts[0]
    batches, (scored,) = run_batcher(
        classifier,
        BatchPolicy(),
        [[text]],
        lone=LoneRoute([classifier]) if inline else None,
        busy_elsewhere=busy_elsewhere,
        connections=connections,
    )
    ((size, thread),) = batches
    assert size == 1 and thread.startswith("brum-infer") == handed_off
    expected = classifier.classify([text]).logits[0]
    np.testing.assert_allclose(scored.logits[0], expected, rtol=1e-5, atol=1e-5)


def test_lone_texts_duel_the_other_session_and_answer_the_same_on_either(classifier, clinc):
    """Two real sessions of one and two threads: the route duels them, and each
    answer is the one the model gives that text."""
    card = read_card(SMALLEST)
    wide = load_classifier(
        SMALLEST / MODEL_FILE, SMALLEST / TOKENIZER_FILE, card.max_length, SessionConfig(2)
    )
    route = LoneRoute([classifier, wide])
    texts = [clinc.splits["test"].texts[i % 200] for i in range(EXPLORE_EVERY + 2 * BLOCK)]

    async def one_at_a_time():
        workers = InferenceWorkers(2, connections=lambda: 1)
        batcher = Batcher(classifier, workers, BatchPolicy(), lone=route)
        batcher.start()
        workers.start()
        try:
            return [await batcher.submit([text]) for text in texts]
        finally:
            await workers.stop()
            await batcher.stop()

    scored = asyncio.run(one_at_a_time())
    narrow, explored = route.medians()
    assert narrow is not None and explored is not None  # one duel: both were timed
    assert route.sessions[route.current] in (classifier, wide)
    # One by one: under dynamic int8 a text's logits depend on the others in its batch.
    expected = [classifier.classify([text]).logits[0] for text in texts[-2 * BLOCK :]]
    got = np.stack([answer.logits[0] for answer in scored[-2 * BLOCK :]])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("oldest_first", "order"), [(False, [8, 1]), (True, [1, 8])])
def test_a_take_runs_shortest_first_or_oldest_first(classifier, oldest_first, order):
    """One take: a long text queued first, then eight short ones, too many tokens to share a
    batch with it. Shortest first runs the eight before it; oldest first, it before them."""
    long_text = " ".join(["please tell me how to transfer money between my accounts"] * 6)
    requests = [[long_text]] + [[f"hi {n}"] for n in range(8)]
    policy = BatchPolicy(max_batch_tokens=64, oldest_first=oldest_first)
    batches, scored = run_batcher(classifier, policy, requests, threads=1)
    assert [size for size, _ in batches] == order
    assert len(scored) == len(requests)


# The cost calibrated at start-up for a MiniLM-L6 int8 variant: 0.67 ms a run, 0.056 ms a token.
L6_COST = BatchCost(overhead=0.67e-3, per_token=0.056e-3)


@pytest.mark.parametrize(
    ("cost", "typical_tokens", "useful"),
    [
        (L6_COST, None, 32),  # nothing taken yet: a full batch
        (L6_COST, 11.0, 32),  # CLINC150's utterances: bounded by the batch size
        (L6_COST, 70.0, 6),  # support tickets
        (L6_COST, 500.0, 1),
        (BatchCost(overhead=1.0, per_token=0.0), 70.0, 32),  # no price per token: fill batches
    ],
)
def test_a_take_holds_what_batching_speeds_up(classifier, cost, typical_tokens, useful):
    workers = InferenceWorkers(2)
    batcher = Batcher(classifier, workers, BatchPolicy(max_batch_size=32, cost=cost))
    batcher.typical_tokens = typical_tokens
    assert batcher.useful_take() == useful


def test_long_texts_are_taken_a_few_at_a_time(classifier):
    """After one take has shown how long the texts run, 32 tickets of about 70 tokens queued at
    once go in takes of about 6, not two of 16."""
    tickets = [
        " ".join([f"ticket {n}: my card payment was declined twice at the shop"] * 6)
        for n in range(33)
    ]

    async def scenario():
        workers = InferenceWorkers(2, connections=lambda: 32)
        sizes: list[int] = []
        batcher = Batcher(
            classifier,
            workers,
            BatchPolicy(max_batch_size=32, cost=L6_COST),
            on_batch=lambda run: sizes.append(run.texts),
        )
        batcher.start()
        workers.start()
        try:
            await batcher.submit(tickets[:1])
            typical, useful = batcher.typical_tokens, batcher.useful_take()
            scored = await asyncio.gather(*(batcher.submit([t]) for t in tickets[1:]))
        finally:
            await workers.stop()
            await batcher.stop()
        return typical, useful, sizes[1:], scored

    typical, useful, sizes, scored = asyncio.run(scenario())
    assert typical is not None and typical > 60 and useful <= 8
    assert sum(sizes) == 32 and len(scored) == 32
    assert max(sizes) <= useful
