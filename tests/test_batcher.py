"""Batch planning: similar lengths together, within the size and padded-token budgets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.core.batcher import plan_batches


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
