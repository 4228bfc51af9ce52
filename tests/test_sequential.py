"""Always-valid A/B statistics (app/rollout/sequential.py): seeded simulations of experiments
monitored at every look, against the fixed-horizon test monitored the same way."""

from __future__ import annotations

import pytest

from app.rollout.sequential import compare, proportion_interval
from loadtests.sequential_simulation import Plan, fixed_horizon_size, markdown, simulate

PLAN = Plan()  # 1,000 experiments, 100 looks, 300 judgments per arm between looks


@pytest.fixture(scope="module")
def outcomes() -> dict[float, object]:
    return {drop: simulate(PLAN, drop) for drop in (0.0, 0.02, 0.05)}


def test_aa_experiments_watched_at_every_look_keep_the_error_rate_at_alpha(outcomes):
    aa = outcomes[0.0]
    assert aa.false_difference["sequential"] <= PLAN.alpha
    assert aa.worse["sequential"] == 0
    # The peeking problem, measured: the fixed-horizon interval read at every look calls a
    # difference that is not there several times more often than it states.
    assert aa.false_difference["fixed-horizon"] >= 4 * PLAN.alpha
    # Equal arms are found non-inferior (the power of the decision a rollout wants).
    assert aa.non_inferior["sequential"] >= 0.8


@pytest.mark.parametrize("drop", [0.02, 0.05])
def test_a_less_accurate_candidate_is_found_worse_and_never_non_inferior(outcomes, drop):
    outcome = outcomes[drop]
    assert outcome.worse["sequential"] >= (0.75 if drop == 0.02 else 0.99)
    assert outcome.non_inferior["sequential"] <= PLAN.alpha
    judgments = outcome.median_judgments_to_worse["sequential"]
    # Within a small factor of what a fixed-horizon test planned for this very drop needs, and
    # it needed no plan: the drop was not known in advance.
    assert judgments <= 1.5 * fixed_horizon_size(PLAN, drop)
    table = markdown(PLAN, list(outcomes.values()))
    assert f"{-drop * 100:+.0f} points | sequential" in table


def test_verdicts_and_the_judgments_still_needed():
    margin = 0.01
    early = compare((900, 1000), (880, 1000), margin)
    late = compare((9000, 10000), (8800, 10000), margin)
    assert early.outcome == late.outcome == "undecided"
    assert late.judgments_needed < early.judgments_needed
    assert compare((9000, 10000), (8600, 10000), margin).outcome == "worse"
    assert compare((9000, 10000), (9300, 10000), margin).outcome == "better"
    assert compare((45000, 50000), (45000, 50000), margin).outcome == "non-inferior"
    broken = compare((180, 200), (120, 200), margin)
    assert broken.outcome == "worse", "a candidate 30 points worse is caught in 200 judgments"
    # Three candidates at once share alpha: each interval is wider than one alone.
    alone, family = (
        compare((900, 1000), (900, 1000), margin),
        compare((900, 1000), (900, 1000), margin, arms=3),
    )
    assert family.alpha == pytest.approx(PLAN.alpha / 3)
    assert family.interval.high - family.interval.low > alone.interval.high - alone.interval.low
    assert compare((0, 0), (0, 0), margin).outcome == "undecided"
    interval = proportion_interval(90, 100, 0.05, 0.02)
    assert interval.low < 0.9 < interval.high and interval.low >= 0 and interval.high <= 1
